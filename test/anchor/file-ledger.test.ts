/** The embedded file ledger: the shared contract, torn tails, damage, locking. */
import { appendFileSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { Batcher } from '../../anchor/batcher.ts';
import { FileLedger, repairFileLedger } from '../../anchor/file-ledger.ts';
import { checkReceiptOnLedger, verifyChain } from '../../anchor/ledger.ts';
import type { Receipt } from '../../anchor/receipt.ts';
import { SigningKey } from '../../crypto/ed25519.ts';
import { isMedvaultError } from '../../errors.ts';
import { flipBits, tempDir } from '../helpers.ts';
import { sampleEvent } from './fixtures.ts';
import { ledgerConformance } from './ledger-conformance.ts';

const dir = tempDir();
let conformanceLedgers = 0;
ledgerConformance('file', () => FileLedger.open(join(dir, `conformance-${conformanceLedgers++}.mvl`)));

const signer = SigningKey.generate();

function captureLogger() {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) });
  return { logger, lines };
}

/** A ledger of `blocks` blocks of 10 events; returns the receipts. */
async function filled(path: string, blocks: number): Promise<Receipt[]> {
  const ledger = await FileLedger.open(path);
  const batcher = new Batcher(ledger, signer, { maxEvents: 10, maxDelayMs: 1 });
  const receipts: Receipt[] = [];
  for (let b = 0; b < blocks; b++) {
    receipts.push(...(await Promise.all(Array.from({ length: 10 }, () => batcher.submit(sampleEvent())))));
  }
  await ledger.close();
  return receipts;
}

async function expectIntact(path: string, receipts: Receipt[], lastHeight: number) {
  const ledger = await FileLedger.open(path);
  try {
    expect((await ledger.head())?.height).toBe(lastHeight);
    expect((await verifyChain(ledger)).blocks).toBe(lastHeight + 1);
    for (const r of receipts.filter((r) => r.block.height <= lastHeight)) await checkReceiptOnLedger(ledger, r);
  } finally {
    await ledger.close();
  }
}

