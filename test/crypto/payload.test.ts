/**
 * The STREAM payload and whole files under damage: truncation (also at a chunk
 * boundary), flipped bits, trailing data, an empty final chunk; what a
 * streaming consumer has received when a later chunk fails; property tests
 * for round trips and tamper detection.
 */

import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  createDecryptStream,
  createEncryptStream,
  decrypt,
  encrypt,
  openHeader,
  splitAgeFile,
} from '../../crypto/age.ts';
import { checkPayloadSample, PayloadOpener, PayloadProbe } from '../../crypto/stream.ts';
import { X25519Identity } from '../../crypto/x25519.ts';
import { isMedvaultError } from '../../errors.ts';
import { bytes, codeOf, flipBits } from '../helpers.ts';

const CHUNK = 65536;
const SEALED = CHUNK + 16;
const alice = X25519Identity.generate();

describe('damaged payloads', () => {
  const plain = bytes(3 * CHUNK, 3); // exactly three full chunks
  const file = encrypt([alice.recipient], plain);
  const { header } = splitAgeFile(file);
  const payloadStart = header.length + 16;

  it('truncation at a chunk boundary is AGE_PAYLOAD_TRUNCATED', () => {
    for (const chunks of [1, 2]) {
      expect(codeOf(() => decrypt([alice], file.subarray(0, payloadStart + chunks * SEALED)))).toBe(
        'AGE_PAYLOAD_TRUNCATED',
      );
    }
  });

  it('a payload with no chunk at all, or a cut nonce, is AGE_PAYLOAD_TRUNCATED', () => {
    expect(codeOf(() => decrypt([alice], file.subarray(0, payloadStart)))).toBe('AGE_PAYLOAD_TRUNCATED');
    expect(codeOf(() => decrypt([alice], file.subarray(0, payloadStart - 5)))).toBe('AGE_PAYLOAD_TRUNCATED');
    expect(codeOf(() => decrypt([alice], file.subarray(0, payloadStart + 10)))).toBe('AGE_PAYLOAD_TRUNCATED');
  });

  it('truncation inside a chunk is AGE_PAYLOAD_CORRUPT', () => {
    expect(codeOf(() => decrypt([alice], file.subarray(0, payloadStart + SEALED + 100)))).toBe('AGE_PAYLOAD_CORRUPT');
  });

  it('data after a full final chunk is AGE_PAYLOAD_TRAILING_DATA', () => {
    expect(codeOf(() => decrypt([alice], Buffer.concat([file, Buffer.from('x')])))).toBe('AGE_PAYLOAD_TRAILING_DATA');
  });

  it('data after a short final chunk fails authentication', () => {
    const short = encrypt([alice.recipient], bytes(100, 1));
    expect(codeOf(() => decrypt([alice], Buffer.concat([short, Buffer.from('x')])))).toBe('AGE_PAYLOAD_CORRUPT');
  });

  it('an empty final chunk after a full one is AGE_PAYLOAD_EMPTY_CHUNK (the spec forbids it)', () => {
    const fileKey = bytes(16, 9);
    const nonce = bytes(16, 10);
    const key = hkdf(sha256, fileKey, nonce, new TextEncoder().encode('payload'), 32);
    const chunkNonce = (i: number, last: boolean) => Uint8Array.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, i, last ? 1 : 0]);
    const payload = Buffer.concat([
      nonce,
      chacha20poly1305(key, chunkNonce(0, false)).encrypt(bytes(CHUNK, 1)),
      chacha20poly1305(key, chunkNonce(1, true)).encrypt(new Uint8Array(0)),
    ]);
    const opener = new PayloadOpener(fileKey);
    const out: Buffer[] = [];
    opener.update(payload, out);
    expect(codeOf(() => opener.final(out))).toBe('AGE_PAYLOAD_EMPTY_CHUNK');
  });

  it('a chunk moved to another position fails', () => {
    const swapped = Buffer.from(file);
    swapped.set(file.subarray(payloadStart, payloadStart + SEALED), payloadStart + SEALED);
    swapped.set(file.subarray(payloadStart + SEALED, payloadStart + 2 * SEALED), payloadStart);
    expect(codeOf(() => decrypt([alice], swapped))).toBe('AGE_PAYLOAD_CORRUPT');
  });
});

