/**
 * Batching: many concurrent callers submit events; each gets back a promise
 * of its own receipt, resolved only once the block holding its event is
 * durably appended. One append is in flight at a time (a block must name its
 * predecessor); events that arrive meanwhile wait and form the next block, so
 * blocks grow with load (group commit) up to `maxEvents`. When idle, the
 * first event waits at most `maxDelayMs` for company.
 *
 * When another node appended first (LEDGER_CONFLICT) the batch is rebuilt on
 * the new head and retried; when the ledger fails otherwise, every caller in
 * the batch gets that error and nothing is acknowledged. If that failure's
 * outcome was unknown to the ledger too, the events may still have landed:
 * submission is at-least-once, and an event's id makes a repeat evident.
 */
import type { SigningKey } from '../crypto/ed25519.ts';
import { isMedvaultError } from '../errors.ts';
import { type BlockHeader, buildBlock, eventLeaf } from './block.ts';
import type { LedgerEvent } from './events.ts';
import type { Ledger } from './ledger.ts';
import { makeReceipt, type Receipt } from './receipt.ts';

export interface BatcherOptions {
  /** Most events in one block. */
  maxEvents?: number;
  /** Longest an event waits for others when the ledger is idle, ms. */
  maxDelayMs?: number;
  /** Rebuilds on conflict before giving up. */
  maxConflicts?: number;
}

interface Pending {
  event: LedgerEvent;
  leaf: Uint8Array;
  resolve: (receipt: Receipt) => void;
  reject: (err: unknown) => void;
}

export class Batcher {
  readonly #ledger: Ledger;
  readonly #signer: SigningKey;
  readonly #maxEvents: number;
  readonly #maxDelayMs: number;
  readonly #maxConflicts: number;
  #pending: Pending[] = [];
  #head: BlockHeader | null | undefined;
  #busy = false;
  #timer: NodeJS.Timeout | null = null;
  #idle: Array<() => void> = [];

  constructor(ledger: Ledger, signer: SigningKey, options: BatcherOptions = {}) {
    this.#ledger = ledger;
    this.#signer = signer;
    this.#maxEvents = options.maxEvents ?? 1000;
    this.#maxDelayMs = options.maxDelayMs ?? 2;
    this.#maxConflicts = options.maxConflicts ?? 100;
  }

  /** Anchors `event`; resolves with its receipt once its block is durable. */
  submit(event: LedgerEvent): Promise<Receipt> {
    let leaf: Uint8Array;
    try {
      leaf = eventLeaf(event); // validates: a bad event is refused before it is queued
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise<Receipt>((resolve, reject) => {
      this.#pending.push({ event, leaf, resolve, reject });
      this.#schedule();
    });
  }

  /** Resolves when everything submitted so far is settled. */
  flush(): Promise<void> {
    if (!this.#busy && this.#pending.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  #schedule(): void {
    if (this.#busy) return;
    if (this.#pending.length >= this.#maxEvents) {
      this.#cut();
    } else if (!this.#timer) {
      this.#timer = setTimeout(() => this.#cut(), this.#maxDelayMs);
    }
  }

  #cut(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#busy || this.#pending.length === 0) return;
    this.#busy = true;
    const batch = this.#pending.splice(0, this.#maxEvents);
    this.#commit(batch).finally(() => {
      this.#busy = false;
      if (this.#pending.length > 0) this.#cut();
      else for (const resolve of this.#idle.splice(0)) resolve();
    });
  }

  async #commit(batch: Pending[]): Promise<void> {
    const events = batch.map((p) => p.event);
    const leaves = batch.map((p) => p.leaf);
    try {
      for (let conflicts = 0; ; conflicts++) {
        if (this.#head === undefined) this.#head = await this.#ledger.head();
        const { block, tree } = buildBlock(this.#head, events, this.#signer, { leaves });
        try {
          await this.#ledger.append(block);
        } catch (err) {
          if (!isMedvaultError(err, 'LEDGER_CONFLICT') || conflicts >= this.#maxConflicts) throw err;
          this.#head = undefined; // another node appended: rebuild on the new head
          continue;
        }
        this.#head = block.header;
        for (const [i, p] of batch.entries()) p.resolve(makeReceipt(block, tree, i));
        return;
      }
    } catch (err) {
      this.#head = undefined;
      for (const p of batch) p.reject(err);
    }
  }
}
