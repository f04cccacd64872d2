/**
 * Replication: one blob written to several stores (say MinIO and IPFS).
 *
 * put streams the source to every replica at once, with backpressure (each
 * replica holds at most a couple of chunks waiting), and checks that all
 * copies hashed to the same SHA-256 and size. Unless `minCopies` of them
 * succeed (all, by default), the copies that did are deleted again and the
 * put fails: a failed put leaves nothing behind. The ref names every copy:
 * `rep:<name>=<ref>,<name>=<ref>`, since stores address blobs differently.
 *
 * get, stat and has ask the copies in order and use the first that answers.
 * A fetch's checked reads (readChecked, readSized) use the first copy that
 * passes their checks: a copy lost, out of reach, or damaged (its size or
 * hash not the recorded ones) is passed over, with a warning naming it for
 * repair, while another copy is intact.
 * delete removes every copy and reports what each store confirmed; if a
 * store cannot be reached it throws STORE_UNAVAILABLE naming the copies that
 * were and were not removed, so erasure knows what to retry.
 */
import type { Readable } from 'node:stream';
import { check, fail, isMedvaultError, MedvaultError } from '../errors.ts';
import { logger } from '../log.ts';
import {
  type BlobStore,
  type ByteRange,
  type DeleteResult,
  type PutResult,
  readChecked,
  readSized,
} from './blob-store.ts';

export interface Replica {
  /** A short configured name: letters, digits, '-' and '_'. */
  name: string;
  store: BlobStore;
}

interface Copy {
  replica: Replica;
  ref: string;
}

const NAME = /^[A-Za-z0-9_-]+$/;
const SKIPPABLE = new Set<string>(['STORE_NOT_FOUND', 'STORE_UNAVAILABLE', 'STORE_TIMEOUT']);
/** What a checked read (a fetch) also passes over: a copy whose size or hash is not the recorded one. */
const SKIPPABLE_OR_DAMAGED = new Set<string>([...SKIPPABLE, 'STORE_INTEGRITY']);
const QUEUE_DEPTH = 2;

/** A bounded single-consumer queue between the source and one replica's put. */
class ChunkQueue {
  readonly #items: Uint8Array[] = [];
  #ended = false;
  #error: unknown = null;
  #closed = false;
  #wakeReader: (() => void) | null = null;
  #wakeWriter: (() => void) | null = null;