describe('file ledger: crashes and damage', () => {
  it('a torn record after the last acknowledged block is cut at open, with a log line', async () => {
    const path = join(dir, 'torn.mvl');
    const receipts = await filled(path, 5);
    const size = statSync(path).size;
    // A crash mid-append: a record header promising 5000 bytes, and only 300 of them.
    const header = Buffer.alloc(8);
    header.writeUInt32BE(5000, 0);
    appendFileSync(path, Buffer.concat([header, Buffer.alloc(300, 0x7b)]));
    const { logger, lines } = captureLogger();
    const ledger = await FileLedger.open(path, { logger });
    await ledger.close();
    expect(statSync(path).size).toBe(size);
    expect(lines).toHaveLength(1);
    // The line says why (under `problem`: the logger redacts `reason` keys, which once hid it).
    expect(lines[0]).toMatchObject({ offset: size, cutBytes: 308, problem: 'a record cut short', blocks: 5 });
    await expectIntact(path, receipts, 4);
  });

  it('truncated mid-block: the earlier blocks are intact, the chain verifies, appends continue', async () => {
    const path = join(dir, 'truncated.mvl');
    const receipts = await filled(path, 4);
    truncateSync(path, statSync(path).size - 37);
    await expectIntact(path, receipts, 2);
    const ledger = await FileLedger.open(path);
    const again = await new Batcher(ledger, signer).submit(sampleEvent());
    expect(again.block.height).toBe(3);
    await ledger.close();
  });

  it('zeros at the tail (a crash after the size grew, before the data) are cut', async () => {
    const path = join(dir, 'zeros.mvl');
    const receipts = await filled(path, 2);
    appendFileSync(path, Buffer.alloc(4096));
    await expectIntact(path, receipts, 1);
  });

  it('a damaged record with good records after it is refused, not cut', async () => {
    const path = join(dir, 'damaged.mvl');
    await filled(path, 3);
    const bytes = readFileSync(path);
    writeFileSync(path, flipBits(bytes, 8 + 8 + 40)); // inside block 0's payload
    const err = await FileLedger.open(path).catch((e) => e);
    expect(isMedvaultError(err, 'LEDGER_CORRUPT')).toBe(true);
    expect(statSync(path).size).toBe(bytes.length); // nothing was cut
  });

  /** The byte offset of block `height`'s record (8-byte magic, then 8-byte headers and payloads). */
  function recordOffset(bytes: Buffer, height: number): number {
    let at = 8;
    for (let h = 0; h < height; h++) at += 8 + bytes.readUInt32BE(at);
    return at;
  }

  it.each<[string, (bytes: Buffer, at: number) => Buffer]>([
    ['a bit of the length field', (b, at) => flipBits(b, at + 2, 0x01)], // longer than what follows
    ['a low bit of the length field', (b, at) => flipBits(b, at + 3, 0x04)], // shorter: the checksum fails
    ['the checksum field', (b, at) => flipBits(b, at + 5, 0x10)],
    ['the payload', (b, at) => flipBits(b, at + 8 + 30, 0x02)],
  ])('damage to %s of a middle record is refused, naming the byte, and nothing is cut', async (_name, damage) => {
    const path = join(dir, `middle-${Math.random().toString(16).slice(2)}.mvl`);
    await filled(path, 6);
    const bytes = readFileSync(path);
    const at = recordOffset(bytes, 2);
    const damaged = damage(Buffer.from(bytes), at);
    writeFileSync(path, damaged);
    const err = await FileLedger.open(path).catch((e) => e);
    expect(isMedvaultError(err, 'LEDGER_CORRUPT'), String(err)).toBe(true);
    expect(err.message).toContain(`at byte ${at}`);
    expect(err.message).toContain('ledger repair');
    expect(readFileSync(path).equals(damaged)).toBe(true); // not cut, not rewritten
  });

  it('a last block the node acknowledged, cut short, is refused instead of cut; unacknowledged, it is cut', async () => {
    const path = join(dir, 'acked.mvl');
    const receipts = await filled(path, 4);
    truncateSync(path, statSync(path).size - 37);
    const cut = readFileSync(path);
    const err = await FileLedger.open(path, { acknowledged: 3 }).catch((e) => e);
    expect(isMedvaultError(err, 'LEDGER_CORRUPT')).toBe(true);
    expect(err.message).toMatch(/ends at block 2, but this node acknowledged block 3/);
    expect(readFileSync(path).equals(cut)).toBe(true);
    await expectIntact(path, receipts, 2); // opened without the node's word: a torn tail, cut
  });

  it('a read-only open takes no lock, cuts nothing and reports a torn tail', async () => {
    const path = join(dir, 'readonly.mvl');
    await filled(path, 3);
    const writer = await FileLedger.open(path); // a running node holds the lock
    try {
      appendFileSync(path, Buffer.from([0, 0, 1, 0, 1, 2, 3, 4, 0x7b]));
      const size = statSync(path).size;
      const reader = await FileLedger.open(path, { readOnly: true });
      expect(reader.tornTail).toMatchObject({ offset: size - 9, bytes: 9, problem: 'a record cut short' });
      expect((await verifyChain(reader)).blocks).toBe(3);
      await expect(reader.append([])).rejects.toMatchObject({ code: 'LEDGER_UNAVAILABLE' });
      await reader.close();
      expect(statSync(path).size).toBe(size);
      expect(readFileSync(`${path}.lock`, 'utf8')).toBe(String(process.pid)); // the writer's lock stays
    } finally {
      await writer.close();
    }
  });

  it('repair copies the intact prefix aside and leaves the damaged file as it is', async () => {
    const path = join(dir, 'to-repair.mvl');
    const receipts = await filled(path, 5);
    const bytes = readFileSync(path);
    const damaged = flipBits(Buffer.from(bytes), recordOffset(bytes, 3) + 8 + 30, 0x02);
    writeFileSync(path, damaged);
    const copy = join(dir, 'repaired.mvl');
    const result = await repairFileLedger(path, copy);
    expect(result).toMatchObject({ blocks: 3, damageAt: recordOffset(bytes, 3) });
    expect(readFileSync(path).equals(damaged)).toBe(true);
    await expectIntact(copy, receipts, 2);
    await expect(repairFileLedger(path, copy)).rejects.toThrow(); // never overwrites
  });

  it('a second process cannot open the same ledger; a stale lock is taken over', async () => {
    const path = join(dir, 'locked.mvl');
    const ledger = await FileLedger.open(path);
    const err = await FileLedger.open(path).catch((e) => e);
    expect(isMedvaultError(err, 'LEDGER_LOCKED')).toBe(true);
    await ledger.close();
    writeFileSync(`${path}.lock`, '999999999'); // a process that does not exist
    await (await FileLedger.open(path)).close();
  });

  it('a file that is not a ledger is refused', async () => {
    const path = join(dir, 'not-a-ledger.mvl');
    writeFileSync(path, 'hello, world');
    const err = await FileLedger.open(path).catch((e) => e);
    expect(isMedvaultError(err, 'LEDGER_CORRUPT')).toBe(true);
  });
});
