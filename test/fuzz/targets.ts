/**
 * The fuzz targets: every parser an outsider's bytes reach (the signed request's headers included), each property
 * passing when the input is accepted or refused with a typed MedvaultError
 * within 1 s, and the decryptor never releasing a byte that is not the
 * original plaintext at its offset. Run at length by `npm run fuzz`
 * (fuzz.ts), and briefly on every `npm test` (fuzz.test.ts).
 */
import fc from 'fast-check';
import { eventJson, validateEvent } from '../../anchor/events.ts';
import { AgeDecryptor, encrypt } from '../../crypto/age.ts';
import { ArmorDecoder } from '../../crypto/armor.ts';
import { SigningKey } from '../../crypto/ed25519.ts';
import { parseHeader } from '../../crypto/header.ts';
import { X25519Identity } from '../../crypto/x25519.ts';
import { isMedvaultError } from '../../errors.ts';
import { readSignatureHeaders } from '../../services/http/auth.ts';
import { FORWARD_HEADER, HEADER, signRequest } from '../../services/protocol/signing.ts';
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

/** A well-formed set of signature headers (with a forwarding node's), as Node's headersDistinct has them. */
const signer = SigningKey.generate();
const signedHeaders: Record<string, string> = {
  ...signRequest(signer, 'POST', '/v1/records/0123/grants', '{"reader":"x"}'),
  [FORWARD_HEADER.via]: signer.id,
  [FORWARD_HEADER.signature]: signRequest(signer, 'GET', '/', undefined)[HEADER.signature] as string,
};

/** One header value, edited: a character replaced, inserted or removed, or cut. */
const editedValue = (value: string) =>
  fc
    .record({
      kind: fc.constantFrom('replace', 'insert', 'delete', 'cut', 'case', 'pad'),
      at: fc.nat({ max: value.length }),
      char: fc.oneof(
        fc.string({ minLength: 1, maxLength: 1 }),
        fc.constantFrom('=', '+', '/', ' ', ',', '\t', 'A', 'f'),
      ),
    })
    .map(({ kind, at, char }) => {
      if (kind === 'replace') return value.slice(0, at) + char + value.slice(at + 1);
      if (kind === 'insert') return value.slice(0, at) + char + value.slice(at);
      if (kind === 'delete') return value.slice(0, at) + value.slice(at + 1);
      if (kind === 'cut') return value.slice(0, at);
      if (kind === 'case') return value.toUpperCase();
      return ` ${value}`;
    });

/** Signature headers with some dropped, repeated, edited or replaced by junk. */
const mutatedHeaders = fc
  .tuple(
    ...Object.entries(signedHeaders).map(([name, value]) =>
      fc
        .oneof(
          { weight: 6, arbitrary: fc.constant([value]) },
          { weight: 1, arbitrary: fc.constant(undefined) },
          { weight: 1, arbitrary: fc.constant([value, value]) },
          { weight: 3, arbitrary: editedValue(value).map((v) => [v]) },
          { weight: 1, arbitrary: fc.string({ maxLength: 120 }).map((v) => [v]) },
        )
        .map((values) => [name, values] as const),
    ),
  )
  .map((entries) => Object.fromEntries(entries.filter(([, v]) => v !== undefined)) as Record<string, string[]>);

/** Whether `value` is the one canonical spelling of header `name` (checked without the parser's own patterns). */
function canonical(name: string, value: string): boolean {
  const hex = (digits: number) => value.length === digits && Buffer.from(value, 'hex').toString('hex') === value;
  const base64 = (bytes: number) =>
    Buffer.from(value, 'base64').length === bytes && Buffer.from(value, 'base64').toString('base64') === value;
  if (name === HEADER.key || name === HEADER.nonce || name === FORWARD_HEADER.via) return hex(32);
  if (name === HEADER.time) return String(Number(value)) === value && Number(value) > 0 && value.length <= 16;
  if (name === HEADER.body) return value === 'UNSIGNED-PAYLOAD' || hex(64);
  return base64(64); // the signatures
}

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
  'signed-request headers': (distinct: Record<string, string[]>) =>
    guarded(() => {
      const read = readSignatureHeaders(distinct);
      const accepted: Array<[string, string | undefined]> = [
        ...Object.entries(HEADER).map(([k, name]): [string, string] => [name, read.values[k as keyof typeof HEADER]]),
        [FORWARD_HEADER.via, read.via],
        [FORWARD_HEADER.signature, read.viaSignature],
      ];
      for (const [name, value] of accepted) {
        if (value === undefined) continue;
        if (distinct[name]?.length !== 1 || distinct[name]?.[0] !== value)
          throw new Error(`${name}: not the one value sent`);
        if (!canonical(name, value)) throw new Error(`${name}: accepted a non-canonical ${JSON.stringify(value)}`);
      }
    }),
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
  const signed = 'signed-request headers';
  return {
    [signed]: check(fc.property(mutatedHeaders, predicate(signed))),
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
