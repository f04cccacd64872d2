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
import { closeSync, createReadStream, openSync, readSync } from 'node:fs';
import { type FileHandle, mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { fsyncDirectory, writevAll } from '../durable.ts';
import { check, fail, storageFailureAs } from '../errors.ts';
import type { BlobStore, ByteRange, DeleteResult, PutResult } from './blob-store.ts';
import { resolveRange, SHA256_REF } from './blob-store.ts';

const STAGING_SIZE = 1024 * 1024;
/** A blob up to this size is kept as the chunks it came in and written with one writev. */
const SMALL_BLOB = 4 * 1024 * 1024;
const SYNC_EVERY = 32 * 1024 * 1024;

export class FsBlobStore implements BlobStore {
  readonly kind = 'fs';
  readonly #root: string;
  readonly #blobs: string;
  /**
   * Shard directories whose entry in their parent this process has made durable (or is making):
   * a blob renamed into a directory created a moment ago would be lost with it in a crash
   * unless the parent is synced too. Each is created and synced once per process, so a put into
   * an existing shard costs no mkdir.
   */
  readonly #shards = new Map<string, Promise<void>>();

  private constructor(root: string) {
    this.#root = root;
    this.#blobs = join(root, 'blobs');
  }

  /** Opens (creating) a store in `root`, deleting temporaries a crash left behind. */
  static async open(root: string): Promise<FsBlobStore> {
    await mkdir(join(root, 'blobs'), { recursive: true });
    await rm(join(root, 'tmp'), { recursive: true, force: true });
    await mkdir(join(root, 'tmp'), { recursive: true });
    await fsyncDirectory(root); // the entries of blobs/ and tmp/
    return new FsBlobStore(root);
  }

  /** Creates the shard directory `dir` (and its parent shard) if missing, durably, once per process. */
  #shard(dir: string): Promise<void> {
    let made = this.#shards.get(dir);
    if (!made) {
      made = (async () => {
        const parent = dirname(dir);
        if (parent !== this.#blobs) await this.#shard(parent);
        await mkdir(dir).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'EEXIST') throw err;
        });
        await fsyncDirectory(parent);
      })();
      this.#shards.set(dir, made);
      made.catch(() => this.#shards.delete(dir)); // the next put tries again
    }
    return made;
  }

  /** Renames the finished temporary to `path`, its shard directory made first if missing. */
  async #place(temp: string, path: string): Promise<void> {
    const dir = dirname(path);
    await this.#shard(dir);
    try {
      await rename(temp, path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      // The shard was removed behind this process's back: make it again.
      this.#shards.delete(dir);
      this.#shards.delete(dirname(dir));
      await this.#shard(dir);
      await rename(temp, path);
    }
  }

  #path(ref: string): string {
    check(SHA256_REF.test(ref), 'STORE_BAD_REF', 'an fs blob ref is a SHA-256 in lower-case hex');
    return join(this.#blobs, ref.slice(0, 2), ref.slice(2, 4), ref);
  }

  async put(source: AsyncIterable<Uint8Array>): Promise<PutResult> {
    const temp = join(this.#root, 'tmp', randomBytes(12).toString('hex'));
    const hash = createHash('sha256');
    let size = 0;
    let handle: FileHandle | null = await open(temp, 'wx', 0o600).catch((err: unknown) => {
      throw storageFailureAs(err, `the blob store at ${this.#root}`);
    });
    // Slots 0 and 1: the staging buffers' writes; slot 2: the running datasync.
    const writing: Array<Promise<unknown>> = [Promise.resolve(), Promise.resolve(), Promise.resolve()];
    try {
      // Chunks (64 KiB from a socket) are copied into two 1 MiB staging buffers: one fills while
      // the other is written, so the disk sees large writes and receiving overlaps writing.
      const file = handle;
      // Allocated only once a blob outgrows SMALL_BLOB: a document up to that size is kept as
      // the chunks it came in and written with one writev, never copied (two 1 MiB buffers per
      // 1 KiB upload were most of the node's garbage collection under many small uploads, and
      // two fresh ones per 1 MiB upload a seventh of its CPU).
      let staging: Buffer[] | null = null;
      let head: Uint8Array[] = [];
      let turn = 0;
      let filled = 0;
      let position = 0;
      // Written data is flushed to the disk every 32 MiB while more arrives, so the final
      // fsync has little left to do instead of stalling on the whole blob at the end.
      let synced = 0;
      const flush = async () => {
        if (filled === 0 || !staging) return;
        // Positional: two writes may be in flight, and each must land at its own offset.
        const written = writevAll(file, [(staging[turn] as Buffer).subarray(0, filled)], position);
        written.catch(() => {}); // observed below, or by Promise.all at the end; never unhandled meanwhile
        writing[turn] = written;
        position += filled;
        if (position - synced >= SYNC_EVERY) {
          synced = position;
          const sync = Promise.all([writing[2], written]).then(() => file.datasync());
          sync.catch(() => {});
          writing[2] = sync;
        }
        turn ^= 1;
        filled = 0;
        await writing[turn]; // the other buffer's write must finish before it is refilled
      };
      const stage = async (chunk: Uint8Array, buffers: Buffer[]) => {
        for (let offset = 0; offset < chunk.length; ) {
          const n = Math.min(STAGING_SIZE - filled, chunk.length - offset);
          (buffers[turn] as Buffer).set(chunk.subarray(offset, offset + n), filled);
          filled += n;
          offset += n;
          if (filled === STAGING_SIZE) await flush();
        }
      };
      for await (const chunk of source) {
        hash.update(chunk);
        size += chunk.length;
        if (staging) await stage(chunk, staging);
        else if (size <= SMALL_BLOB) head.push(chunk);
        else {
          // Outgrown: what was kept, then the rest, goes through the staging buffers.
          staging = [Buffer.allocUnsafe(STAGING_SIZE), Buffer.allocUnsafe(STAGING_SIZE)];
          for (const early of head) await stage(early, staging);
          head = [];
          await stage(chunk, staging);
        }
      }
      if (head.length > 0) await writevAll(file, head, 0);
      await flush();
      await Promise.all(writing);
      await handle.sync();
      await handle.close();
      handle = null;
      const ref = hash.digest('hex');
      const path = this.#path(ref);
      if (await this.has(ref)) await unlink(temp);
      else await this.#place(temp, path);
      await fsyncDirectory(dirname(path)); // also when held: the put that placed it may not have synced it yet
      return { ref, size, sha256: ref };
    } catch (err) {
      await Promise.allSettled(writing); // no write may still be running when the file is closed
      await handle?.close().catch(() => {});
      await rm(temp, { force: true });
      throw storageFailureAs(err, `the blob store at ${this.#root}`);
    }
  }

  /** Temporary files of puts a crash cut off (also removed when the store opens). */
  async collectStrays(options: { olderThanMs: number }): Promise<string[]> {
    const before = Date.now() - options.olderThanMs;
    const removed: string[] = [];
    for (const name of await readdir(join(this.#root, 'tmp')).catch(() => [] as string[])) {
      const path = join(this.#root, 'tmp', name);
      const info = await stat(path).catch(() => null);
      if (!info || info.mtimeMs > before) continue;
      await rm(path, { force: true });
      removed.push(`fs: temporary file ${name}`);
    }
    return removed;
  }

  async get(ref: string, range?: ByteRange): Promise<Readable> {
    const path = this.#path(ref);
    const info = await this.stat(ref);
    if (!info) fail('STORE_NOT_FOUND', ref);
    const { start, end } = resolveRange(range, info.size);
    if (start === end) return Readable.from([]);
    return createReadStream(path, { start, end: end - 1, highWaterMark: 1 << 20 }); // `end` is inclusive there
  }

  /**
   * Open, read, close, synchronously: a small record's fetch (up to 64 KiB, services/vault/vault.ts
   * WHOLE_BLOB) is read in tens of microseconds from the page cache or an SSD, where three trips
   * through the thread pool, busy with the ledger's and blobs' fsyncs, took 6 ms of its latency
   * at 32 clients (docs/benchmarks.md). On a disk that seeks, each such read holds the event loop
   * for the seek.
   */
  async read(ref: string, size: number): Promise<Buffer> {
    let fd: number;
    try {
      fd = openSync(this.#path(ref), 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') fail('STORE_NOT_FOUND', ref);
      throw err;
    }
    try {
      const buffer = Buffer.allocUnsafe(size + 1); // one byte more: a blob that grew shows
      let filled = 0;
      for (let n = -1; n !== 0 && filled < buffer.length; filled += n) {
        n = readSync(fd, buffer, filled, buffer.length - filled, filled);
      }
      return buffer.subarray(0, filled);
    } finally {
      closeSync(fd);
    }
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
    const blobs = this.#blobs;
    for (const a of (await readdir(blobs)).sort()) {
      for (const b of (await readdir(join(blobs, a))).sort()) {
        for (const ref of (await readdir(join(blobs, a, b))).sort()) if (SHA256_REF.test(ref)) yield ref;
      }
    }
  }

  async close(): Promise<void> {}
}
