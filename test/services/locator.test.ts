/**
 * The record locator: which node holds a record, read from the ledger's
 * record.created events into the metadata store as lookups need it.
 */
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type Block, buildBlock } from '../../anchor/block.ts';
import type { LedgerEvent } from '../../anchor/events.ts';
import { FileLedger } from '../../anchor/file-ledger.ts';
import { SigningKey } from '../../crypto/ed25519.ts';
import { RecordLocator } from '../../services/locator.ts';
import { Metadata } from '../../services/metadata.ts';
import { sampleEvent } from '../anchor/fixtures.ts';
import { tempDir } from '../helpers.ts';

const dir = tempDir('medvault-locator-');
const ledger = await FileLedger.open(join(dir, 'ledger.mvl'));
const signer = SigningKey.generate();
afterAll(() => ledger.close());

async function append(events: LedgerEvent[]): Promise<void> {
  const { block } = buildBlock((await ledger.head()) ?? null, events, signer);
  await ledger.append([block]);
}

const created = () => sampleEvent('record.created') as LedgerEvent & { recordId: string; node: string };

describe('record locator', () => {
  it('answers from the ledger, reads blocks appended since, and keeps what it read across restarts', async () => {
    const a = created();
    const b = created();
    await append([a, sampleEvent('record.accessed'), b]);
    const metadata = new Metadata(join(dir, 'metadata.db'));
    const locator = new RecordLocator(ledger, metadata);
    expect(await locator.holder(a.recordId)).toBe(a.node);
    expect(await locator.holder(b.recordId)).toBe(b.node);
    expect(await locator.holder('0'.repeat(32))).toBeUndefined();

    // A record anchored after the last read is found: the miss reads the new blocks.
    const later = created();
    await append([sampleEvent('acl.granted'), later]);
    expect(await locator.holder(later.recordId)).toBe(later.node);
    expect(metadata.locatorNextHeight()).toBe(2);

    // Concurrent misses share one read of the ledger.
    const reads: number[] = [];
    const counting = {
      head: () => ledger.head(),
      blocks: (from?: number): AsyncIterable<Block> => {
        reads.push(from ?? 0);
        return ledger.blocks(from);
      },
    } as unknown as FileLedger;
    const shared = new RecordLocator(counting, metadata);
    const more = created();
    await append([more]);
    expect(await Promise.all([shared.holder(more.recordId), shared.holder(more.recordId)])).toEqual([
      more.node,
      more.node,
    ]);
    expect(reads).toEqual([2]);
    metadata.close();

    // After a restart, what was read is not read again.
    const reopened = new Metadata(join(dir, 'metadata.db'));
    reads.length = 0;
    const again = new RecordLocator(counting, reopened);
    expect(await again.holder(a.recordId)).toBe(a.node);
    expect(await again.holder('1'.repeat(32))).toBeUndefined(); // a miss at the head reads nothing
    expect(reads).toEqual([]);
    reopened.close();
  });
});