  /** Resolves once there is room (or the reader has gone). */
  async push(chunk: Uint8Array): Promise<void> {
    while (this.#items.length >= QUEUE_DEPTH && !this.#closed) {
      await new Promise<void>((resolve) => (this.#wakeWriter = resolve));
    }
    if (this.#closed) return;
    this.#items.push(chunk);
    this.#wakeReader?.();
  }

  end(error?: unknown): void {
    this.#ended = true;
    if (error !== undefined) this.#error = error;
    this.#wakeReader?.();
  }

  async *drain(): AsyncGenerator<Uint8Array> {
    try {
      for (;;) {
        const chunk = this.#items.shift();
        if (chunk) {
          this.#wakeWriter?.();
          yield chunk;
          continue;
        }
        if (this.#ended) {
          if (this.#error) throw this.#error;
          return;
        }
        await new Promise<void>((resolve) => (this.#wakeReader = resolve));
      }
    } finally {
      this.#closed = true; // the replica stopped reading: never block the source on it again
      this.#wakeWriter?.();
    }
  }
}

export class ReplicatedBlobStore implements BlobStore {
  readonly kind = 'replicated';
  readonly #replicas: Replica[];
  readonly #minCopies: number;

  constructor(replicas: Replica[], options: { minCopies?: number } = {}) {
    check(replicas.length > 0, 'INVALID_ARGUMENT', 'replication needs at least one store');
    for (const r of replicas) check(NAME.test(r.name), 'INVALID_ARGUMENT', `replica name ${JSON.stringify(r.name)}`);
    check(new Set(replicas.map((r) => r.name)).size === replicas.length, 'INVALID_ARGUMENT', 'replica names repeat');
    this.#replicas = replicas;
    this.#minCopies = options.minCopies ?? replicas.length;
    check(this.#minCopies >= 1 && this.#minCopies <= replicas.length, 'INVALID_ARGUMENT', 'minCopies out of range');
  }

  #parse(ref: string): Copy[] {
    check(ref.startsWith('rep:'), 'STORE_BAD_REF', 'a replicated ref starts with rep:');
    return ref
      .slice(4)
      .split(',')
      .map((part) => {
        const at = part.indexOf('=');
        const replica = this.#replicas.find((r) => r.name === part.slice(0, at));
        check(at > 0 && replica, 'STORE_BAD_REF', `unknown replica in ${JSON.stringify(part)}`);
        return { replica, ref: part.slice(at + 1) };
      });
  }

  static #format(copies: Copy[]): string {
    return `rep:${copies.map((c) => `${c.replica.name}=${c.ref}`).join(',')}`;
  }

  async put(source: AsyncIterable<Uint8Array>): Promise<PutResult> {
    const queues = this.#replicas.map(() => new ChunkQueue());
    const puts = this.#replicas.map((r, i) => r.store.put((queues[i] as ChunkQueue).drain()));
    let sourceError: unknown;
    try {
      // One copy per chunk, shared by the replicas: the source is advanced as soon as the
      // chunk is queued, and may reuse its buffer.
      for await (const chunk of source) {
        const owned = chunk.slice();
        await Promise.all(queues.map((q) => q.push(owned)));
      }
    } catch (err) {
      sourceError = err;
    }
    for (const q of queues) q.end(sourceError);
    const settled = await Promise.allSettled(puts);
    const done: Array<{ replica: Replica; result: PutResult }> = [];
    const failed: string[] = [];
    settled.forEach((s, i) => {
      const replica = this.#replicas[i] as Replica;
      if (s.status === 'fulfilled') done.push({ replica, result: s.value });
      else failed.push(`${replica.name}: ${(s.reason as Error).message}`);
    });
    const undo = async () => {
      await Promise.allSettled(done.map((d) => d.replica.store.delete(d.result.ref)));
    };
    if (sourceError !== undefined) {
      await undo();
      throw sourceError;
    }
    const [first] = done;
    if (first && done.some((d) => d.result.sha256 !== first.result.sha256 || d.result.size !== first.result.size)) {
      await undo();
      fail('STORE_INTEGRITY', 'replicas stored different bytes for one put');
    }
    if (!first || done.length < this.#minCopies) {
      await undo();
      fail('STORE_UNAVAILABLE', `${done.length} of ${this.#minCopies} required copies written (${failed.join('; ')})`);
    }
    return {
      ref: ReplicatedBlobStore.#format(done.map((d) => ({ replica: d.replica, ref: d.result.ref }))),
      size: first.result.size,
      sha256: first.result.sha256,
    };
  }

  /**
   * Runs `op` on each copy in turn: the first answer wins. A copy that is
   * missing, unreachable or slow (or failing with another code in `skip`) is
   * skipped; any other error (a bad range, a bad ref) is the caller's and is
   * thrown at once.
   */
  async #first<T>(
    ref: string,
    op: (copy: Copy) => Promise<T>,
    missing: () => T,
    skip: ReadonlySet<string> = SKIPPABLE,
  ): Promise<T> {
    let lastError: unknown = null;
    for (const copy of this.#parse(ref)) {
      try {
        return await op(copy);
      } catch (err) {
        if (isMedvaultError(err) && !skip.has(err.code)) throw err;
        lastError = err;
      }
    }
    if (lastError === null || isMedvaultError(lastError, 'STORE_NOT_FOUND')) return missing();
    if (isMedvaultError(lastError)) throw lastError;
    return fail('STORE_UNAVAILABLE', `no copy of ${ref} could be read: ${(lastError as Error).message}`);
  }

  async get(ref: string, range?: ByteRange): Promise<Readable> {
    return this.#first(
      ref,
      (c) => c.replica.store.get(c.ref, range),
      () => fail('STORE_NOT_FOUND', ref),
    );
  }

  readWhole(ref: string, size: number, sha256: string): Promise<Buffer> {
    return this.#firstIntact(ref, (c) => readChecked(c.replica.store, c.ref, size, sha256));
  }

  readStream(ref: string, size: number): Promise<Readable> {
    return this.#firstIntact(ref, (c) => readSized(c.replica.store, c.ref, size));
  }

  /**
   * `read` on each copy in turn until one passes: a copy missing, out of reach or damaged
   * (STORE_INTEGRITY) is passed over, and said. When none passes: STORE_INTEGRITY if a copy was
   * damaged (damage is never reported as a mere absence), else as `#first`.
   */
  async #firstIntact<T>(ref: string, read: (copy: Copy) => Promise<T>): Promise<T> {
    const passed: string[] = [];
    let damaged: unknown = null;
    const result = await this.#first(
      ref,
      async (copy) => {
        try {
          const value = await read(copy);
          if (passed.length > 0) {
            logger.warn(
              { ref, servedBy: copy.replica.name, passedOver: passed },
              'replicated store: a copy was lost, out of reach or damaged; served from another (repair it)',
            );
          }
          return value;
        } catch (err) {
          if (isMedvaultError(err, 'STORE_INTEGRITY')) damaged = err;
          if (isMedvaultError(err) && SKIPPABLE_OR_DAMAGED.has(err.code)) {
            passed.push(`${copy.replica.name}: ${damaged === err ? err.message : err.code}`);
          }
          throw err;
        }
      },
      () => fail('STORE_NOT_FOUND', ref),
      SKIPPABLE_OR_DAMAGED,
    ).catch((err: unknown) => {
      if (damaged) fail('STORE_INTEGRITY', `no intact copy of ${ref}: ${passed.join('; ')}`, { cause: damaged });
      throw err;
    });
    return result;
  }

  async stat(ref: string): Promise<{ size: number } | null> {
    return this.#first(
      ref,
      async (c) => (await c.replica.store.stat(c.ref)) ?? fail('STORE_NOT_FOUND', c.ref),
      () => null,
    );
  }

