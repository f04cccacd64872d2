/**
 * Ed25519 member signing keys (blocks, requests, certificates), through
 * node:crypto. A key's id is its fingerprint: the first 16 bytes of
 * SHA-256("medvault/ed25519" || public key), in hex, so any holder of the
 * public key can check which id it belongs to.
 */
import { createPrivateKey, createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { check } from '../errors.ts';
import { sha256 } from './merkle.ts';
import { random } from './primitives.ts';

const PKCS8_ED25519 = Buffer.from('302e020100300506032b657004220420', 'hex');
const SPKI_ED25519 = Buffer.from('302a300506032b6570032100', 'hex');
const KEY_LENGTH = 32;
const FINGERPRINT_LABEL = Buffer.from('medvault/ed25519');

export function keyFingerprint(publicKey: Uint8Array): string {
  return Buffer.from(sha256(FINGERPRINT_LABEL, publicKey).subarray(0, 16)).toString('hex');
}

/** Public key objects of the keys verified lately (members and nodes: few, used on every request). */
const VERIFYING = new LRUCache<string, KeyObject>({ max: 1024 });

function publicKeyObject(publicKey: Uint8Array): KeyObject {
  check(publicKey.length === KEY_LENGTH, 'KEY_INVALID', 'an Ed25519 public key is 32 bytes');
  const id = Buffer.from(publicKey).toString('hex');
  let key = VERIFYING.get(id);
  if (!key) {
    key = createPublicKey({ key: Buffer.concat([SPKI_ED25519, publicKey]), format: 'der', type: 'spki' });
    VERIFYING.set(id, key);
  }
  return key;
}

export class SigningKey {
  readonly #key: KeyObject;
  readonly #seed: Uint8Array;
  readonly publicKey: Uint8Array;
  readonly id: string;

  constructor(seed: Uint8Array) {
    check(seed.length === KEY_LENGTH, 'KEY_INVALID', 'an Ed25519 seed is 32 bytes');
    this.#seed = seed;
    this.#key = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519, seed]), format: 'der', type: 'pkcs8' });
    const spki = createPublicKey(this.#key).export({ format: 'der', type: 'spki' });
    this.publicKey = new Uint8Array(spki.subarray(SPKI_ED25519.length));
    this.id = keyFingerprint(this.publicKey);
  }

  static generate(): SigningKey {
    return new SigningKey(random(KEY_LENGTH));
  }

  /** The 32-byte seed, for a keystore. Never log it. */
  exportSeed(): Uint8Array {
    return Uint8Array.from(this.#seed);
  }

  sign(message: Uint8Array): Uint8Array {
    return new Uint8Array(sign(null, message, this.#key));
  }
}

/** Checks an Ed25519 signature; false for a bad signature or a malformed key. */
export function verifySignature(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (signature.length !== 64 || publicKey.length !== KEY_LENGTH) return false;
  try {
    return verify(null, message, publicKeyObject(publicKey), signature);
  } catch {
    return false;
  }
}

/**
 * `verifySignature` on libuv's thread pool: the calling thread spends ~20 µs instead of the
 * ~100 µs a verification takes here (a node checks one or two per request on its main thread,
 * its serial part; docs/benchmarks.md, session 17).
 */
export function verifySignatureAsync(
  publicKey: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  if (signature.length !== 64 || publicKey.length !== KEY_LENGTH) return Promise.resolve(false);
  return new Promise((resolve) => {
    try {
      verify(null, message, publicKeyObject(publicKey), signature, (err, valid) => resolve(!err && valid));
    } catch {
      resolve(false);
    }
  });
}
