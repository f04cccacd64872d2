/**
 * Differential tests: medvault's node:crypto code against independent
 * implementations. Primitives against @noble; the STREAM payload byte for
 * byte against the @noble reference (same key and nonce give the same bytes);
 * whole files across three implementations — medvault, the `age-encryption`
 * npm package (typage) and the @noble reference — every encrypter against
 * every decrypter. The suite takes the implementation as a parameter.
 */
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { x25519 as nobleX25519 } from '@noble/curves/ed25519.js';
import { hkdf as nobleHkdf } from '@noble/hashes/hkdf.js';
import { hmac as nobleHmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { Decrypter, Encrypter } from 'age-encryption';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decrypt, encrypt } from '../../crypto/age.ts';
import {
  aeadOpen,
  aeadSeal,
  hkdf,
  hmacSha256,
  x25519,
  x25519PrivateKey,
  x25519RawPublic,
} from '../../crypto/primitives.ts';
import { PayloadSealer } from '../../crypto/stream.ts';
import { X25519Identity, X25519Recipient } from '../../crypto/x25519.ts';
import { bytes } from '../helpers.ts';
import { refDecrypt, refEncrypt, refPublicKey, refSealPayload } from './reference.ts';

const te = new TextEncoder();
const key32 = fc.uint8Array({ minLength: 32, maxLength: 32 });

describe('primitives against @noble', () => {
  it('ChaCha20-Poly1305 seal and open', () => {
    fc.assert(
      fc.property(
        key32,
        fc.uint8Array({ minLength: 12, maxLength: 12 }),
        fc.uint8Array({ maxLength: 3000 }),
        (k, n, p) => {
          const ours = aeadSeal(k, p, n);
          expect(Buffer.compare(ours, chacha20poly1305(k, n).encrypt(p))).toBe(0);
          expect(Buffer.compare(aeadOpen(k, ours, n) as Uint8Array, p)).toBe(0);
        },
      ),
    );
  });

  it('HKDF-SHA-256 and HMAC-SHA-256', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 80 }),
        fc.uint8Array({ maxLength: 40 }),
        fc.string(),
        (ikm, salt, info) => {
          expect(Buffer.compare(hkdf(ikm, salt, info), nobleHkdf(sha256, ikm, salt, te.encode(info), 32))).toBe(0);
          expect(Buffer.compare(hmacSha256(ikm, salt), nobleHmac(sha256, ikm, salt))).toBe(0);
        },
      ),
    );
  });

  it('X25519 public keys and shared secrets', () => {
    fc.assert(
      fc.property(key32, key32, (a, b) => {
        const pubB = nobleX25519.getPublicKey(b);
        expect(Buffer.compare(x25519RawPublic(x25519PrivateKey(a)), nobleX25519.getPublicKey(a))).toBe(0);
        expect(
          Buffer.compare(x25519(x25519PrivateKey(a), pubB) as Uint8Array, nobleX25519.getSharedSecret(a, pubB)),
        ).toBe(0);
      }),
    );
  });

  it('identity and recipient encodings match the reference', () => {
    const id = X25519Identity.generate();
    expect(refPublicKey(id.toString())).toBe(id.recipient.toString());
  });
});

describe('STREAM payload byte for byte against the @noble reference', () => {
  it.each([0, 1, 65535, 65536, 65537, 3 * 65536, 200_003])('%i bytes, fed in one piece', (size) => {
    const fileKey = bytes(16, size + 1);
    const nonce = bytes(16, size + 2);
    const plain = bytes(size, size + 3);
    const out: Buffer[] = [];
    const sealer = new PayloadSealer(fileKey, nonce);
    sealer.update(plain, out);
    sealer.final(out);
    expect(Buffer.compare(Buffer.concat(out), refSealPayload(fileKey, nonce, plain))).toBe(0);
  });

  it('any split of the input gives the same bytes', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 300_000 }), fc.array(fc.nat(), { maxLength: 8 }), (size, cuts) => {
        const fileKey = bytes(16, 5);
        const nonce = bytes(16, 6);
        const plain = bytes(size, 7);
        const points = [...new Set(cuts.map((c) => c % (size + 1)))].sort((a, b) => a - b);
        const sealer = new PayloadSealer(fileKey, nonce);
        const out: Buffer[] = [];
        let from = 0;
        for (const p of [...points, size]) {
          sealer.update(plain.subarray(from, p), out);
          from = p;
        }
        sealer.final(out);
        expect(Buffer.compare(Buffer.concat(out), refSealPayload(fileKey, nonce, plain))).toBe(0);
      }),
      { numRuns: 60 },
    );
  });
});

interface AgeImplementation {
  name: string;
  encrypt(recipients: string[], plain: Uint8Array): Promise<Uint8Array>;
  decrypt(identities: string[], file: Uint8Array): Promise<Uint8Array>;
}

const implementations: AgeImplementation[] = [
  {
    name: 'medvault',
    encrypt: async (r, p) =>
      encrypt(
        r.map((x) => X25519Recipient.parse(x)),
        p,
      ),
    decrypt: async (i, f) =>
      decrypt(
        i.map((x) => X25519Identity.parse(x)),
        f,
      ),
  },
  {
    name: 'typage',
    encrypt: async (r, p) => {
      const e = new Encrypter();
      for (const x of r) e.addRecipient(x);
      return e.encrypt(p);
    },
    decrypt: async (i, f) => {
      const d = new Decrypter();
      for (const x of i) d.addIdentity(x);
      return d.decrypt(f);
    },
  },
  { name: '@noble reference', encrypt: async (r, p) => refEncrypt(r, p), decrypt: async (i, f) => refDecrypt(i, f) },
];

const pairs = implementations.flatMap((e) => implementations.map((d) => [e.name, d.name, e, d] as const));

describe.each(pairs)('%s encrypts, %s decrypts', (_e, _d, encrypter, decrypter) => {
  const identities = [X25519Identity.generate(), X25519Identity.generate()];
  const recipients = identities.map((i) => i.recipient.toString());

  it.each([0, 1, 65536, 65537, 1 << 20])('%i bytes', async (size) => {
    const plain = bytes(size, size + 11);
    const file = await encrypter.encrypt(recipients, plain);
    for (const identity of identities) {
      expect(Buffer.compare(await decrypter.decrypt([identity.toString()], file), plain)).toBe(0);
    }
  });
});

describe('typage passphrase files', () => {
  it('medvault decrypts a typage scrypt file', async () => {
    const { ScryptIdentity } = await import('../../crypto/scrypt.ts');
    const e = new Encrypter();
    e.setPassphrase('a long shared passphrase');
    e.setScryptWorkFactor(12);
    const file = await e.encrypt('lab result');
    expect(Buffer.from(decrypt([new ScryptIdentity('a long shared passphrase')], file)).toString()).toBe('lab result');
  });
});