  async has(ref: string): Promise<boolean> {
    return (await this.stat(ref)) !== null;
  }

  async delete(ref: string): Promise<DeleteResult> {
    const copies = this.#parse(ref);
    const settled = await Promise.allSettled(copies.map((c) => c.replica.store.delete(c.ref)));
    const lines = settled.map((s, i) => {
      const name = (copies[i] as Copy).replica.name;
      return s.status === 'fulfilled'
        ? `${name}: ${s.value.confirmed}`
        : `${name}: FAILED (${(s.reason as Error).message})`;
    });
    if (settled.some((s) => s.status === 'rejected')) {
      throw new MedvaultError('STORE_UNAVAILABLE', `not every copy could be deleted: ${lines.join('; ')}`, {
        info: { copies: lines },
      });
    }
    const removed = settled.some((s) => s.status === 'fulfilled' && s.value.removed);
    return { ref, removed, confirmed: lines.join('; ') };
  }

  /** Every copy each replica holds, as single-copy refs (valid for get and delete). */
  async *list(): AsyncIterable<string> {
    for (const replica of this.#replicas) {
      for await (const ref of replica.store.list()) yield ReplicatedBlobStore.#format([{ replica, ref }]);
    }
  }

  /** Each replica's strays, named by replica. */
  async collectStrays(options: { olderThanMs: number }): Promise<string[]> {
    const removed: string[] = [];
    for (const replica of this.#replicas) {
      for (const what of (await replica.store.collectStrays?.(options)) ?? []) removed.push(`${replica.name}: ${what}`);
    }
    return removed;
  }

  async close(): Promise<void> {
    await Promise.all(this.#replicas.map((r) => r.store.close()));
  }
}
