/**
 * Batching: many concurrent callers submit events; each gets back a promise
 * of its own receipt, resolved only once the block holding its event is
 * durably appended. Events that arrive while an append is in flight wait and
 * form the next one, so appends grow with load (group commit): up to
 * `maxBlocksPerAppend` blocks of up to `maxEvents` events each go in one
 * ledger round trip. When idle, the first event waits at most `maxDelayMs`.
 *
 * Pipelining: up to `pipelineDepth` appends are in flight at once. The next
 * run is built on the last block built (not yet committed), so building it
 * overlaps the ledger's latency; the ledger's compare-and-swap keeps the order
 * causal (an append can only commit after the one it extends). If an append
 * conflicts, it waits for the appends before it to settle, re-reads the head
 * and rebuilds.
 *
 * When another node appended first (LEDGER_CONFLICT) the batch is rebuilt on
 * the new head and retried; when the ledger fails otherwise, every caller in
 * the batch gets that error and nothing is acknowledged. If that failure's
 * outcome was unknown to the ledger too, the events may still have landed:
 * submission is at-least-once, and an event's id makes a repeat evident.
 */
import type { SigningKey } from '../crypto/ed25519.ts';
import type { MerkleTree } from '../crypto/merkle.ts';
import { isMedvaultError } from '../errors.ts';
import { type Block, type BlockHeader, buildBlock, type EncodedEvent, encodeForBlock } from './block.ts';
import type { LedgerEvent } from './events.ts';
import type { Ledger } from './ledger.ts';
import { makeReceipt, type Receipt } from './receipt.ts';

export interface BatcherOptions {
  /** Most events in one block. */
  maxEvents?: number;
  /** Most blocks in one append (etcd splits a run over its request limit into several transactions). */
  maxBlocksPerAppend?: number;
  /** Longest an event waits for others when the ledger is idle, ms. */
  maxDelayMs?: number;
  /** Rebuilds on conflict before giving up. */
  maxConflicts?: number;
  /** Appends in flight at once. */
  pipelineDepth?: number;
  /**
   * Checks a head read from the ledger before anything is built on it (the
   * first time, and after a conflict); throwing refuses the waiting events.
   * The vault checks that the ledger still holds its last confirmed checkpoint.
   */
  checkHead?: (head: BlockHeader | null) => Promise<void>;
}

/** A block built for a group of pending events, with its tree for their receipts. */
interface Built {
  group: Pending[];
  block: Block;
  tree: MerkleTree;
}

interface Pending {
  event: LedgerEvent;
  encoded: EncodedEvent;
  resolve: (receipt: Receipt) => void;
  reject: (err: unknown) => void;
}

export class Batcher {
  readonly #ledger: Ledger;
  readonly #signer: SigningKey;
  readonly #maxEvents: number;
  readonly #maxBlocks: number;
  readonly #maxDelayMs: number;
  readonly #maxConflicts: number;
  readonly #depth: number;
  readonly #checkHead: (head: BlockHeader | null) => Promise<void>;
  #pending: Pending[] = [];
  /** The last block built (committed or in flight); undefined: read it from the ledger. */
  #tip: BlockHeader | null | undefined;
  #inFlight = 0;
  #previous: Promise<unknown> = Promise.resolve();
  #timer: NodeJS.Timeout | null = null;
  #idle: Array<() => void> = [];

  constructor(ledger: Ledger, signer: SigningKey, options: BatcherOptions = {}) {
    this.#ledger = ledger;
    this.#signer = signer;
    this.#maxEvents = options.maxEvents ?? 1000;
    this.#maxBlocks = options.maxBlocksPerAppend ?? 6;
    this.#maxDelayMs = options.maxDelayMs ?? 2;
    this.#maxConflicts = options.maxConflicts ?? 100;
    this.#depth = options.pipelineDepth ?? 2;
    this.#checkHead = options.checkHead ?? (async () => {});
  }

