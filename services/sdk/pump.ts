/**
 * Moves bytes from an input (file or stdin) through a synchronous stream core
 * to an output (file or stdout) with bounded memory.
 *
 * Files are read in large blocks and written with writev while the next block
 * is read and processed, so disk I/O (on libuv's threads) overlaps the crypto
 * (on this thread). An output file is written to a temporary name beside it,
 * fsync'd and renamed only on success; on failure the temporary is deleted,
 * so a failed run never leaves a partial file under the requested name.
 */
import { randomBytes } from 'node:crypto';
import { constants, type FileHandle, open, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Readable, type Writable } from 'node:stream';
import type { StreamCore } from '../../crypto/age.ts';
import { fsyncDirectory, writevAll } from '../../durable.ts';
import { MedvaultError } from '../../errors.ts';

const BLOCK_SIZE = 1024 * 1024;
const MAX_WRITES_IN_FLIGHT = 2;
const FLUSH_EVERY = 64 * 1024 * 1024;

export type Source = { path: string } | { stream: Readable };
export type Sink = { path: string } | { stream: Writable };

/** A file's bytes in 1 MiB blocks through two reused buffers: a block is valid until the next is asked for. */
export async function* readFile(handle: FileHandle): AsyncGenerator<Uint8Array> {
  // Two buffers: the core copies what it keeps, so a block can be reused
  // once the core has consumed it and the next read has been issued.
  const buffers = [Buffer.allocUnsafe(BLOCK_SIZE), Buffer.allocUnsafe(BLOCK_SIZE)];
  let turn = 0;
  let pending = handle.read(buffers[0] as Buffer, 0, BLOCK_SIZE, null);
  for (;;) {
    const { bytesRead, buffer } = await pending;
    if (bytesRead === 0) return;
    turn ^= 1;
    pending = handle.read(buffers[turn] as Buffer, 0, BLOCK_SIZE, null);
    yield buffer.subarray(0, bytesRead);
  }
}

function sourceIterable(source: Source, handle: FileHandle | null): AsyncIterable<Uint8Array> {
  return handle ? readFile(handle) : (source as { stream: Readable }).stream;
}

/**
 * Ordered, bounded, overlapped writes to a file. With `durable`, it also
 * flushes as it goes: after every FLUSH_EVERY bytes it starts an fdatasync
 * (at most one at a time, never awaited by the writer), so the disk writes
 * back while the crypto runs and the final fsync has little left to do.
 */
class FileWriter {
  readonly #handle: FileHandle;
  readonly #durable: boolean;
  readonly #inFlight: Promise<unknown>[] = [];
  #unflushed = 0;
  #flushing: Promise<void> | null = null;

  constructor(handle: FileHandle, durable: boolean) {
    this.#handle = handle;
    this.#durable = durable;
  }

