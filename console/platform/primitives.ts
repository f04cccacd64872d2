/**
 * The browser's crypto/primitives.ts (the console bundle swaps it in; see
 * scripts/build-console.ts): the same exports over @noble instead of
 * node:crypto. An X25519 "key object" is the raw 32-byte secret here.
 */
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { x25519 as curve } from '@noble/curves/ed25519.js';
import { hkdf as nobleHkdf } from '@noble/hashes/hkdf.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { Buffer } from 'buffer';

export const FILE_KEY_LENGTH = 16;
export const TAG_LENGTH = 16;

const ZERO_NONCE = new Uint8Array(12);
const text = (s: string | Uint8Array) => (typeof s === 'string' ? new TextEncoder().encode(s) : s);
const plain = (bytes: Uint8Array) => new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);

export function random(length: number): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(length));
}

export function hkdf(ikm: Uint8Array, salt: Uint8Array | null, info: string | Uint8Array): Uint8Array {
  return nobleHkdf(sha256, plain(ikm), salt ? plain(salt) : new Uint8Array(0), text(info), 32);
}

export function hmacSha256(key: Uint8Array, data: Uint8Array): Uint8Array {
  return hmac(sha256, plain(key), plain(data));
}

export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] as number) ^ (b[i] as number);
  return diff === 0;
}

export function aeadSeal(key: Uint8Array, plaintext: Uint8Array, nonce: Uint8Array = ZERO_NONCE): Uint8Array {
  return chacha20poly1305(plain(key), Uint8Array.from(nonce)).encrypt(plain(plaintext));
}

export function aeadOpen(key: Uint8Array, sealed: Uint8Array, nonce: Uint8Array = ZERO_NONCE): Buffer | null {
  if (sealed.length < TAG_LENGTH) return null;
  try {
    const opened = chacha20poly1305(plain(key), Uint8Array.from(nonce)).decrypt(plain(sealed));
    return Buffer.from(opened.buffer, opened.byteOffset, opened.length);
  } catch {
    return null;
  }
}

export function x25519PrivateKey(secret: Uint8Array): Uint8Array {
  return Uint8Array.from(secret);
}

export function x25519PublicKeyObject(publicKey: Uint8Array): Uint8Array {
  return Uint8Array.from(publicKey);
}

export function x25519RawPublic(privateKey: Uint8Array): Uint8Array {
  return curve.getPublicKey(privateKey);
}

/** A fresh X25519 key pair: the secret and its public share. */
export function x25519Ephemeral(): { privateKey: Uint8Array; share: Uint8Array } {
  const privateKey = random(32);
  return { privateKey, share: curve.getPublicKey(privateKey) };
}

/** X25519(secret, point); `null` for an all-zero result (a low-order point), as age requires. */
export function x25519(privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array | null {
  let shared: Uint8Array;
  try {
    shared = curve.getSharedSecret(privateKey, plain(publicKey));
  } catch {
    return null;
  }
  return shared.every((b) => b === 0) ? null : shared;
}
