/**
 * The part of node:crypto the shared modules (merkle, events, signing,
 * invites, stream, scrypt) use, for the console bundle, over @noble and the
 * page's crypto.getRandomValues. Only SHA-256 and ChaCha20-Poly1305: what
 * medvault's formats use.
 */
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { hmac } from '@noble/hashes/hmac.js';
import { scrypt } from '@noble/hashes/scrypt.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { Buffer } from 'buffer';

type Data = string | Uint8Array;
type Encoding = 'hex' | 'base64' | 'buffer' | undefined;

const bytesOf = (data: Data, encoding?: string): Uint8Array =>
  typeof data === 'string' ? Buffer.from(data, (encoding ?? 'utf8') as BufferEncoding) : plain(data);
const plain = (bytes: Uint8Array) => new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.length);
const out = (digest: Uint8Array, encoding: Encoding) => {
  const b = Buffer.from(digest.buffer, digest.byteOffset, digest.length);
  return encoding && encoding !== 'buffer' ? b.toString(encoding) : b;
};

function only(algorithm: string, wanted: string): void {
  if (algorithm !== wanted) throw new Error(`the console supports ${wanted}, not ${algorithm}`);
}

interface Hasher {
  update(data: Uint8Array): Hasher;
  digest(): Uint8Array;
}

class Digest {
  readonly #inner: Hasher;
  constructor(inner: Hasher) {
    this.#inner = inner;
  }
  update(data: Data, encoding?: string): this {
    this.#inner.update(bytesOf(data, encoding));
    return this;
  }
  digest(): Buffer;
  digest(encoding: 'hex' | 'base64'): string;
  digest(encoding?: 'hex' | 'base64'): Buffer | string {
    return out(this.#inner.digest(), encoding);
  }
}

export function createHash(algorithm: string): Digest {
  only(algorithm, 'sha256');
  return new Digest(sha256.create());
}

export function createHmac(algorithm: string, key: Uint8Array): Digest {
  only(algorithm, 'sha256');
  return new Digest(hmac.create(sha256, plain(key)));
}

export function hash(algorithm: string, data: Data, encoding: Encoding = 'hex'): Buffer | string {
  only(algorithm, 'sha256');
  return out(sha256(bytesOf(data)), encoding);
}

export function randomBytes(length: number): Buffer {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(length)));
}

export function randomUUID(): string {
  return crypto.randomUUID();
}

export function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) throw new RangeError('Input buffers must have the same byte length');
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] as number) ^ (b[i] as number);
  return diff === 0;
}

/** A secret key is its bytes here. */
export function createSecretKey(key: Uint8Array): Uint8Array {
  return Uint8Array.from(key);
}

/** ChaCha20-Poly1305 sealing as stream.ts drives it: one update, final, then the tag. */
export function createCipheriv(algorithm: string, key: Uint8Array, nonce: Uint8Array) {
  only(algorithm, 'chacha20-poly1305');
  let tag: Uint8Array = new Uint8Array(0);
  return {
    update(data: Uint8Array): Buffer {
      const sealed = chacha20poly1305(plain(key), Uint8Array.from(nonce)).encrypt(plain(data));
      tag = sealed.subarray(sealed.length - 16);
      return Buffer.from(sealed.buffer, sealed.byteOffset, sealed.length - 16);
    },
    final(): Buffer {
      return Buffer.alloc(0);
    },
    getAuthTag(): Buffer {
      return Buffer.from(tag);
    },
  };
}

export function scryptSync(
  password: Data,
  salt: Data,
  length: number,
  options: { N: number; r: number; p: number; maxmem?: number },
): Buffer {
  const key = scrypt(bytesOf(password), bytesOf(salt), { N: options.N, r: options.r, p: options.p, dkLen: length });
  return Buffer.from(key);
}

export type KeyObject = Uint8Array;
