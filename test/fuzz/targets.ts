/**
 * The fuzz targets: every parser an outsider's bytes reach, each property
 * passing when the input is accepted or refused with a typed MedvaultError
 * within 1 s, and the decryptor never releasing a byte that is not the
 * original plaintext at its offset. Run at length by `npm run fuzz`
 * (fuzz.ts), and briefly on every `npm test` (fuzz.test.ts).
 */
import fc from 'fast-check';
import { eventJson, validateEvent } from '../../anchor/events.ts';
import { AgeDecryptor, encrypt } from '../../crypto/age.ts';
import { ArmorDecoder } from '../../crypto/armor.ts';
import { parseHeader } from '../../crypto/header.ts';
import { X25519Identity } from '../../crypto/x25519.ts';
import { isMedvaultError } from '../../errors.ts';
import { sampleEvent } from '../anchor/fixtures.ts';

export interface Outcome {
  numRuns: number;
  failed: boolean;
  counterexample: unknown;
  errorInstance: unknown;
}

const identity = X25519Identity.generate();
const plain = new Uint8Array(Buffer.alloc(70_000, 7).map((_, i) => (i * 31) & 0xff));
const file = encrypt([identity.recipient], plain);
const armored = encrypt([identity.recipient], plain.subarray(0, 3000), { armor: true });
const headerEnd =
  Buffer.from(file).indexOf('\n---') +
  1 +
  Buffer.from(file)
    .subarray(Buffer.from(file).indexOf('\n---') + 1)
    .indexOf('\n') +
  1;
const headerBytes = file.subarray(0, headerEnd);

/** Valid input with a few edits: flips, inserts, deletions, a cut. */
const mutated = (base: Uint8Array, maxEdits = 4) =>
  fc
    .array(
      fc.record({
        kind: fc.constantFrom('flip', 'insert', 'delete', 'cut'),
        at: fc.nat({ max: base.length }),
        byte: fc.integer({ min: 0, max: 255 }),
      }),
      { minLength: 1, maxLength: maxEdits },
    )
    .map((edits) => {
      let out = Buffer.from(base);
      for (const e of edits) {
        const at = Math.min(e.at, out.length);
        if (e.kind === 'flip' && at < out.length) out[at] = (out[at] as number) ^ (e.byte || 1);
        else if (e.kind === 'insert')
          out = Buffer.concat([out.subarray(0, at), Buffer.from([e.byte]), out.subarray(at)]);
        else if (e.kind === 'delete') out = Buffer.concat([out.subarray(0, at), out.subarray(at + 1)]);
        else if (e.kind === 'cut') out = out.subarray(0, at);
      }
      return new Uint8Array(out);
    });
const bytesOrMutated = (base: Uint8Array) =>
  fc.oneof({ weight: 1, arbitrary: fc.uint8Array({ maxLength: 512 }) }, { weight: 4, arbitrary: mutated(base) });

/** Runs `step`; a typed refusal is fine, anything else or over 1 s is a finding. */
function guarded(step: () => void): void {
  const started = performance.now();
  try {
    step();
  } catch (err) {
    if (!isMedvaultError(err)) throw new Error(`crash: ${(err as Error)?.stack ?? String(err)}`);
  }
  const ms = performance.now() - started;
  if (ms > 1000) throw new Error(`hang: ${ms.toFixed(0)} ms`);
}

/** Decrypts `input` fed `piece` bytes at a time, checking every byte released against the plaintext. */
function decryptInPieces(input: Uint8Array, piece: number): void {
  const core = new AgeDecryptor([identity]);
  const out: Buffer[] = [];
  let released = 0;
  const check = () => {
    for (const chunk of out.splice(0)) {
      // Every byte released is the original plaintext at its offset: nothing unauthenticated.
      if (!Buffer.from(plain.subarray(released, released + chunk.length)).equals(chunk)) {
        throw new Error(`released ${chunk.length} bytes at ${released} that are not the plaintext`);
      }
      released += chunk.length;
    }
  };
  for (let i = 0; i < input.length; i += piece) {
    core.update(input.subarray(i, i + piece), out);
    check();
  }
  core.final(out);
  check();
  if (released !== plain.length) throw new Error(`a whole decryption released ${released} bytes`);
}

/**
 * Each target's property body, by name: what test/fuzz/regressions.test.ts
 * replays a kept counterexample through. Throws on a finding.
 */
export const fuzzPredicates: Record<string, (...args: never[]) => void> = {
  'age header parser': (input: Uint8Array) => guarded(() => parseHeader(input)),
  'armor decoder': (input: Uint8Array) =>
    guarded(() => {
      const decoder = new ArmorDecoder();
      decoder.update(input);
      decoder.final();
    }),
  'age decryptor (header and STREAM payload)': (input: Uint8Array, piece: number) =>
    guarded(() => decryptInPieces(input, piece)),
  'event schema and canonical JSON': (value: unknown) =>
    guarded(() => {
      validateEvent(value);
      const json = eventJson(value);
      if (JSON.stringify(JSON.parse(json)) !== json) throw new Error('canonical JSON does not read back as itself');
    }),
};
const predicate = (name: string) => fuzzPredicates[name] as (...args: unknown[]) => void;

/** Each target, ready to run `numRuns` inputs from `seed`. */
export function fuzzTargets(options: { numRuns: number; seed: number }): Record<string, () => Outcome> {
  const check =
    <T extends unknown[]>(property: fc.IProperty<T>) =>
    (): Outcome =>
      fc.check(property, { ...options, endOnFailure: true });
  const header = 'age header parser';
  const armor = 'armor decoder';
  const decryptor = 'age decryptor (header and STREAM payload)';
  const events = 'event schema and canonical JSON';
  return {
    [header]: check(fc.property(bytesOrMutated(headerBytes), predicate(header))),
    [armor]: check(fc.property(bytesOrMutated(armored), predicate(armor))),
    [decryptor]: check(
      fc.property(
        fc.oneof(
          { weight: 1, arbitrary: fc.uint8Array({ maxLength: 512 }) },
          { weight: 6, arbitrary: mutated(file, 3) },
        ),
        fc.integer({ min: 1, max: 70_000 }),
        predicate(decryptor),
      ),
    ),
    [events]: check(
      fc.property(
        fc.oneof(
          fc.jsonValue(),
          fc.constantFrom(...Array.from({ length: 20 }, () => sampleEvent())).chain((e) =>
            fc
              .record({ key: fc.constantFrom(...Object.keys(e), 'extra'), value: fc.jsonValue() })
              .map(({ key, value }) => ({
                ...e,
                [key]: value,
              })),
          ),
        ),
        predicate(events),
      ),
    ),
  };
}
