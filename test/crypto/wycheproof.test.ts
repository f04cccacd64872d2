/**
 * The Wycheproof vectors (vectors/wycheproof/, C2SP) for every primitive the
 * envelope and the signed requests stand on, each case as its file says:
 * `valid` must be accepted with the stated output, `invalid` refused,
 * `acceptable` either way but consistently with age (an all-zero X25519
 * shared secret is refused). Two implementations take each vector: the
 * project's own (node:crypto, as crypto/ calls it) and the @noble reference
 * the tests and the browser use, so one suite checks both.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { ed25519, x25519 as nobleX25519 } from '@noble/curves/ed25519.js';
import { hkdf as nobleHkdf } from '@noble/hashes/hkdf.js';
import { hmac as nobleHmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { describe, expect, it } from 'vitest';
import { verifySignature, verifySignatureAsync } from '../../crypto/ed25519.ts';
import {
  aeadOpen,
  aeadSeal,
  constantTimeEqual,
  hkdf,
  hmacSha256,
  x25519,
  x25519PrivateKey,
} from '../../crypto/primitives.ts';

interface Vector {
  tcId: number;
  comment: string;
  flags: string[];
  result: 'valid' | 'invalid' | 'acceptable';
  [field: string]: unknown;
}
interface Group {
  tests: Vector[];
  [field: string]: unknown;
}

const load = (name: string): Group[] =>
  (JSON.parse(readFileSync(join(import.meta.dirname, 'vectors/wycheproof', name), 'utf8')) as { testGroups: Group[] })
    .testGroups;
const hex = (s: unknown) => new Uint8Array(Buffer.from(String(s), 'hex'));
const toHex = (b: Uint8Array | null) => (b ? Buffer.from(b).toString('hex') : null);
const label = (v: Vector) => `tcId ${v.tcId} (${v.comment || v.flags.join(', ') || v.result})`;
const attempt = <T>(f: () => T): T | 'threw' => {
  try {
    return f();
  } catch {
    return 'threw';
  }
};

describe('ChaCha20-Poly1305 (the STREAM payload and stanza bodies)', () => {
  const groups = load('chacha20_poly1305_test.json');
  const all = groups.flatMap((g) => g.tests.map((v) => ({ g, v })));

  it('the project opens every valid case and refuses every invalid one (modified tags, wrong nonce sizes)', () => {
    let invalid = 0;
    for (const { v } of all) {
      const [key, iv, msg, aad] = [hex(v.key), hex(v.iv), hex(v.msg), hex(v.aad)];
      const sealed = new Uint8Array(Buffer.concat([hex(v.ct), hex(v.tag)]));
      const opened = attempt(() => aeadOpen(key, sealed, iv, aad));
      if (v.result === 'valid') {
        expect(toHex(opened as Buffer), label(v)).toBe(toHex(msg));
        expect(toHex(aeadSeal(key, msg, iv, aad)), label(v)).toBe(toHex(sealed));
      } else {
        expect(opened === null || opened === 'threw', label(v)).toBe(true);
        invalid++;
      }
    }
    expect(invalid).toBeGreaterThan(60); // the modified tags and the wrong nonce sizes are all there
  });

  it('the @noble reference agrees on every case, AAD and nonce sizes included', () => {
    for (const { v } of all) {
      const opened = attempt(() =>
        chacha20poly1305(hex(v.key), hex(v.iv), hex(v.aad)).decrypt(
          new Uint8Array(Buffer.concat([hex(v.ct), hex(v.tag)])),
        ),
      );
      if (v.result === 'valid') expect(toHex(opened as Uint8Array), label(v)).toBe(String(v.msg));
      else expect(opened, label(v)).toBe('threw');
    }
  });
});

describe('X25519 (recipient stanzas)', () => {
  const all = load('x25519_test.json').flatMap((g) => g.tests);

  it('the project derives every valid secret and refuses an all-zero one, as age must', () => {
    let zero = 0;
    for (const v of all) {
      const shared = attempt(() => x25519(x25519PrivateKey(hex(v.private)), hex(v.public)));
      const expected = String(v.shared);
      if (/^0+$/.test(expected)) {
        zero++;
        expect(shared === null || shared === 'threw', label(v)).toBe(true);
      } else if (v.result === 'valid' || v.result === 'acceptable') {
        expect(toHex(shared as Uint8Array), label(v)).toBe(expected);
      }
    }
    expect(zero).toBeGreaterThan(5); // the low-order points are really in the file
  });

  it("making the points' key objects leaves the process's stack traces as they were", () => {
    const limit = Error.stackTraceLimit;
    try {
      Error.stackTraceLimit = 17;
      for (const v of all) attempt(() => x25519(x25519PrivateKey(hex(v.private)), hex(v.public)));
      expect(Error.stackTraceLimit).toBe(17);
      expect(new Error('here').stack?.split('\n').length).toBeGreaterThan(2);
    } finally {
      Error.stackTraceLimit = limit;
    }
  });

  it('the @noble reference agrees (and refuses the all-zero secret too)', () => {
    for (const v of all) {
      const shared = attempt(() => nobleX25519.getSharedSecret(hex(v.private), hex(v.public)));
      if (/^0+$/.test(String(v.shared))) expect(shared, label(v)).toBe('threw');
      else expect(toHex(shared as Uint8Array), label(v)).toBe(String(v.shared));
    }
  });
});

describe('Ed25519 (request, block, certificate and checkpoint signatures)', () => {
  const groups = load('ed25519_test.json');
  const all = groups.flatMap((g) => g.tests.map((v) => ({ key: hex((g.publicKey as { pk: string }).pk), v })));

  it('the project accepts every valid signature and no invalid one (malleable S, non-canonical R, wrong length)', () => {
    let invalid = 0;
    for (const { key, v } of all) {
      const ok = verifySignature(key, hex(v.msg), hex(v.sig));
      expect(ok, label(v)).toBe(v.result === 'valid');
      if (v.result === 'invalid') invalid++;
    }
    expect(invalid).toBeGreaterThan(50);
  });

  it('the thread-pool check (every request signature) gives the same answers', async () => {
    const answers = await Promise.all(all.map(({ key, v }) => verifySignatureAsync(key, hex(v.msg), hex(v.sig))));
    expect(answers.map((ok, i) => `${label((all[i] as (typeof all)[number]).v)}: ${ok}`)).toEqual(
      all.map(({ v }) => `${label(v)}: ${v.result === 'valid'}`),
    );
  });

  it('the @noble reference, in its strict RFC 8032 mode, agrees', () => {
    for (const { key, v } of all) {
      const ok = attempt(() => ed25519.verify(hex(v.sig), hex(v.msg), key, { zip215: false }));
      expect(ok === true, label(v)).toBe(v.result === 'valid');
    }
  });
});

describe("HKDF-SHA-256 (age's key schedule)", () => {
  const all = load('hkdf_sha256_test.json').flatMap((g) => g.tests);

  it('the project derives every valid 32-byte key (the only length age derives)', () => {
    let checked = 0;
    for (const v of all) {
      if (v.result !== 'valid' || v.size !== 32) continue;
      expect(toHex(hkdf(hex(v.ikm), hex(v.salt), hex(v.info))), label(v)).toBe(String(v.okm));
      checked++;
    }
    expect(checked).toBeGreaterThan(5);
  });

  it('the @noble reference derives every valid case and refuses every invalid size', () => {
    for (const v of all) {
      const okm = attempt(() => nobleHkdf(sha256, hex(v.ikm), hex(v.salt), hex(v.info), Number(v.size)));
      if (v.result === 'valid') expect(toHex(okm as Uint8Array), label(v)).toBe(String(v.okm));
      else expect(okm, label(v)).toBe('threw');
    }
  });
});

describe('HMAC-SHA-256 (the header MAC, subject pseudonyms)', () => {
  const groups = load('hmac_sha256_test.json');
  const all = groups.flatMap((g) => g.tests.map((v) => ({ bytes: Number(g.tagSize) / 8, v })));

  it('the project and the @noble reference accept every valid tag and refuse every invalid one', () => {
    let invalid = 0;
    for (const { bytes, v } of all) {
      const tag = hex(v.tag);
      const ours = hmacSha256(hex(v.key), hex(v.msg)).subarray(0, bytes);
      const theirs = nobleHmac(sha256, hex(v.key), hex(v.msg)).subarray(0, bytes);
      expect(constantTimeEqual(ours, tag), label(v)).toBe(v.result === 'valid');
      expect(constantTimeEqual(theirs, tag), label(v)).toBe(v.result === 'valid');
      if (v.result === 'invalid') invalid++;
    }
    expect(invalid).toBeGreaterThan(20);
  });
});
