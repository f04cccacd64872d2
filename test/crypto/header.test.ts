/**
 * The age v1 header: strict parsing (vectors written from the spec beside this
 * file), stanza rules, limits, MAC and identity failures, and header rewrap.
 */
import { describe, expect, it } from 'vitest';
import {
  AgeDecryptor,
  buildHeader,
  decrypt,
  encrypt,
  openHeader,
  rewrapHeader,
  splitAgeFile,
} from '../../crypto/age.ts';
import { encodeUnpadded } from '../../crypto/base64.ts';
import { parseHeader, type Recipient, type Stanza, serializeHeader } from '../../crypto/header.ts';
import { random } from '../../crypto/primitives.ts';
import { ScryptIdentity, ScryptRecipient } from '../../crypto/scrypt.ts';
import { X25519Identity, X25519Recipient } from '../../crypto/x25519.ts';
import type { ErrorCode } from '../../errors.ts';
import { codeOf } from '../helpers.ts';
import vectors from './vectors/malformed-headers.json' with { type: 'json' };

const alice = X25519Identity.generate();
const bob = X25519Identity.generate();

describe('malformed headers from the spec', () => {
  it.each(vectors.cases)('$name → $code', ({ header, code }) => {
    const bytes = Buffer.from(header, 'utf8');
    expect(codeOf(() => parseHeader(bytes))).toBe(code);
    // The whole-file path reports the same error, followed by any payload.
    expect(codeOf(() => decrypt([alice], Buffer.concat([bytes, Buffer.alloc(40)])))).toBe(code);
  });
});

/** A header with one X25519 stanza for `alice`, then `edit` applied to its stanzas. */
function headerWith(edit: (stanzas: Stanza[]) => Stanza[], fileKey = random(16)) {
  const stanzas = edit(alice.recipient.wrapFileKey(fileKey));
  return serializeHeader(stanzas, fileKey).bytes;
}

describe('X25519 stanzas', () => {
  const modify = (patch: Partial<Stanza>) => headerWith(([s]) => [{ ...(s as Stanza), ...patch }]);

  it('opens a well-formed stanza and verifies the MAC', () => {
    const fileKey = random(16);
    const { fileKey: opened } = openHeader(
      headerWith((s) => s, fileKey),
      [alice],
    );
    expect(Buffer.compare(opened, fileKey)).toBe(0);
  });

  it.each<[string, Partial<Stanza>, ErrorCode]>([
    ['three arguments', { args: ['AAAA', 'BBBB'] }, 'AGE_STANZA_INVALID'],
    ['a share of 31 bytes', { args: [encodeUnpadded(new Uint8Array(31))] }, 'AGE_STANZA_INVALID'],
    ['a body of 31 bytes', { body: new Uint8Array(31) }, 'AGE_STANZA_INVALID'],
    ['a body of 33 bytes', { body: new Uint8Array(33) }, 'AGE_STANZA_INVALID'],
    ['an empty body', { body: new Uint8Array(0) }, 'AGE_STANZA_INVALID'],
    ['an all-zero share (low-order point)', { args: [encodeUnpadded(new Uint8Array(32))] }, 'AGE_WEAK_SHARE'],
  ])('rejects %s', (_name, patch, code) => {
    expect(codeOf(() => openHeader(modify(patch), [alice]))).toBe(code);
  });

  it("an identity made from a held key (another thread's copy) opens what the original does and exports no secret", () => {
    const fileKey = random(16);
    const held = new X25519Identity(alice.held());
    expect(held.recipient.toString()).toBe(alice.recipient.toString());
    expect(
      Buffer.compare(
        openHeader(
          headerWith((s) => s, fileKey),
          [held],
        ).fileKey,
        fileKey,
      ),
    ).toBe(0);
    expect(codeOf(() => held.secretBytes())).toBe('KEY_INVALID');
    expect(codeOf(() => held.toString())).toBe('KEY_INVALID');
    expect(codeOf(() => new X25519Identity({ ...alice.held(), key: alice.recipient as never }))).toBe('KEY_INVALID');
  });

  it('rejects a non-canonical share encoding', () => {
    // 32 bytes take 43 characters, whose last one has 2 spare bits that must be zero.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
    const share = encodeUnpadded(random(32));
    const noncanonical = share.slice(0, -1) + alphabet[alphabet.indexOf(share.at(-1) as string) | 1];
    expect(codeOf(() => openHeader(modify({ args: [noncanonical] }), [alice]))).toBe('AGE_STANZA_INVALID');
  });

  it('a stanza that does not open with this identity is skipped; none matching is AGE_NO_IDENTITY', () => {
    expect(
      codeOf(() =>
        openHeader(
          headerWith((s) => s),
          [bob],
        ),
      ),
    ).toBe('AGE_NO_IDENTITY');
  });

  it('skips stanzas of unknown types', () => {
    const fileKey = random(16);
    const bytes = headerWith((s) => [{ type: 'example.com/enigma', args: ['x'], body: random(50) }, ...s], fileKey);
    expect(Buffer.compare(openHeader(bytes, [alice]).fileKey, fileKey)).toBe(0);
  });

  it('rejects a header whose MAC was made with another key', () => {
    const fileKey = random(16);
    const good = alice.recipient.wrapFileKey(fileKey);
    const forged = serializeHeader(good, random(16)).bytes;
    expect(codeOf(() => openHeader(forged, [alice]))).toBe('AGE_HEADER_MAC');
  });

  it('rejects a header with one stanza changed after the MAC', () => {
    const fileKey = random(16);
    const original = serializeHeader(
      [...alice.recipient.wrapFileKey(fileKey), ...bob.recipient.wrapFileKey(fileKey)],
      fileKey,
    );
    const swapped = serializeHeader(
      [...alice.recipient.wrapFileKey(fileKey), ...alice.recipient.wrapFileKey(fileKey)],
      fileKey,
    );
    const spliced = Buffer.concat([
      swapped.bytes.subarray(0, swapped.bytes.lastIndexOf(0x2d) + 1),
      original.bytes.subarray(original.bytes.lastIndexOf(0x2d) + 1),
    ]);
    expect(codeOf(() => openHeader(spliced, [alice]))).toBe('AGE_HEADER_MAC');
  });
});

