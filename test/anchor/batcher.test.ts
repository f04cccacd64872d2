/**
 * The batcher's pipeline against a real file ledger, seen through a wrapper
 * that records each append (and can fail one part-way, or hold it): appends
 * reach the ledger in chain order, a run committed in part is neither lost
 * nor duplicated, full blocks are sealed (and prepared) ahead of their run,
 * and blocks sealed on a tip that another node overtook are rebuilt, in order.
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

/** `ledger` with its append replaced by `append` (which may call the real one), and a prepare when given. */
function wrap(ledger: Ledger, append: Ledger['append'], prepare?: Ledger['prepare']): Ledger {
  return {
    kind: ledger.kind,
    head: () => ledger.head(),
    get: (height) => ledger.get(height),
    blocks: (from) => ledger.blocks(from),
    close: () => ledger.close(),
    append,
    ...(prepare ? { prepare } : {}),
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
  it('seals each full block as its events arrive and has the ledger prepare it; the run carries those very blocks and builds only its partial last one', async () => {
    const ledger = await FileLedger.open(join(dir, 'sealed.mvl'));
    const prepared = new Set<Block>();
    const runs: Array<{ heights: number[]; prepared: boolean[] }> = [];
    const watched = wrap(
      ledger,
      async (blocks) => {
        runs.push({ heights: blocks.map((b) => b.header.height), prepared: blocks.map((b) => prepared.has(b)) });
        await ledger.append(blocks);
      },
      (blocks) => {
        for (const b of blocks) prepared.add(b);
      },
    );
    const batcher = new Batcher(watched, signer, { maxEvents: 5, maxBlocksPerAppend: 6, maxDelayMs: 5 });
    await batcher.submit(sampleEvent()); // the first run reads the head: nothing can be sealed before
    const events = Array.from({ length: 23 }, () => sampleEvent());
    const receipts = await Promise.all(events.map((e) => batcher.submit(e)));
    expect(runs).toEqual([
      { heights: [0], prepared: [false] },
      { heights: [1, 2, 3, 4, 5], prepared: [true, true, true, true, false] },
    ]);
    expect((await recordIdsOn(ledger)).slice(1)).toEqual(events.map((e) => e.recordId));
    for (const r of receipts) await checkReceiptOnLedger(ledger, r);
    await ledger.close();
  });
  it('when another node appends while blocks are sealed on the run in flight: that run and the sealed blocks are rebuilt on the new head, every event once and in submission order', async () => {
    const ledger = await FileLedger.open(join(dir, 'overtaken.mvl'));
    const rival = SigningKey.generate();
    let hold: (() => void) | null = null;
    let held: Promise<void> | null = null;
    const gated = wrap(ledger, async (blocks) => {
      if (held === null && blocks[0]?.header.height === 1) {
        held = new Promise<void>((resolve) => (hold = resolve));
        await held;
      }
      await ledger.append(blocks);
    });
    const batcher = new Batcher(gated, signer, { maxEvents: 5, maxBlocksPerAppend: 1, maxDelayMs: 1 });
    await batcher.submit(sampleEvent());
    const first = Array.from({ length: 5 }, () => sampleEvent());
    const firstReceipts = first.map((e) => batcher.submit(e)); // a run of block 1, held at the ledger
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(held).not.toBeNull();
    const later = Array.from({ length: 12 }, () => sampleEvent()); // blocks 2 and 3 sealed on block 1
    const laterReceipts = later.map((e) => batcher.submit(e));
    const tip = await ledger.head();
    await ledger.append([buildBlock(tip, [sampleEvent()], rival).block]); // another node takes height 1
    (hold as unknown as () => void)();
    const receipts = await Promise.all([...firstReceipts, ...laterReceipts]);
    const summary = await verifyChain(ledger);
    expect(summary.events).toBe(1 + 1 + 5 + 12);
    const ours = (await recordIdsOn(ledger)).filter((_, i) => i !== 1); // without the rival's event
    expect(ours.slice(1)).toEqual([...first, ...later].map((e) => e.recordId));
    for (const r of receipts) await checkReceiptOnLedger(ledger, r);
    expect(receipts.every((r) => r.block.height >= 2)).toBe(true);
    await ledger.close();
  });
});
