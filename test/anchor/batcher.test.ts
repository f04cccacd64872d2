/**
 * The batcher's pipeline against a real file ledger, seen through a wrapper
 * that records each append (and can fail one part-way): appends reach the
 * ledger in chain order, and a run committed in part is neither lost nor
 * duplicated.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Batcher } from '../../anchor/batcher.ts';
import { type Block, buildBlock } from '../../anchor/block.ts';
import { FileLedger } from '../../anchor/file-ledger.ts';
import { checkReceiptOnLedger, type Ledger, verifyChain } from '../../anchor/ledger.ts';
import { SigningKey } from '../../crypto/ed25519.ts';
import { isMedvaultError, MedvaultError } from '../../errors.ts';
import { tempDir } from '../helpers.ts';
import { sampleEvent } from './fixtures.ts';

const dir = tempDir();
const signer = SigningKey.generate();

/** `ledger` with its append replaced by `append` (which may call the real one). */
function wrap(ledger: Ledger, append: Ledger['append']): Ledger {
  return {
    kind: ledger.kind,
    head: () => ledger.head(),
    get: (height) => ledger.get(height),
    blocks: (from) => ledger.blocks(from),
    close: () => ledger.close(),
    append,
  };
}

async function recordIdsOn(ledger: Ledger): Promise<string[]> {
  const ids: string[] = [];
  for await (const block of ledger.blocks(0)) for (const e of block.events) ids.push(e.recordId as string);
  return ids;
}

describe('the batcher', () => {
  it('issues pipelined appends in chain order, so none conflicts with its own predecessor', async () => {
    const ledger = await FileLedger.open(join(dir, 'order.mvl'));
    const firstHeights: number[] = [];
    let conflicts = 0;
    const watched = wrap(ledger, async (blocks: readonly Block[]) => {
      firstHeights.push(blocks[0]?.header.height ?? -1);
      await ledger.append(blocks).catch((err) => {
        if (isMedvaultError(err, 'LEDGER_CONFLICT')) conflicts++;
        throw err;
      });
    });
    const batcher = new Batcher(watched, signer, { maxEvents: 5, maxBlocksPerAppend: 1, pipelineDepth: 2 });
    const receipts = await Promise.all(Array.from({ length: 60 }, () => batcher.submit(sampleEvent())));
    expect(conflicts).toBe(0);
    expect(firstHeights).toEqual([...firstHeights].sort((a, b) => a - b));
    expect(new Set(await recordIdsOn(ledger)).size).toBe(60);
    for (const r of receipts.slice(0, 3)) await checkReceiptOnLedger(ledger, r);
    await ledger.close();
  });
  it('over a run the ledger committed only in part: acknowledges the committed blocks and rebuilds only the rest on the new head: nothing lost or duplicated', async () => {
    const ledger = await FileLedger.open(join(dir, 'partial.mvl'));
    const rival = SigningKey.generate();
    let injected = false;
    // The first append commits its first block, then another node appends, then the rest conflicts.
    const splitting = wrap(ledger, async (blocks) => {
      if (injected || blocks.length < 2) return ledger.append(blocks);
      injected = true;
      await ledger.append(blocks.slice(0, 1));
      await ledger.append([buildBlock(blocks[0]?.header ?? null, [sampleEvent()], rival).block]);
      throw new MedvaultError('LEDGER_CONFLICT', 'injected', { info: { committedBlocks: 1 } });
    });
    const batcher = new Batcher(splitting, signer, { maxEvents: 5, maxBlocksPerAppend: 3, maxDelayMs: 20 });
    const receipts = await Promise.all(Array.from({ length: 15 }, () => batcher.submit(sampleEvent())));
    expect(injected).toBe(true);
    const summary = await verifyChain(ledger);
    expect(summary.events).toBe(16); // 15 once each, and the rival's
    expect(new Set(await recordIdsOn(ledger)).size).toBe(16);
    for (const r of receipts) await checkReceiptOnLedger(ledger, r);
    expect(receipts[0]?.block.height).toBe(0); // the committed block kept its receipts
    await ledger.close();
  });
});
