/**
 * Which node holds a record: the ledger says so. Every record.created event
 * names the node that stored the record, so any node can answer for records
 * it does not hold, and forward a reader's fetch there (DESIGN, "The
 * consortium").
 *
 * The locations are read from the ledger into the metadata store as they are
 * needed: a lookup that misses reads the blocks appended since the last read
 * (one reader at a time), so a record anchored a moment ago on another node
 * is found, and an unknown id costs one read of the head.
 */
import type { Ledger } from '../anchor/ledger.ts';
import type { Metadata } from './metadata.ts';

export class RecordLocator {
  readonly #ledger: Ledger;
  readonly #m: Metadata;
  #reading: Promise<void> | null = null;

  constructor(ledger: Ledger, metadata: Metadata) {
    this.#ledger = ledger;
    this.#m = metadata;
  }

  /** The id of the node holding `recordId`, or undefined when the ledger has no record.created for it. */
  async holder(recordId: string): Promise<string | undefined> {
    const known = this.#m.recordLocation(recordId);
    if (known) return known;
    await this.#catchUp();
    return this.#m.recordLocation(recordId);
  }

  /** Reads the blocks appended since the last read; concurrent callers share one read. */
  #catchUp(): Promise<void> {
    this.#reading ??= this.#read().finally(() => {
      this.#reading = null;
    });
    return this.#reading;
  }

  async #read(): Promise<void> {
    const head = await this.#ledger.head();
    const from = this.#m.locatorNextHeight();
    if (!head || head.height < from) return;
    let found: Array<{ recordId: string; node: string; height: number }> = [];
    for await (const block of this.#ledger.blocks(from)) {
      for (const event of block.events) {
        if (event.type === 'record.created') {
          found.push({ recordId: event.recordId as string, node: event.node as string, height: block.header.height });
        }
      }
      // Saved block by block from time to time: a long first read keeps what it has read.
      if (found.length >= 10_000 || block.header.height >= head.height) {
        this.#m.addRecordLocations(found, block.header.height + 1);
        found = [];
      }
      if (block.header.height >= head.height) break;
    }
  }
}