describe('what a streaming consumer receives', () => {
  it('only verified chunks, in order, before the error; none of the failing chunk', () => {
    const plain = bytes(5 * CHUNK, 4);
    const file = Buffer.from(encrypt([alice.recipient], plain));
    const { header } = splitAgeFile(file);
    flipBits(file, header.length + 16 + 3 * SEALED + 7); // damage chunk 3

    const released: Buffer[] = [];
    const decryptor = createDecryptStream([alice]);
    decryptor.on('data', (d: Buffer) => released.push(d));
    const done = new Promise<unknown>((resolve) => decryptor.on('error', resolve));
    // Feed in small pieces, as a network would.
    for (let i = 0; i < file.length; i += 10_000) decryptor.write(file.subarray(i, i + 10_000));
    decryptor.end();
    return done.then((err) => {
      expect(isMedvaultError(err, 'AGE_PAYLOAD_CORRUPT')).toBe(true);
      expect((err as { info: { chunk: number } }).info.chunk).toBe(3);
      const got = Buffer.concat(released);
      expect(got.length).toBe(3 * CHUNK);
      expect(Buffer.compare(got, plain.subarray(0, 3 * CHUNK))).toBe(0);
    });
  });

  it('holds back a chunk until bytes beyond it arrive (it may be the last)', () => {
    const file = encrypt([alice.recipient], bytes(2 * CHUNK, 8));
    const { header, payload } = splitAgeFile(file);
    const { fileKey } = openHeader(header, [alice]);
    const opener = new PayloadOpener(fileKey);
    const out: Buffer[] = [];
    opener.update(payload.subarray(0, 16 + SEALED), out);
    expect(out.length).toBe(0);
    opener.update(payload.subarray(16 + SEALED, 16 + SEALED + 1), out);
    expect(out.length).toBe(1);
    opener.update(payload.subarray(16 + SEALED + 1), out);
    opener.final(out);
    expect(Buffer.concat(out).length).toBe(2 * CHUNK);
  });
});

describe('properties', () => {
  it('round trip: any content, any input split, binary or armored', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 200_000 }),
        fc.boolean(),
        fc.integer({ min: 1, max: 70_000 }),
        (size, armor, piece) => {
          const plain = bytes(size, size ^ piece);
          const file = encrypt([alice.recipient], plain, { armor });
          // Decrypt fed in pieces of `piece` bytes through the sync core path.
          const parts: Uint8Array[] = [];
          for (let i = 0; i < file.length; i += piece) parts.push(file.subarray(i, i + piece));
          const out = decrypt([alice], Buffer.concat(parts));
          expect(Buffer.compare(out, plain)).toBe(0);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('tamper detection: any flipped bit anywhere gives a typed error, never output', () => {
    const plain = bytes(2 * CHUNK + 500, 12);
    const file = encrypt([alice.recipient], plain);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: file.length * 8 - 1 }), (bit) => {
        const damaged = Buffer.from(file);
        flipBits(damaged, bit >> 3, 1 << (bit & 7));
        const code = codeOf(() => decrypt([alice], damaged));
        expect(code).not.toBe('no error');
        expect(code).not.toBe('untyped error');
      }),
      { numRuns: 300 },
    );
  });

  it('truncation anywhere gives a typed error', () => {
    const file = encrypt([alice.recipient], bytes(2 * CHUNK + 9, 13), { armor: false });
    fc.assert(
      fc.property(fc.integer({ min: 0, max: file.length - 1 }), (cut) => {
        const code = codeOf(() => decrypt([alice], file.subarray(0, cut)));
        expect(code).not.toBe('no error');
        expect(code).not.toBe('untyped error');
      }),
      { numRuns: 200 },
    );
  });
});

