/**
 * The ledger contract, as one suite run against every backend: CAS append,
 * reads, paging, batching with receipts that verify offline and online.
 * `open` gives a new, empty ledger on each call, so each test stands alone.
 */
import { describe, expect, it } from 'vitest';
import { Batcher } from '../../anchor/batcher.ts';
import { blockHash, buildBlock } from '../../anchor/block.ts';
import { checkReceiptOnLedger, checkReceiptsOnLedger, type Ledger, verifyChain } from '../../anchor/ledger.ts';
import { verifyReceipt } from '../../anchor/receipt.ts';
import { SigningKey } from '../../crypto/ed25519.ts';
import { isMedvaultError } from '../../errors.ts';
import { sampleEvent } from './fixtures.ts';

export function ledgerConformance(name: string, open: () => Promise<Ledger>): void {
  describe(`${name} ledger: the contract`, () => {
    const signer = SigningKey.generate();

    it('starts empty, appends with compare-and-swap, reads back', async () => {
      const ledger = await open();
      try {
        expect(await ledger.head()).toBeNull();
        const first = buildBlock(null, [sampleEvent()], signer).block;
        await ledger.append([first]);
        expect(blockHash((await ledger.head()) as never)).toBe(blockHash(first.header));
        // A second block at height 0, or one that skips a height, is refused and changes nothing.
        const rival = buildBlock(null, [sampleEvent()], signer).block;
        await expect(ledger.append([rival])).rejects.toMatchObject({ code: 'LEDGER_CONFLICT' });
        const second = buildBlock(first.header, [sampleEvent(), sampleEvent('acl.granted')], signer).block;
        const skipping = buildBlock(second.header, [sampleEvent()], signer).block;
        await expect(ledger.append([skipping])).rejects.toMatchObject({ code: 'LEDGER_CONFLICT' });
        await ledger.append([second]);
        expect((await ledger.get(1))?.events).toEqual(second.events);
        expect(await ledger.get(2)).toBeNull();
        expect(await ledger.get(-1)).toBeNull();
        expect((await verifyChain(ledger)).events).toBe(3);
      } finally {
        await ledger.close();
      }
    });

    it('many concurrent submitters: one receipt each, all verify offline and online', async () => {
      const ledger = await open();
      try {
        const batcher = new Batcher(ledger, signer, { maxEvents: 50, maxDelayMs: 1 });
        const events = Array.from({ length: 400 }, (_, i) =>
          sampleEvent(i % 3 === 0 ? 'record.accessed' : 'record.created'),
        );
        const receipts = await Promise.all(events.map((e) => batcher.submit(e)));
        expect(receipts.map((r) => r.event)).toEqual(events);
        for (const receipt of receipts) {
          expect(verifyReceipt(JSON.parse(JSON.stringify(receipt)), { trusted: [signer.id] }).signer).toBe(signer.id);
        }
        const last = receipts.at(-1);
        await checkReceiptOnLedger(ledger, receipts[0] as never);
        const summary = await verifyChain(ledger, { trusted: new Set([signer.id]) });
        expect(summary.events).toBe(400);
        expect(summary.blocks).toBeGreaterThanOrEqual(400 / 50);
        expect(summary.head?.height).toBe(last?.block.height);
      } finally {
        await ledger.close();
      }
    });

    it('refuses a malformed event before queueing it', async () => {
      const ledger = await open();
      try {
        const batcher = new Batcher(ledger, signer);
        const bad = { ...sampleEvent(), patientName: 'Jane Doe' };
        await expect(batcher.submit(bad)).rejects.toMatchObject({ code: 'EVENT_INVALID' });
        const before = await ledger.head();
        await batcher.flush();
        expect(await ledger.head()).toEqual(before);
      } finally {
        await ledger.close();
      }
    });

    it('iterates in pages from any height', async () => {
      const ledger = await open();
      try {
        // Seven blocks: more than one page of every backend's test configuration (etcd's is 3).
        let head: Awaited<ReturnType<Ledger['head']>> = null;
        for (let i = 0; i < 7; i++) {
          const { block } = buildBlock(head, [sampleEvent()], signer);
          await ledger.append([block]);
          head = block.header;
        }
        for (const from of [0, 1, 3, 6]) {
          const heights: number[] = [];
          for await (const block of ledger.blocks(from)) heights.push(block.header.height);
          expect(heights, `from ${from}`).toEqual(Array.from({ length: 7 - from }, (_, i) => i + from));
        }
        const none: number[] = [];
        for await (const block of ledger.blocks(7)) none.push(block.header.height);
        expect(none).toEqual([]);
      } finally {
        await ledger.close();
      }
    });

    it('many receipts are checked in one walk; one the ledger does not hold fails them all', async () => {
      const ledger = await open();
      try {
        const batcher = new Batcher(ledger, signer, { maxEvents: 3, maxDelayMs: 1 });
        const receipts = await Promise.all(Array.from({ length: 10 }, () => batcher.submit(sampleEvent())));
        expect(new Set(receipts.map((r) => r.block.height)).size).toBeGreaterThan(2);
        const head = (await ledger.head())?.height;
        expect((await checkReceiptsOnLedger(ledger, receipts)).headHeight).toBe(head);
        const { block, tree } = buildBlock(await ledger.head(), [sampleEvent()], signer); // never appended
        const { makeReceipt } = await import('../../anchor/receipt.ts');
        const stray = makeReceipt(block, tree, 0);
        const other = buildBlock(null, [sampleEvent()], signer); // another block at height 0
        for (const bad of [stray, makeReceipt(other.block, other.tree, 0)]) {
          const err = await checkReceiptsOnLedger(ledger, [...receipts, bad]).catch((e) => e);
          expect(isMedvaultError(err, 'RECEIPT_INVALID')).toBe(true);
        }
      } finally {
        await ledger.close();
      }
    });

    it('a receipt for a block the ledger does not hold fails online', async () => {
      const ledger = await open();
      try {
        const head = await ledger.head();
        const { block, tree } = buildBlock(head, [sampleEvent()], signer); // built, never appended
        const { makeReceipt } = await import('../../anchor/receipt.ts');
        const receipt = makeReceipt(block, tree, 0);
        expect(verifyReceipt(receipt).height).toBe(block.header.height); // offline it is self-consistent
        const err = await checkReceiptOnLedger(ledger, receipt).catch((e) => e);
        expect(isMedvaultError(err, 'RECEIPT_INVALID')).toBe(true);
      } finally {
        await ledger.close();
      }
    });
  });
}