  /** Anchors `event`; resolves with its receipt once its block is durable. */
  submit(event: LedgerEvent): Promise<Receipt> {
    let encoded: EncodedEvent;
    try {
      encoded = encodeForBlock(event); // validates: a bad event is refused before it is queued
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<Receipt>((resolve, reject) => {
      this.#pending.push({ event, encoded, resolve, reject });
      this.#schedule();
    });
  }

  /** Resolves when everything submitted so far is settled. */
  flush(): Promise<void> {
    if (this.#inFlight === 0 && this.#pending.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  #schedule(): void {
    if (this.#inFlight >= this.#depth) return;
    if (this.#pending.length >= this.#maxEvents * this.#maxBlocks) {
      this.#cut();
    } else if (!this.#timer) {
      this.#timer = setTimeout(() => this.#cut(), this.#maxDelayMs);
    }
  }

  #cut(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#inFlight >= this.#depth || this.#pending.length === 0) return;
    // Runs are built in the order they are cut: while the tip is being read
    // from the ledger, no second run starts.
    if (this.#tip === undefined && this.#inFlight > 0) return;
    this.#inFlight++;
    const batch = this.#pending.splice(0, this.#maxEvents * this.#maxBlocks);
    const run = this.#commit(batch, this.#previous);
    this.#previous = run;
    run.finally(() => {
      this.#inFlight--;
      if (this.#pending.length > 0) this.#cut();
      else if (this.#inFlight === 0) for (const resolve of this.#idle.splice(0)) resolve();
    });
  }

  /** Builds a run of blocks on `tip`; returns it with its trees and groups. */
  #build(tip: BlockHeader | null, groups: Pending[][]): Built[] {
    return groups.map((group) => {
      const events = group.map((p) => p.event);
      const { block, tree } = buildBlock(tip, events, this.#signer, { encoded: group.map((p) => p.encoded) });
      tip = block.header;
      return { group, block, tree };
    });
  }

  async #commit(batch: Pending[], previous: Promise<unknown>): Promise<void> {
    const acknowledge = ({ group, block, tree }: Built) => {
      for (let i = 0; i < group.length; i++) (group[i] as Pending).resolve(makeReceipt(block, tree, i));
    };
    let groups: Pending[][] = [];
    for (let i = 0; i < batch.length; i += this.#maxEvents) groups.push(batch.slice(i, i + this.#maxEvents));
    try {
      for (let conflicts = 0; ; conflicts++) {
        if (this.#tip === undefined) {
          await previous.catch(() => {});
          if (this.#tip === undefined) {
            const head = await this.#ledger.head();
            await this.#checkHead(head);
            if (this.#tip === undefined) this.#tip = head;
          }
        }
        const built = this.#build(this.#tip, groups);
        this.#tip = (built.at(-1) as (typeof built)[number]).block.header;
        const appending = this.#ledger.append(built.map((b) => b.block));
        // The tip is known again: with room in the pipeline, the next run may start (its
        // append is issued after this one, so the ledger sees them in chain order).
        if (this.#pending.length > 0) this.#schedule();
        try {
          await appending;
        } catch (err) {
          // Blocks of the run the ledger committed before failing are acknowledged, never rebuilt.
          const committed = isMedvaultError(err) ? Number(err.info?.committedBlocks ?? 0) : 0;
          for (const b of built.slice(0, committed)) acknowledge(b);
          groups = groups.slice(committed);
          batch = groups.flat();
          if (!isMedvaultError(err, 'LEDGER_CONFLICT') || conflicts >= this.#maxConflicts) throw err;
          // Another node appended, or an append before ours failed: let those
          // before us settle, then rebuild on the ledger's real head.
          await previous.catch(() => {});
          this.#tip = undefined;
          continue;
        }
        for (const b of built) acknowledge(b);
        return;
      }
    } catch (err) {
      this.#tip = undefined;
      for (const p of batch) p.reject(err);
    }
  }
}
