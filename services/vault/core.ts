/**
 * What the vault's flows share: the layers (metadata, KMS, store, ledger),
 * the node's key and clock, anchoring through one batcher, the ledger index
 * and receipts rebuilt from it, per-key locks, and record lookup. The record
 * flows (vault.ts) and the erasure flows (erasure.ts) each hold one.
 */
import { randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { Batcher, type BatcherOptions } from '../../anchor/batcher.ts';
import { type BlockHeader, blockHash, eventsTree } from '../../anchor/block.ts';
import type { LedgerEvent } from '../../anchor/events.ts';
import type { Ledger } from '../../anchor/ledger.ts';
import { makeReceipt, type Receipt } from '../../anchor/receipt.ts';
import type { SigningKey } from '../../crypto/ed25519.ts';
import type { MerkleTree } from '../../crypto/merkle.ts';
import { check, fail, isMedvaultError } from '../../errors.ts';
import { HASH, ID } from '../../formats.ts';
import type { Kms } from '../../kms/kms.ts';
import { logger } from '../../log.ts';
import type { BlobStore } from '../../storage/blob-store.ts';
import type { Metadata, RecordRow } from './metadata.ts';

export { ID };

/**
 * Throws LEDGER_REWRITTEN (and logs it) unless the ledger still holds the
 * block of the last checkpoint this node confirmed; returns that checkpoint.
 * The node checks it before building blocks on a head it has just read, so
 * it never appends to a rewritten history either. Returns that block's header.
 */
export async function confirmedCheckpointHolds(metadata: Metadata, ledger: Ledger): Promise<BlockHeader | undefined> {
  const last = metadata.latestLedgerCheckpoint();
  if (!last) return undefined;
  const block = await ledger.get(last.height);
  if (!block || blockHash(block.header) !== last.blockHash) {
    logger.error({ height: last.height }, 'the ledger no longer holds a block this node confirmed');
    fail('LEDGER_REWRITTEN', `block ${last.height} is not the block this node confirmed in a checkpoint`);
  }
  return block.header;
}

export const newId = () => randomBytes(16).toString('hex');

export function checkSubject(subject: unknown): asserts subject is string {
  check(
    typeof subject === 'string' && HASH.test(subject),
    'REQUEST_INVALID',
    'a subject is a 64-hex-digit keyed pseudonym, never a name or patient number',
  );
}

/** The layers a vault runs on. */
export interface CoreDeps {
  metadata: Metadata;
  kms: Kms;
  store: BlobStore;
  ledger: Ledger;
  /** The node's key: signs blocks and erasure certificates. */
  node: SigningKey;
  batcher?: BatcherOptions;
  clock?: () => number;
}

type TreeEntry = { block: NonNullable<Awaited<ReturnType<Ledger['get']>>>; tree: MerkleTree };
/** Blocks read and their trees, by height (a block never changes once appended). */
export interface TreeCache {
  get(height: number): TreeEntry | undefined;
  set(height: number, entry: TreeEntry): unknown;
}

export class VaultCore {
  readonly m: Metadata;
  readonly kms: Kms;
  readonly store: BlobStore;
  readonly ledger: Ledger;
  readonly node: SigningKey;
  readonly now: () => number;
  readonly #batcher: Batcher;
  readonly #locks = new Map<string, Promise<unknown>>();
  readonly #unindexed: Array<{ key: string; receipt: Receipt }> = [];
  /**
   * The blocks receipts were made from lately: every fetch of a record serves the receipt of its
   * creation, from the same block each time, and a batch of accesses shares one block.
   */
  readonly #trees: TreeCache = new LRUCache<number, TreeEntry>({ max: 256 });
  /**
   * When each blob was last deleted here (performance.now(), once the store said so). Blobs are
   * content-addressed: two uploads of the same bytes share one, and one that fails deletes it
   * if no row uses it, maybe just after the other stored it; checkBlobKept finds that out.
   */
  readonly #deletedAt = new LRUCache<string, number>({ max: 10_000 });

  constructor(deps: CoreDeps) {
    this.m = deps.metadata;
    this.kms = deps.kms;
    this.store = deps.store;
    this.ledger = deps.ledger;
    this.node = deps.node;
    this.now = deps.clock ?? Date.now;
    this.#batcher = new Batcher(deps.ledger, deps.node, {
      checkHead: async () => {
        await confirmedCheckpointHolds(this.m, this.ledger);
      },
      ...deps.batcher,
    });
  }

  /** Runs `step` after every earlier step under the same key (one record, one erasure). */
  locked<T>(key: string, step: () => Promise<T>): Promise<T> {
    const previous = this.#locks.get(key) ?? Promise.resolve();
    const run = previous.then(step, step);
    const tail = run.catch(() => {});
    this.#locks.set(key, tail);
    void tail.then(() => {
      if (this.#locks.get(key) === tail) this.#locks.delete(key);
    });
    return run;
  }

  /** Told how long each anchor took and how it ended ('ok', or its error code): the operator's metrics. */
  onAnchored: ((seconds: number, outcome: string) => void) | null = null;

  /** Anchors an event; resolves with its receipt once its block is durable. */
  anchor(event: LedgerEvent): Promise<Receipt> {
    const started = performance.now();
    const done = this.#batcher.submit(event);
    if (this.onAnchored) {
      const report = this.onAnchored;
      const seconds = () => (performance.now() - started) / 1000;
      done.then(
        () => report(seconds(), 'ok'),
        (err: unknown) => report(seconds(), (err as { code?: string })?.code ?? 'INTERNAL'),
      );
    }
    return done;
  }

  /**
   * Indexes an event already anchored, on its own: the anchor is the truth, so a full disk
   * here does not fail the action (the access happened; the ledger says so): the entry is
   * kept in memory and written again at the next chance (retryIndex), and logged.
   */
  async indexAnchored(key: string, receipt: Receipt): Promise<void> {
    this.retryIndex();
    try {
      await this.m.grouped(() => this.index(key, receipt)); // one commit for the accesses anchored together
    } catch (err) {
      if (!isMedvaultError(err, 'STORAGE_FULL') && !isMedvaultError(err, 'IO_ERROR')) throw err;
      this.#unindexed.push({ key, receipt });
      logger.warn(
        { key, height: receipt.block.height, code: err.code },
        'anchored event not indexed yet (disk full or failing): retried later',
      );
    }
  }

  /** Writes the index entries a full disk held back; keeps those that still fail. */
  retryIndex(): void {
    const waiting = this.#unindexed.splice(0);
    for (const [i, { key, receipt }] of waiting.entries()) {
      try {
        this.m.transaction(() => this.index(key, receipt));
      } catch (err) {
        if (!isMedvaultError(err, 'STORAGE_FULL') && !isMedvaultError(err, 'IO_ERROR')) throw err;
        this.#unindexed.push(...waiting.slice(i));
        return;
      }
    }
  }

  /** Notes where a receipt's event sits on the ledger, under the record (or request) it concerns. */
  index(key: string, receipt: Receipt): void {
    this.m.addAnchor({
      recordId: key,
      type: receipt.event.type,
      height: receipt.block.height,
      leaf: receipt.leafIndex,
      at: receipt.event.at,
    });
  }

  /** The receipt of the event at (height, leaf), rebuilt from the ledger. */
  async receiptAt(height: number, leaf: number, cache: TreeCache = this.#trees): Promise<Receipt> {
    let entry = cache.get(height);
    if (!entry) {
      const block = await this.ledger.get(height);
      if (!block) fail('LEDGER_CORRUPT', `block ${height}, indexed by the metadata store, is not on the ledger`);
      entry = { block, tree: eventsTree(block.events) };
      cache.set(height, entry);
    }
    return makeReceipt(entry.block, entry.tree, leaf);
  }

  /** The receipts of every event indexed under `key`, in ledger order. */
  async receiptsOf(key: string): Promise<Receipt[]> {
    const cache: TreeCache = new Map();
    const out: Receipt[] = [];
    for (const anchor of this.m.anchors(key)) out.push(await this.receiptAt(anchor.height, anchor.leaf, cache));
    return out;
  }

  /** A record by id: REQUEST_INVALID, RECORD_NOT_FOUND, or (unless allowed) RECORD_ERASED. */
  record(id: string, options: { allowErased?: boolean } = {}): RecordRow {
    check(typeof id === 'string' && ID.test(id), 'REQUEST_INVALID', 'a record id is 32 hex digits');
    const record = this.m.record(id);
    if (!record || record.state === 'pending') fail('RECORD_NOT_FOUND', id);
    if (record.state === 'erased' && !options.allowErased) {
      fail('RECORD_ERASED', `erased at ${new Date(record.erasedAt ?? 0).toISOString()}`);
    }
    return record;
  }

  /** Deletes a blob from the store unless another record still points at it. */
  async deleteBlobIfUnused(ref: string, recordId: string): Promise<{ removed: boolean; confirmed: string }> {
    return this.locked(`blob:${ref}`, async () => {
      if (this.m.blobUsers(ref, recordId) > 0) return { removed: false, confirmed: 'kept: another record uses it' };
      try {
        return await this.store.delete(ref);
      } finally {
        this.#deletedAt.set(ref, performance.now()); // failed or not, it may be gone
      }
    });
  }

  /**
   * Once an upload's row is durable (from then on no deletion takes its blob): throws
   * UPLOAD_CONFLICT if its blob was deleted since its put began (`putStartedAt`,
   * performance.now()) and is not in the store any more, the row's upload to be dropped. A
   * deletion that checked for rows before this one was kept has finished by now (both hold
   * the blob's lock); the store is asked only when such a deletion happened.
   */
  async checkBlobKept(ref: string, putStartedAt: number): Promise<void> {
    await this.locked(`blob:${ref}`, async () => {
      const deleted = this.#deletedAt.get(ref);
      if (deleted === undefined || deleted < putStartedAt || (await this.store.has(ref))) return;
      fail('UPLOAD_CONFLICT', 'an upload of the same bytes failed at the same moment and its blob was removed');
    });
  }

  async close(): Promise<void> {
    await this.#batcher.flush();
    await this.ledger.close();
    await this.store.close();
    await this.kms.close?.();
    this.m.close();
  }
}
