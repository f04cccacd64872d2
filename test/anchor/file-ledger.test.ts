/** The embedded file ledger: the shared contract, torn tails, damage, locking. */
import { appendFileSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { Batcher } from '../../anchor/batcher.ts';
import { FileLedger } from '../../anchor/file-ledger.ts';
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
    expect(lines[0]).toMatchObject({ offset: size, cutBytes: 308, reason: 'a record cut short', blocks: 5 });
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
