/**
 * The local KMS's custodian keys, spread over 256 sealed shard files
 * (`<keystore>.custodians/<xx>.sealed`, `xx` from the subject's one-way tag,
 * kms.ts destroyedTag, so a file name says nothing of a pseudonym).
 *
 * One sealed file for every key made a new subject cost a rewrite of all the
 * keys: 5.7 ms per new subject at 2,000 subjects, 30 ms at 8,000, growing
 * with every patient (a 100,000-subject archive would spend hours rewriting
 * its keystore). A shard holds 1/256 of the keys, so a new subject rewrites
 * one small file; new subjects of one shard arriving together share one
 * rewrite (group commit), and shards are written in parallel.
 *
 * Each shard is a sealed file (kms/sealed-file.ts) under the shard key, a
 * random 32-byte key kept in the main keystore (so no passphrase derivation
 * per write), rewritten atomically and fsync'd as the keystore is: removing a
 * key rewrites its shard without it, leaving no copy in or beside the file.
 */
import { mkdir, readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fsyncDirectory } from '../durable.ts';
import { destroyedTag } from './kms.ts';
import { readSealed, writeSealed } from './sealed-file.ts';

export interface CustodianEntry {
  keyId: string;
  secret: string;
  created: number;
}

type Shard = Record<string, CustodianEntry>;

interface Change {
  step: (shard: Shard) => void;
  done: (err?: unknown) => void;
}

const SHARD_FILE = /^[0-9a-f]{2}\.sealed$/;

export class CustodianShards {
  readonly #dir: string;
  readonly #key: { keyFile: Uint8Array };
  readonly #shards = new Map<string, Shard>();
  /** Changes waiting for their shard's next rewrite, and the rewrite running, by shard. */
  readonly #waiting = new Map<string, Change[]>();
  readonly #writing = new Set<string>();
  /** Whether the shard directory exists (made, and its parent synced, at the first write). */
  #made = false;

  private constructor(dir: string, key: Uint8Array) {
    this.#dir = dir;
    this.#key = { keyFile: key };
  }

  /** Opens the shard directory `dir` (made at the first key), reading every shard sealed under `key`. */
  static async open(dir: string, key: Uint8Array): Promise<CustodianShards> {
    const shards = new CustodianShards(dir, key);
    const names = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [] as string[];
      throw err;
    });
    for (const name of names) {
      if (!SHARD_FILE.test(name)) continue;
      const shard = await readSealed<Shard>(join(dir, name), shards.#key);
      if (shard) shards.#shards.set(name.slice(0, 2), shard);
    }
    return shards;
  }

  get(subject: string): CustodianEntry | undefined {
    return this.#shards.get(shardOf(subject))?.[subject];
  }

  /** Every key held, with its subject. */
  *entries(): Iterable<[string, CustodianEntry]> {
    for (const shard of this.#shards.values()) yield* Object.entries(shard);
  }

  /**
   * Keeps `entry` for `subject` unless one is kept already, or `refuse()` says no when its
   * shard is written (a destruction marked meanwhile); resolves once the shard is durable.
   */
  put(subject: string, entry: CustodianEntry, refuse: () => boolean = () => false): Promise<void> {
    return this.#change(shardOf(subject), (shard) => {
      if (!refuse()) shard[subject] ??= entry;
    });
  }

  /** Keeps many keys at once (moving an older keystore's keys here): one rewrite per shard. */
  async putAll(entries: Iterable<[string, CustodianEntry]>): Promise<void> {
    const writes: Array<Promise<void>> = [];
    for (const [subject, entry] of entries) writes.push(this.put(subject, entry));
    await Promise.all(writes);
  }

  /** Removes `subject`'s key: its shard is rewritten without it. The entry removed, if any. */
  async remove(subject: string): Promise<CustodianEntry | undefined> {
    let removed: CustodianEntry | undefined;
    await this.#change(shardOf(subject), (shard) => {
      removed = shard[subject];
      delete shard[subject];
    });
    return removed;
  }

  #change(id: string, step: (shard: Shard) => void): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const waiting = this.#waiting.get(id) ?? [];
      waiting.push({ step, done: (err) => (err === undefined ? resolve() : reject(err)) });
      this.#waiting.set(id, waiting);
      if (!this.#writing.has(id)) void this.#write(id);
    });
  }

  /** Applies every change waiting for shard `id` to a copy, writes it once, then answers them all. */
  async #write(id: string): Promise<void> {
    this.#writing.add(id);
    try {
      for (let batch = this.#take(id); batch.length > 0; batch = this.#take(id)) {
        const next: Shard = { ...(this.#shards.get(id) ?? {}) };
        for (const change of batch) change.step(next);
        try {
          if (!this.#made) {
            if (await mkdir(this.#dir, { recursive: true, mode: 0o700 })) await fsyncDirectory(dirname(this.#dir));
            this.#made = true;
          }
          await writeSealed(join(this.#dir, `${id}.sealed`), this.#key, next); // file, rename, directory synced
          this.#shards.set(id, next);
          for (const change of batch) change.done();
        } catch (err) {
          for (const change of batch) change.done(err);
        }
      }
    } finally {
      this.#writing.delete(id);
    }
  }

  #take(id: string): Change[] {
    const batch = this.#waiting.get(id) ?? [];
    this.#waiting.delete(id);
    return batch;
  }
}

function shardOf(subject: string): string {
  return destroyedTag(subject).slice(0, 2);
}
