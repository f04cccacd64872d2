/**
 * The embedded blob store: content-addressed files under a directory,
 * `blobs/<aa>/<bb>/<sha256>`.
 *
 * A put streams into `tmp/<random>` while hashing, fsyncs it, renames it to
 * its content address and fsyncs the directory: a half-written blob is never
 * visible under its name, and a crash leaves at most a temporary file, which
 * opening the store deletes. An existing blob with the same hash makes the put
 * a no-op (idempotent). A failed put leaves nothing.
 *
 * Delete unlinks the file and fsyncs its directory: the name and its blocks
 * are gone from the filesystem. (Overwriting first would not reliably reach
 * the physical medium on SSDs or journaling filesystems; what makes the
 * ciphertext unrecoverable is the destruction of its key, which erasure does
 * first. The erasure certificate states both.)
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { type FileHandle, mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { fsyncDirectory } from '../durable.ts';
import { check, fail } from '../errors.ts';
import type { BlobStore, ByteRange, DeleteResult, PutResult } from './blob-store.ts';
import { resolveRange, SHA256_REF } from './blob-store.ts';

export class FsBlobStore implements BlobStore {
  readonly kind = 'fs';
  readonly #root: string;

  private constructor(root: string) {
    this.#root = root;
  }

  /** Opens (creating) a store in `root`, deleting temporaries a crash left behind. */
  static async open(root: string): Promise<FsBlobStore> {
    await mkdir(join(root, 'blobs'), { recursive: true });
    await rm(join(root, 'tmp'), { recursive: true, force: true });
    await mkdir(join(root, 'tmp'), { recursive: true });
    return new FsBlobStore(root);
  }

  #path(ref: string): string {
    check(SHA256_REF.test(ref), 'STORE_BAD_REF', 'an fs blob ref is a SHA-256 in lower-case hex');
    return join(this.#root, 'blobs', ref.slice(0, 2), ref.slice(2, 4), ref);
  }

  async put(source: AsyncIterable<Uint8Array>): Promise<PutResult> {
    const temp = join(this.#root, 'tmp', randomBytes(12).toString('hex'));
    const hash = createHash('sha256');
    let size = 0;
    let handle: FileHandle | null = await open(temp, 'wx', 0o600);
    try {
      for await (const chunk of source) {
        hash.update(chunk);
        size += chunk.length;
        let written = 0;
        while (written < chunk.length) {
          written += (await handle.write(chunk, written, chunk.length - written)).bytesWritten;
        }
      }
      await handle.sync();
      await handle.close();
      handle = null;
      const ref = hash.digest('hex');
      const path = this.#path(ref);
      if (await this.has(ref)) {
        await unlink(temp);
        return { ref, size, sha256: ref };
      }
      await mkdir(dirname(path), { recursive: true });
      await rename(temp, path);
      await fsyncDirectory(dirname(path));
      return { ref, size, sha256: ref };
    } catch (err) {
      await handle?.close().catch(() => {});
      await rm(temp, { force: true });
      throw err;
    }
  }

  async get(ref: string, range?: ByteRange): Promise<Readable> {
    const path = this.#path(ref);
    const info = await this.stat(ref);
    if (!info) fail('STORE_NOT_FOUND', ref);
    const { start, end } = resolveRange(range, info.size);
    if (start === end) return Readable.from([]);
    return createReadStream(path, { start, end: end - 1, highWaterMark: 1 << 20 }); // `end` is inclusive there
  }

  async stat(ref: string): Promise<{ size: number } | null> {
    try {
      return { size: (await stat(this.#path(ref))).size };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
  }

  async has(ref: string): Promise<boolean> {
    return (await this.stat(ref)) !== null;
  }

  async delete(ref: string): Promise<DeleteResult> {
    const path = this.#path(ref);
    try {
      await unlink(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      return { ref, removed: false, confirmed: 'fs: no such file' };
    }
    await fsyncDirectory(dirname(path));
    const gone = !(await this.has(ref));
    return { ref, removed: gone, confirmed: gone ? 'fs: file unlinked, directory fsynced' : 'fs: file still present' };
  }

  async *list(): AsyncIterable<string> {
    const blobs = join(this.#root, 'blobs');
    for (const a of (await readdir(blobs)).sort()) {
      for (const b of (await readdir(join(blobs, a))).sort()) {
        for (const ref of (await readdir(join(blobs, a, b))).sort()) if (SHA256_REF.test(ref)) yield ref;
      }
    }
  }

  async close(): Promise<void> {}
}
