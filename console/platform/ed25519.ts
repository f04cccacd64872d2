/**
 * The browser's crypto/ed25519.ts (swapped in by scripts/build-console.ts):
 * the same keys, ids and signatures over @noble/curves.
 */
import { ed25519 } from '@noble/curves/ed25519.js';
import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js';
import { check } from '../../errors.ts';

const KEY_LENGTH = 32;
const FINGERPRINT_LABEL = new TextEncoder().encode('medvault/ed25519');
const hex = (bytes: Uint8Array) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
const plain = (bytes: Uint8Array) => new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);

export function keyFingerprint(publicKey: Uint8Array): string {
  const digest = nobleSha256.create().update(FINGERPRINT_LABEL).update(plain(publicKey)).digest();
  return hex(digest.subarray(0, 16));
}

export class SigningKey {
  readonly #seed: Uint8Array;
  readonly publicKey: Uint8Array;
  readonly id: string;

  constructor(seed: Uint8Array) {
    check(seed.length === KEY_LENGTH, 'KEY_INVALID', 'an Ed25519 seed is 32 bytes');
    this.#seed = Uint8Array.from(seed);
    this.publicKey = ed25519.getPublicKey(this.#seed);
    this.id = keyFingerprint(this.publicKey);
  }

  static generate(): SigningKey {
    return new SigningKey(crypto.getRandomValues(new Uint8Array(KEY_LENGTH)));
  }

  exportSeed(): Uint8Array {
    return Uint8Array.from(this.#seed);
  }

  sign(message: Uint8Array): Uint8Array {
    return ed25519.sign(plain(message), this.#seed);
  }
}

export function verifySignature(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (signature.length !== 64 || publicKey.length !== KEY_LENGTH) return false;
  try {
    return ed25519.verify(plain(signature), plain(message), plain(publicKey));
  } catch {
    return false;
  }
}