describe('streams', () => {
  it('encrypt and decrypt Transforms compose in a pipeline', async () => {
    const plain = bytes(700_001, 21);
    const sealed: Buffer[] = [];
    await pipeline(
      Readable.from([plain.subarray(0, 1000), plain.subarray(1000)]),
      createEncryptStream([alice.recipient]),
      async (src) => {
        for await (const c of src) sealed.push(c);
      },
    );
    const opened: Buffer[] = [];
    await pipeline(Readable.from(sealed), createDecryptStream([alice]), async (src) => {
      for await (const c of src) opened.push(c);
    });
    expect(Buffer.compare(Buffer.concat(opened), plain)).toBe(0);
  });

  it('a pipeline rejects with the typed error of a damaged file', async () => {
    const file = Buffer.from(encrypt([alice.recipient], bytes(100_000, 22)));
    flipBits(file, file.length - 3, 0x80);
    await expect(
      pipeline(Readable.from([file]), createDecryptStream([alice]), async (src) => {
        for await (const _ of src);
      }),
    ).rejects.toMatchObject({ code: 'AGE_PAYLOAD_CORRUPT' });
  });
});

describe('the payload sample an upload is checked by (first and last chunk, inside the KMS)', () => {
  /** Feeds `payload` to a probe in the given piece sizes (cycled), returns its sample. */
  const sampled = (payload: Uint8Array, pieces: number[]) => {
    const probe = new PayloadProbe();
    for (let at = 0, i = 0; at < payload.length; i++) {
      const size = Math.max(1, pieces[i % pieces.length] as number);
      probe.take(payload.subarray(at, at + size));
      at += size;
    }
    return probe.sample();
  };
  const sizes = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 17];

  it('opens with the file key for every size and every way the payload is cut into pieces', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...sizes),
        fc.array(fc.integer({ min: 1, max: 3 * SEALED }), { minLength: 1, maxLength: 6 }),
        (size, pieces) => {
          const file = encrypt([alice.recipient], bytes(size, size % 251));
          const { header, payload } = splitAgeFile(file);
          const { fileKey } = openHeader(header, [alice]);
          const sample = sampled(payload, pieces);
          expect(sample.chunks).toBe(Math.max(1, Math.ceil(size / CHUNK)));
          expect(codeOf(() => checkPayloadSample(fileKey, sample))).toBe('no error');
        },
      ),
      { numRuns: 60 },
    );
  });

  it('refuses a flipped byte in the first or last chunk, a cut at a chunk boundary and another key', () => {
    const file = encrypt([alice.recipient], bytes(3 * CHUNK + 17, 4));
    const { header, payload } = splitAgeFile(file);
    const { fileKey } = openHeader(header, [alice]);
    const flipped = (at: number) => {
      const copy = Buffer.from(payload);
      copy[at] = (copy[at] as number) ^ 0x80;
      return copy;
    };
    expect(codeOf(() => checkPayloadSample(fileKey, sampled(flipped(16), [4096])))).toBe('AGE_PAYLOAD_CORRUPT');
    expect(codeOf(() => checkPayloadSample(fileKey, sampled(flipped(payload.length - 1), [4096])))).toBe(
      'AGE_PAYLOAD_CORRUPT',
    );
    const cut = payload.subarray(0, 16 + 2 * SEALED);
    expect(codeOf(() => checkPayloadSample(fileKey, sampled(cut, [SEALED])))).toBe('AGE_PAYLOAD_CORRUPT');
    expect(codeOf(() => checkPayloadSample(new Uint8Array(32), sampled(payload, [SEALED])))).toBe(
      'AGE_PAYLOAD_CORRUPT',
    );
    // What it does not see: a middle chunk (the reader's own decryption catches that one).
    expect(codeOf(() => checkPayloadSample(fileKey, sampled(flipped(16 + SEALED + 5), [4096])))).toBe('no error');
    expect(codeOf(() => sampled(payload.subarray(0, 20), [7]))).toBe('AGE_PAYLOAD_TRUNCATED');
  });
});
