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
 * Sealing: once a block's worth of events is waiting and the last block built
 * is known, that block is built (sealed) at once, while later events are
 * still arriving, and the ledger is told to start encoding it (etcd
 * compresses it on the thread pool). A run is then mostly sealed blocks, and
 * only its last, partial block is built when it is cut: building and
 * encoding leave the serial path from one run's acknowledgement to the next
 * run's append. Sealed blocks not yet cut are unsealed (their events go back
 * to the front of the queue) whenever the tip they extend is given up.
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
  /** Events not yet in a block, in submission order. */
  #pending: Pending[] = [];
  /** Full blocks built on the tip's chain ahead of the run they will go in (their events precede #pending). */
  #sealed: Built[] = [];
  /** The last block built (sealed, in flight or committed); undefined: read it from the ledger. */
  #tip: BlockHeader | null | undefined;
  #inFlight = 0;
  /** The runs in flight; a run is stale from when the tip it was built on is given up until it is rebuilt. */
  readonly #runs = new Set<{ stale: boolean }>();
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
      if (this.#pending.length >= this.#maxEvents) this.#seal();
      this.#schedule();
    });
  }

  /** Resolves when everything submitted so far is settled. */
  flush(): Promise<void> {
    if (this.#inFlight === 0 && !this.#waiting) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  get #waiting(): boolean {
    return this.#pending.length > 0 || this.#sealed.length > 0;
  }

  /**
   * Whether blocks may be built ahead on the tip: it is known, and no run in
   * flight is still to be rebuilt after a conflict (blocks built ahead of it
   * could commit before its events).
   */
  get #canBuildAhead(): boolean {
    if (this.#tip === undefined) return false;
    for (const run of this.#runs) if (run.stale) return false;
    return true;
  }

  /** Builds full blocks of waiting events on the tip, ahead of their run (see Sealing above). */
  #seal(): void {
    while (this.#canBuildAhead && this.#pending.length >= this.#maxEvents && this.#sealed.length < this.#maxBlocks) {
      // #canBuildAhead: the tip is known
      const [built] = this.#build(this.#tip as BlockHeader | null, [this.#pending.splice(0, this.#maxEvents)]) as [
        Built,
      ];
      this.#tip = built.block.header;
      this.#sealed.push(built);
      this.#ledger.prepare?.([built.block]);
    }
  }

  /**
   * Gives up the tip (it is read from the ledger again): every run in flight
   * is stale, and blocks sealed on it are unsealed.
   */
  #forgetTip(): void {
    this.#tip = undefined;
    for (const run of this.#runs) run.stale = true;
    if (this.#sealed.length === 0) return;
    this.#pending = [...this.#sealed.flatMap((b) => b.group), ...this.#pending];
    this.#sealed = [];
  }

  #schedule(): void {
    if (this.#inFlight >= this.#depth) return;
    if (this.#sealed.length >= this.#maxBlocks || this.#pending.length >= this.#maxEvents * this.#maxBlocks) {
      this.#cut();
    } else if (!this.#timer) {
      this.#timer = setTimeout(() => this.#cut(), this.#maxDelayMs);
    }
  }

  #cut(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#inFlight >= this.#depth || !this.#waiting) return;
    // Runs are built in the order they are cut: while the tip is being read
    // from the ledger, or a run is to be rebuilt, no second run starts.
    if (this.#inFlight > 0 && !this.#canBuildAhead) return;
    this.#inFlight++;
    const self = { stale: false };
    this.#runs.add(self);
    // Sealed blocks first (they hold the oldest events), then blocks of what is still pending.
    const sealed = this.#sealed.splice(0, this.#maxBlocks);
    const rest = this.#pending.splice(0, (this.#maxBlocks - sealed.length) * this.#maxEvents);
    const run = this.#commit(self, sealed, rest, this.#previous);
    this.#previous = run;
    run.finally(() => {
      this.#runs.delete(self);
      this.#inFlight--;
      if (this.#waiting) this.#cut();
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

  /** Resolves the receipt of every event of a committed run. */
  #acknowledge(built: Built[]): void {
    for (const { group, block, tree } of built) {
      for (let i = 0; i < group.length; i++) (group[i] as Pending).resolve(makeReceipt(block, tree, i));
    }
  }

  /**
   * Appends a run: `sealed` blocks (built on the tip's chain when they filled)
   * followed by blocks of `rest`, built here.
   */
  async #commit(self: { stale: boolean }, sealed: Built[], rest: Pending[], previous: Promise<unknown>): Promise<void> {
    let groups: Pending[][] = sealed.map((b) => b.group);
    const restGroups: Pending[][] = [];
    for (let i = 0; i < rest.length; i += this.#maxEvents) restGroups.push(rest.slice(i, i + this.#maxEvents));
    groups.push(...restGroups);
    let batch = groups.flat();
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
        // On the first try the sealed blocks stand (the tip is the last of them, or,
        // with none, the block before this run); a retry rebuilds the whole run.
        const built =
          conflicts === 0
            ? [...sealed, ...(restGroups.length > 0 ? this.#build(this.#tip, restGroups) : [])]
            : this.#build(this.#tip, groups);
        this.#tip = (built.at(-1) as (typeof built)[number]).block.header;
        self.stale = false;
        const appending = this.#ledger.append(built.map((b) => b.block));
        // The tip is known again: waiting events may be sealed on it, and with room in the
        // pipeline the next run may start (its append is issued after this one, so the
        // ledger sees them in chain order).
        this.#seal();
        if (this.#waiting) this.#schedule();
        try {
          await appending;
        } catch (err) {
          // Blocks of the run the ledger committed before failing are acknowledged, never rebuilt.
          const committed = isMedvaultError(err) ? Number(err.info?.committedBlocks ?? 0) : 0;
          this.#acknowledge(built.slice(0, committed));
          groups = groups.slice(committed);
          batch = groups.flat();
          if (!isMedvaultError(err, 'LEDGER_CONFLICT') || conflicts >= this.#maxConflicts) throw err;
          // Another node appended, or an append before ours failed: let those
          // before us settle, then rebuild on the ledger's real head.
          await previous.catch(() => {});
          this.#forgetTip();
          continue;
        }
        this.#acknowledge(built);
        return;
      }
    } catch (err) {
      this.#forgetTip();
      for (const p of batch) p.reject(err);
    }
  }
}