describe('limits', () => {
  const recipients: Recipient[] = Array.from({ length: 11 }, () => X25519Identity.generate().recipient);

  it('refuses to write or read more stanzas than the limit', () => {
    const limits = { maxStanzas: 10, maxBytes: 1 << 20 };
    expect(codeOf(() => buildHeader(random(16), recipients, limits))).toBe('AGE_HEADER_TOO_LARGE');
    const bytes = buildHeader(random(16), recipients).bytes;
    expect(codeOf(() => parseHeader(bytes, limits))).toBe('AGE_HEADER_TOO_LARGE');
  });

  it('refuses headers over the byte limit, also while streaming in', () => {
    const file = encrypt(recipients, new Uint8Array(10));
    const limits = { maxStanzas: 100, maxBytes: 1000 };
    expect(codeOf(() => decrypt([alice], file, { limits }))).toBe('AGE_HEADER_TOO_LARGE');
    // A never-ending header is cut at the limit, not buffered.
    const endless = Buffer.concat([Buffer.from('age-encryption.org/v1\n'), Buffer.alloc(5000, 0x41)]);
    expect(codeOf(() => decrypt([alice], endless, { limits }))).toBe('AGE_HEADER_TOO_LARGE');
  });

  it('finds the end of a header fed a byte at a time in linear time (fuzz finding)', () => {
    // 1 MiB of header lines with no MAC line, one byte per update: refused at
    // the limit. Re-copying the bytes so far on every piece (the bug the fuzzer
    // found) costs ~5e11 byte copies here, over a minute; the scanner takes
    // ~0.2 s. The 3 s bound sits an order of magnitude from both.
    const limits = { maxStanzas: 1 << 20, maxBytes: 1 << 20 };
    const line = Buffer.from(`-> X25519 ${'A'.repeat(43)}\n${'B'.repeat(64)}\n`);
    const endless = Buffer.concat([Buffer.from('age-encryption.org/v1\n'), Buffer.alloc(limits.maxBytes, line)]);
    const core = new AgeDecryptor([alice], { limits });
    const out: Buffer[] = [];
    const started = performance.now();
    const feed = () => {
      for (let i = 0; i < endless.length; i++) core.update(endless.subarray(i, i + 1), out);
    };
    expect(codeOf(feed)).toBe('AGE_HEADER_TOO_LARGE');
    expect(performance.now() - started).toBeLessThan(3000);
    expect(out).toEqual([]);
  });

  it('accepts the default limit of 1024 recipients', () => {
    const many = Array.from({ length: 1023 }, () => new X25519Recipient(random(32)));
    const file = encrypt([alice.recipient, ...many], Buffer.from('many readers'));
    expect(Buffer.from(decrypt([alice], file)).toString()).toBe('many readers');
  });
});

describe('scrypt', () => {
  it('round-trips with a passphrase and refuses a work factor above the limit', () => {
    const file = encrypt([new ScryptRecipient('correct horse', 12)], Buffer.from('secret'));
    expect(Buffer.from(decrypt([new ScryptIdentity('correct horse')], file)).toString()).toBe('secret');
    expect(codeOf(() => decrypt([new ScryptIdentity('wrong')], file))).toBe('AGE_NO_IDENTITY');
    expect(codeOf(() => decrypt([new ScryptIdentity('correct horse', 11)], file))).toBe('AGE_SCRYPT_WORK_FACTOR');
  });

  it('refuses to write an scrypt stanza beside another', () => {
    expect(codeOf(() => encrypt([new ScryptRecipient('p', 10), alice.recipient], new Uint8Array(1)))).toBe(
      'AGE_SCRYPT_NOT_ALONE',
    );
  });

  it('rejects a work factor with a leading zero', () => {
    const fileKey = random(16);
    const [stanza] = new ScryptRecipient('p', 10).wrapFileKey(fileKey);
    const bytes = serializeHeader([{ ...(stanza as Stanza), args: [stanza?.args[0] as string, '010'] }], fileKey).bytes;
    expect(codeOf(() => openHeader(bytes, [new ScryptIdentity('p')]))).toBe('AGE_STANZA_INVALID');
  });
});

describe('rewrap: readers change, the payload does not', () => {
  it('a new header for the same file key opens the old payload; removed readers are locked out', () => {
    const file = encrypt([alice.recipient], Buffer.from('clinical note'));
    const { header, payload } = splitAgeFile(file);
    const rewrapped = rewrapHeader(header, [alice], [bob.recipient]);
    const withBob = Buffer.concat([rewrapped.bytes, payload]);
    expect(Buffer.from(decrypt([bob], withBob)).toString()).toBe('clinical note');
    expect(codeOf(() => decrypt([alice], withBob))).toBe('AGE_NO_IDENTITY');
    // Only a holder of the file key can rewrap.
    expect(codeOf(() => rewrapHeader(header, [bob], [bob.recipient]))).toBe('AGE_NO_IDENTITY');
  });
});
