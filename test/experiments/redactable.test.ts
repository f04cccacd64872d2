/**
 * The chameleon-hash redaction experiment: the hash itself (collisions with
 * the trapdoor, the trapdoor given away by two collisions), and the
 * redactable chain: the DPO rewrites an event in place and the whole chain
 * still verifies; without the trapdoor any modification fails (property
 * tests); a redaction exposes only that block's trapdoor.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decrypt } from '../../crypto/age.ts';
import { SigningKey } from '../../crypto/ed25519.ts';
import { X25519Identity } from '../../crypto/x25519.ts';
import {
  chameleonCollision,
  chameleonHash,
  chameleonKeygen,
  randomScalar,
  scalarFromBytes,
  scalarToBytes,
  trapdoorFromCollision,
} from '../../experiments/redaction/chameleon.ts';
import {
  blockMessage,
  buildRedactableBlock,
  type RedactableBlock,
  redactEvent,
  verifyRedactableBlock,
  verifyRedactableChain,
} from '../../experiments/redaction/redactable.ts';
import { sampleEvent } from '../anchor/fixtures.ts';
import { codeOf } from '../helpers.ts';

const signer = SigningKey.generate();
const dpo = X25519Identity.generate();
const TYPES = ['record.created', 'record.accessed', 'access.emergency', 'acl.granted'] as const;

function chain(blocks: number, perBlock: number): RedactableBlock[] {
  const out: RedactableBlock[] = [];
  for (let i = 0; i < blocks; i++) {
    const events = Array.from({ length: perBlock }, (_, j) => sampleEvent(TYPES[(i + j) % TYPES.length]));
    out.push(buildRedactableBlock(out.at(-1)?.header ?? null, events, signer, dpo.recipient));
  }
  return out;
}

describe('the chameleon hash', () => {
  it('with the trapdoor, any message collides with any other; the hash is the same point', () => {
    const { trapdoor, publicKey } = chameleonKeygen();
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.uint8Array({ maxLength: 200 }), (m1, m2) => {
        const r1 = randomScalar();
        const r2 = chameleonCollision(trapdoor, m1, r1, m2);
        expect(Buffer.from(chameleonHash(publicKey, m2, r2))).toEqual(Buffer.from(chameleonHash(publicKey, m1, r1)));
      }),
      { numRuns: 30 },
    );
  });

  it('two collisions under one key give the trapdoor away', () => {
    const { trapdoor, publicKey } = chameleonKeygen();
    const m1 = new TextEncoder().encode('original');
    const m2 = new TextEncoder().encode('redacted');
    const r1 = randomScalar();
    const r2 = chameleonCollision(trapdoor, m1, r1, m2);
    expect(chameleonHash(publicKey, m1, r1)).toEqual(chameleonHash(publicKey, m2, r2));
    expect(trapdoorFromCollision(m1, r1, m2, r2)).toBe(trapdoor);
  });

  it('scalars are canonical 32-byte little-endian; bad keys and scalars are refused', () => {
    const s = randomScalar();
    expect(scalarFromBytes(scalarToBytes(s))).toBe(s);
    expect(codeOf(() => scalarFromBytes(new Uint8Array(32).fill(0xff)))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => chameleonHash(new Uint8Array(32), new Uint8Array(1), 1n))).toBe('INVALID_ARGUMENT');
    expect(codeOf(() => chameleonHash(new Uint8Array(32).fill(0xff), new Uint8Array(1), 1n))).toBe('INVALID_ARGUMENT');
  });
});

describe('the redactable chain', () => {
  it('verifies as built', () => {
    expect(verifyRedactableChain(chain(5, 3))).toEqual({ blocks: 5, events: 15 });
  });

  it('the DPO rewrites an event in place and every block, later ones included, still verifies', () => {
    const blocks = chain(6, 3);
    const target = blocks[2] as RedactableBlock;
    const original = target.events[1];
    const replacement = { ...sampleEvent('access.emergency'), at: original?.at ?? 0 };
    blocks[2] = redactEvent(target, 1, replacement, [dpo]);
    expect(blocks[2]?.events[1]).toEqual(replacement);
    expect(blocks[2]?.header).toEqual(target.header); // every signed byte unchanged
    expect(verifyRedactableChain(blocks)).toEqual({ blocks: 6, events: 18 });
  });

  it('without the trapdoor any change of an event, the randomness, a link or a count fails verification', () => {
    const blocks = chain(4, 3);
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 3 }),
        fc.integer({ min: 0, max: 2 }),
        fc.constantFrom('event-field', 'event-swap', 'event-drop', 'randomness', 'prev', 'link', 'key'),
        (b, e, how) => {
          const copy: RedactableBlock[] = structuredClone(blocks);
          const block = copy[b] as RedactableBlock;
          const event = block.events[e] as Record<string, unknown>;
          switch (how) {
            case 'event-field':
              event.at = (event.at as number) + 1;
              break;
            case 'event-swap':
              block.events[e] = sampleEvent('record.accessed');
              break;
            case 'event-drop':
              block.events.splice(e, 1);
              block.header.count--;
              break;
            case 'randomness':
              block.r = Buffer.from(scalarToBytes(randomScalar())).toString('hex');
              break;
            case 'prev':
              block.header.prev = 'ab'.repeat(32);
              break;
            case 'link':
              block.header.link = Buffer.from(chameleonKeygen().publicKey).toString('hex');
              break;
            case 'key':
              block.header.chameleonKey = Buffer.from(chameleonKeygen().publicKey).toString('hex');
              break;
          }
          expect(codeOf(() => verifyRedactableChain(copy))).toBe('BLOCK_INVALID');
        },
      ),
      { numRuns: 60 },
    );
  });

  it('the randomness is decoded strictly: upper case, junk, short or long is refused', () => {
    const [block] = chain(1, 2);
    const r = (block as RedactableBlock).r;
    for (const bad of [
      r.toUpperCase(),
      `${r.slice(0, 62)}zz`,
      r.slice(0, 62),
      `${r}00`,
      `${r.slice(0, 32)}-${r.slice(33)}`,
    ]) {
      expect(
        codeOf(() => verifyRedactableBlock({ ...(block as RedactableBlock), r: bad }, null)),
        bad,
      ).toBe('BLOCK_INVALID');
    }
    expect(codeOf(() => verifyRedactableBlock(block as RedactableBlock, null))).toBe('no error');
  });

  it("one redaction exposes only its own block's trapdoor: it cannot redact another block", () => {
    const blocks = chain(3, 2);
    const target = blocks[1] as RedactableBlock;
    const redacted = redactEvent(target, 0, sampleEvent('record.accessed'), [dpo]);
    // Anyone holding both versions recovers block 1's trapdoor…
    const x = trapdoorFromCollision(
      blockMessage(1, target.header.prev, target.events),
      scalarFromBytes(Buffer.from(target.r, 'hex')),
      blockMessage(1, target.header.prev, redacted.events),
      scalarFromBytes(Buffer.from(redacted.r, 'hex')),
    );
    expect(x).toBe(scalarFromBytes(decrypt([dpo], Buffer.from(target.header.trapdoor, 'base64'))));
    // …which forges nothing in block 2, whose key is independent.
    const other = structuredClone(blocks[2] as RedactableBlock);
    const newEvents = [sampleEvent('record.accessed'), ...other.events.slice(1)];
    const forgedR = chameleonCollision(
      x,
      blockMessage(2, other.header.prev, other.events),
      scalarFromBytes(Buffer.from(other.r, 'hex')),
      blockMessage(2, other.header.prev, newEvents),
    );
    other.events = newEvents;
    other.r = Buffer.from(scalarToBytes(forgedR)).toString('hex');
    expect(codeOf(() => verifyRedactableChain([blocks[0], redacted, other] as RedactableBlock[]))).toBe(
      'BLOCK_INVALID',
    );
  });

  it('only the DPO can redact: another identity cannot open the trapdoor', () => {
    const [block] = chain(1, 1);
    expect(codeOf(() => redactEvent(block as RedactableBlock, 0, sampleEvent(), [X25519Identity.generate()]))).toBe(
      'AGE_NO_IDENTITY',
    );
  });
});
