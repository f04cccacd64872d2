/**
 * The BlobStore contract: where ciphertext lives. Every backend streams (no
 * whole blob in memory), hashes on the way in, keeps puts idempotent, and
 * can make a blob unrecoverable from that store when erasure asks.
 *
 * A ref names a blob in one store: the SHA-256 hex for content-addressed
 * files and objects, a CID for IPFS. Backends throw STORE_* errors (see
 * errors.ts): NOT_FOUND, UNAVAILABLE, TIMEOUT, AUTH, INTEGRITY, BAD_REF.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { check, fail } from '../errors.ts';

export interface PutResult {
  ref: string;
  size: number;
  /** SHA-256 of the bytes, hex. */
  sha256: string;
}

/** A byte range: `start` inclusive, `end` exclusive (to the end when absent). */
export interface ByteRange {
  start: number;
  end?: number;
}

export interface DeleteResult {
  ref: string;
  /** True when the store held the blob and no longer does. */
  removed: boolean;
  /** What the store did and confirmed, for the erasure certificate. */
  confirmed: string;
}

export interface BlobStore {
  readonly kind: string;
  /**
   * Streams `source` into the store. Idempotent: the same bytes give the same ref. A chunk is
   * the store's once yielded: its producer must not reuse or change it (a socket's chunks, a
   * cipher's output; the fs store keeps a small blob's chunks and writes them at the end).
   */
  put(source: AsyncIterable<Uint8Array>): Promise<PutResult>;
  /** Streams a blob, or a range of it. Throws STORE_NOT_FOUND. */
  get(ref: string, range?: ByteRange): Promise<Readable>;
  /**
   * Optional, for a store that can do it in fewer steps than `get`: a small blob whole, in one
   * buffer. `size` is what the caller expects: at most `size + 1` bytes are read, so a longer
   * blob shows. Throws STORE_NOT_FOUND.
   */
  read?(ref: string, size: number): Promise<Buffer>;
  /**
   * Optional, for a store of several copies: `readChecked` and `readSized` (below) answered by
   * the store, which passes over a copy that fails their checks for the next one.
   */
  readWhole?(ref: string, size: number, sha256: string): Promise<Buffer>;
  readStream?(ref: string, size: number): Promise<Readable>;
  /** The blob's size, or null when the store does not hold it. */
  stat(ref: string): Promise<{ size: number } | null>;
  has(ref: string): Promise<boolean>;
  /** Removes the blob from this store for good (see each backend for what that means). */
  delete(ref: string): Promise<DeleteResult>;
  /** Every ref the store holds, for garbage collection. */
  list(): AsyncIterable<string>;
  /**
   * Removes what puts cut off by a crash left behind (temporary objects and files, incomplete
   * multipart uploads, unpinned blocks) older than `olderThanMs`, so as not to touch a put still
   * running (here or, on a shared store, on another node); says what it removed.
   */
  collectStrays?(options: { olderThanMs: number }): Promise<string[]>;
  close(): Promise<void>;
}

export const SHA256_REF = /^[0-9a-f]{64}$/;

/** The bytes [start, end) a range asks of a blob of `size` bytes; INVALID_ARGUMENT when outside it. */
export function resolveRange(range: ByteRange | undefined, size: number): { start: number; end: number } {
  const start = range?.start ?? 0;
  const end = range?.end ?? size;
  check(
    Number.isSafeInteger(start) && Number.isSafeInteger(end) && start >= 0 && start <= end && end <= size,
    'INVALID_ARGUMENT',
    `range ${start}..${end} is outside a blob of ${size} bytes`,
  );
  return { start, end };
}

/**
 * A blob whole, as one buffer, checked: STORE_INTEGRITY unless the store gives exactly `size`
 * bytes hashing to `sha256` (hex). For small blobs, read before anything is said of them.
 */
export async function readChecked(store: BlobStore, ref: string, size: number, sha256: string): Promise<Buffer> {
  if (store.readWhole) return store.readWhole(ref, size, sha256);
  let bytes: Buffer;
  if (store.read) bytes = await store.read(ref, size);
  else {
    const parts: Uint8Array[] = [];
    for await (const chunk of await store.get(ref)) parts.push(chunk);
    bytes = Buffer.concat(parts);
  }
  if (bytes.length !== size) {
    fail(
      'STORE_INTEGRITY',
      `blob ${ref}: ${bytes.length > size ? 'more than' : bytes.length} bytes stored, ${size} recorded`,
    );
  }
  const actual = createHash('sha256').update(bytes).digest('hex');
  if (actual !== sha256) fail('STORE_INTEGRITY', `blob ${ref} hashes to ${actual}, recorded ${sha256}`);
  return bytes;
}

/**
 * A blob as a stream of exactly `size` bytes. Its size is asked first: a blob the store holds
 * shorter or longer is STORE_INTEGRITY (missing: STORE_NOT_FOUND) before a byte is read, so a
 * fetch refuses it before anchoring an access. The stream still ends only after exactly `size`
 * bytes: one that changes while it is read fails STORE_INTEGRITY at that point (a reply then
 * breaks off rather than waits for bytes its length promised). Its hash is the reader's to check.
 */
export async function readSized(store: BlobStore, ref: string, size: number): Promise<Readable> {
  if (store.readStream) return store.readStream(ref, size);
  const stored = await store.stat(ref);
  if (!stored) fail('STORE_NOT_FOUND', ref);
  if (stored.size !== size) fail('STORE_INTEGRITY', `blob ${ref}: ${stored.size} bytes stored, ${size} recorded`);
  const blob = await store.get(ref);
  async function* exactly() {
    let seen = 0;
    for await (const chunk of blob) {
      seen += chunk.length;
      if (seen > size) break;
      yield chunk;
    }
    if (seen !== size)
      fail('STORE_INTEGRITY', `blob ${ref}: ${seen > size ? 'more than' : seen} bytes stored, ${size} recorded`);
  }
  const sized = Readable.from(exactly(), { objectMode: false });
  sized.once('close', () => blob.destroy());
  return sized;
}
