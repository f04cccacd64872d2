/**
 * The primitives of age v1, all through node:crypto (OpenSSL): HKDF-SHA-256,
 * HMAC-SHA-256, single-shot ChaCha20-Poly1305 for key wrapping, and X25519.
 *
 * Secret keys reach node:crypto as key objects (`secretKey`): given raw bytes,
 * createHmac, createCipheriv and hkdfSync first ask whether they are a
 * KeyObject or a CryptoKey, which costs more than the work itself on a small
 * input (Node 24 here: HMAC 12.7 µs with bytes, 2.3 µs with a key object made
 * in 1.7 µs; a cipher 13.4 against 1.7 µs; HKDF 11.3 against 5.4 µs).
 */
import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  createPrivateKey,
  createPublicKey,
  createSecretKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  type KeyObject,
  randomBytes,
  timingSafeEqual,
} from 'node:crypto';
import { check } from '../errors.ts';

export const FILE_KEY_LENGTH = 16;
export const TAG_LENGTH = 16;

const ZERO_NONCE = Buffer.alloc(12);
const EMPTY = Buffer.alloc(0);

export function random(length: number): Uint8Array {
  return new Uint8Array(randomBytes(length));
}

/** HKDF-SHA-256 with 32 bytes of output, as every age derivation uses (age's labels are text). */
export function hkdf(ikm: Uint8Array, salt: Uint8Array | null, info: string | Uint8Array): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', secretKey(ikm), salt ?? EMPTY, info, 32));
}

export function hmacSha256(key: Uint8Array, data: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac('sha256', secretKey(key)).update(data).digest());
}

/** `key` as a secret key object (module comment: the cheap way into node:crypto). */
export function secretKey(key: Uint8Array | KeyObject): KeyObject {
  return key instanceof Uint8Array ? createSecretKey(key) : key;
}

export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** ChaCha20-Poly1305 with a 12-byte nonce; returns ciphertext || tag. (age uses no AAD.) */
export function aeadSeal(
  key: Uint8Array,
  plaintext: Uint8Array,
  nonce: Uint8Array = ZERO_NONCE,
  aad?: Uint8Array,
): Uint8Array {
  const cipher = createCipheriv('chacha20-poly1305', secretKey(key), nonce, { authTagLength: TAG_LENGTH });
  if (aad && aad.length > 0) cipher.setAAD(aad, { plaintextLength: plaintext.length });
  const head = cipher.update(plaintext);
  cipher.final();
  return new Uint8Array(Buffer.concat([head, cipher.getAuthTag()]));
}

/**
 * Opens ciphertext || tag with ChaCha20-Poly1305; `null` when authentication
 * fails. The plaintext is returned only after the tag has verified.
 */
export function aeadOpen(
  key: Uint8Array | KeyObject,
  sealed: Uint8Array,
  nonce: Uint8Array = ZERO_NONCE,
  aad?: Uint8Array,
): Buffer | null {
  if (sealed.length < TAG_LENGTH) return null;
  const cut = sealed.length - TAG_LENGTH;
  const decipher = createDecipheriv('chacha20-poly1305', secretKey(key), nonce, { authTagLength: TAG_LENGTH });
  decipher.setAuthTag(sealed.subarray(cut));
  if (aad && aad.length > 0) decipher.setAAD(aad, { plaintextLength: cut });
  const plain = decipher.update(sealed.subarray(0, cut));
  try {
    decipher.final();
  } catch {
    return null;
  }
  return plain;
}

// The DER prefix of an X25519 private key (PKCS#8), so a raw
// 32-byte secret can be handed to OpenSSL.
const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');

/**
 * Runs `make` with V8's stack traces off. node:crypto's key constructors (Node 24) find out
 * whether their argument is a KeyObject or a CryptoKey by catching a failed private-field
 * access: two TypeErrors thrown and caught per call, each capturing a stack trace, were 70 % of
 * making an X25519 public key object (20 µs, 6.5 µs without the traces, here). Synchronous:
 * nothing else runs before the limit is restored.
 */
function withoutStackTraces<T>(make: () => T): T {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return make();
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/** An X25519 private key object from its raw 32-byte secret (42 µs here, 59 with stack traces on). */
export function x25519PrivateKey(secret: Uint8Array): KeyObject {
  const der = Buffer.concat([PKCS8_X25519, secret]);
  try {
    return withoutStackTraces(() => createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }));
  } finally {
    der.fill(0);
  }
}

export function x25519PublicKeyObject(publicKey: Uint8Array): KeyObject {
  check(publicKey.length === 32, 'KEY_INVALID', 'an X25519 public key is 32 bytes');
  // As a JWK: 20 µs here against 32 µs for the same key as DER (an ephemeral share in every stanza).
  const x = Buffer.from(publicKey.buffer, publicKey.byteOffset, publicKey.length).toString('base64url');
  return withoutStackTraces(() => createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x }, format: 'jwk' }));
}

/** The raw 32-byte public key of an X25519 key object (private or public). */
export function x25519RawPublic(key: KeyObject): Uint8Array {
  // The JWK export is the cheapest way out of OpenSSL (a third of a DER export's time).
  const { x } = (key.type === 'public' ? key : createPublicKey(key)).export({ format: 'jwk' });
  return new Uint8Array(Buffer.from(x as string, 'base64url'));
}

/** A fresh X25519 key pair (a stanza's ephemeral share): OpenSSL makes it, no DER round trip. */
export function x25519Ephemeral(): { privateKey: KeyObject; share: Uint8Array } {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  return { privateKey, share: x25519RawPublic(publicKey) };
}

/**
 * X25519(secret, point). Returns `null` when the result is all zeros (a
 * low-order point), which OpenSSL refuses and age requires aborting on.
 * `publicKey` may be a key object already made (a recipient's, used again).
 */
export function x25519(privateKey: KeyObject, publicKey: Uint8Array | KeyObject): Uint8Array | null {
  let shared: Buffer;
  try {
    const point = publicKey instanceof Uint8Array ? x25519PublicKeyObject(publicKey) : publicKey;
    shared = diffieHellman({ privateKey, publicKey: point });
  } catch {
    return null;
  }
  return shared.every((b) => b === 0) ? null : new Uint8Array(shared);
}