  async write(pieces: Buffer[]): Promise<void> {
    if (pieces.length === 0) return;
    if (this.#inFlight.length >= MAX_WRITES_IN_FLIGHT) await this.#inFlight.shift();
    // Writes are appended in order: each starts after the previous resolves.
    const previous = this.#inFlight.at(-1) ?? Promise.resolve();
    const write = previous.then(() => writevAll(this.#handle, pieces)).then((n) => this.#wrote(n));
    write.catch(() => {}); // observed by the await in write() or close()
    this.#inFlight.push(write);
  }

  #wrote(bytes: number): void {
    this.#unflushed += bytes;
    if (!this.#durable || this.#flushing || this.#unflushed < FLUSH_EVERY) return;
    this.#unflushed = 0;
    this.#flushing = this.#handle.datasync().finally(() => {
      this.#flushing = null;
    });
    this.#flushing.catch(() => {}); // a failed flush resurfaces in the final fsync
  }

  async close(): Promise<void> {
    await Promise.all(this.#inFlight);
    await this.#flushing?.catch(() => {});
    if (this.#durable) await this.#handle.sync();
    await this.#handle.close();
  }

  async abandon(): Promise<void> {
    await Promise.allSettled([...this.#inFlight, this.#flushing]);
    await this.#handle.close();
  }
}

async function writeStream(stream: Writable, pieces: Buffer[]): Promise<void> {
  for (const piece of pieces) {
    if (!stream.write(piece)) await new Promise((resolve) => stream.once('drain', resolve));
  }
}

/** Opens the input file, turning fs errors into typed ones a person can act on. */
async function openInput(path: string): Promise<FileHandle> {
  try {
    return await open(path, constants.O_RDONLY);
  } catch (err) {
    throw ioError(err, `cannot read ${path}`);
  }
}

const ERRNO_REASONS: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  EEXIST: 'file already exists',
  EISDIR: 'is a directory',
  ENOSPC: 'no space left on device',
};

export function ioError(err: unknown, what: string): MedvaultError {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  const reason = ERRNO_REASONS[code] ?? (code || String(err));
  return new MedvaultError('IO_ERROR', `${what}: ${reason}`, { cause: err });
}

async function isRegularOrMissing(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return true;
  }
}

/**
 * `core`'s output over `source`, as a Readable (an upload's body). A file is
 * read through two reused buffers, so only the core's output is allocated:
 * a read stream piped into a Transform allocates every block once more, and
 * on a large file every 64 MiB of fresh buffers costs V8 a full collection.
 * `onRead` is told the input bytes read so far.
 */
export function coreReadable(core: StreamCore, source: Source, onRead?: (bytes: number) => void): Readable {
  async function* run(): AsyncGenerator<Buffer> {
    const input = 'path' in source ? await openInput(source.path) : null;
    try {
      let read = 0;
      for await (const data of sourceIterable(source, input)) {
        const out: Buffer[] = [];
        core.update(data, out);
        read += data.length;
        onRead?.(read);
        yield* out;
      }
      const out: Buffer[] = [];
      core.final(out);
      yield* out;
    } finally {
      await input?.close();
    }
  }
  return Readable.from(run(), { objectMode: false, highWaterMark: BLOCK_SIZE });
}

/** Runs `core` from `source` to `sink`. Returns the number of bytes written. */
export async function pump(core: StreamCore, source: Source, sink: Sink): Promise<number> {
  const input = 'path' in source ? await openInput(source.path) : null;
  let tempPath: string | null = null;
  let finalPath: string | null = null;
  let writer: FileWriter | null = null;
  let written = 0;
  try {
    if ('path' in sink) {
      // A regular file is replaced atomically; a device or FIFO is written in place.
      finalPath = sink.path;
      const atomic = await isRegularOrMissing(finalPath);
      tempPath = atomic
        ? join(dirname(finalPath), `.${basename(finalPath)}.${randomBytes(6).toString('hex')}.partial`)
        : null;
      const handle = await open(tempPath ?? finalPath, atomic ? 'wx' : 'w', 0o644).catch((err) => {
        throw ioError(err, `cannot write ${finalPath}`);
      });
      writer = new FileWriter(handle, atomic);
    }
    const emit = async (pieces: Buffer[]) => {
      for (const p of pieces) written += p.length;
      if (writer) await writer.write(pieces);
      else await writeStream((sink as { stream: Writable }).stream, pieces);
    };
    for await (const data of sourceIterable(source, input)) {
      const out: Buffer[] = [];
      core.update(data, out);
      await emit(out);
    }
    const out: Buffer[] = [];
    core.final(out);
    await emit(out);
    if (writer) {
      await writer.close();
      writer = null;
      if (tempPath && finalPath) {
        await rename(tempPath, finalPath);
        await fsyncDirectory(dirname(finalPath));
      }
      tempPath = null;
    }
    return written;
  } finally {
    await input?.close();
    if (writer) await writer.abandon();
    if (tempPath) await unlink(tempPath).catch(() => {});
  }
}
