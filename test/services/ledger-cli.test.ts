/** `medvault verify` and `medvault ledger verify|head` on a file ledger. */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { Batcher } from '../../anchor/batcher.ts';
import { FileLedger } from '../../anchor/file-ledger.ts';
import type { Receipt } from '../../anchor/receipt.ts';
import { SigningKey } from '../../crypto/ed25519.ts';
import { hash, sampleEvent } from '../anchor/fixtures.ts';
import { flipBits, medvault, tempDir } from '../helpers.ts';

const dir = tempDir();
const ledgerPath = join(dir, 'ledger.mvl');
const signer = SigningKey.generate();
let receipts: Receipt[];

beforeAll(async () => {
  const ledger = await FileLedger.open(ledgerPath);
  const batcher = new Batcher(ledger, signer, { maxEvents: 4 });
  receipts = await Promise.all(Array.from({ length: 10 }, () => batcher.submit(sampleEvent())));
  await ledger.close();
});

function receiptFile(name: string, receipt: unknown): string {
  const path = join(dir, name);
  writeFileSync(path, JSON.stringify(receipt));
  return path;
}

describe('medvault verify', () => {
  it('verifies a receipt offline, then against the ledger', () => {
    const file = receiptFile('ok.json', receipts[5]);
    const offline = medvault(['verify', file, '--trust', signer.id]);
    expect(offline.status, offline.stderr.toString()).toBe(0);
    expect(offline.stdout.toString()).toMatch(/^receipt OK: record\.created in block \d+ .*signed by [0-9a-f]{32}\n$/);
    const online = medvault(['verify', file, '--ledger', `file:${ledgerPath}`]);
    expect(online.status, online.stderr.toString()).toBe(0);
    expect(online.stdout.toString()).toContain(`linked to head ${receipts.at(-1)?.block.height}`);
  });

  it('refuses a tampered receipt and an untrusted signer with exit 1 and a reason', () => {
    const tampered = JSON.parse(JSON.stringify(receipts[2]));
    tampered.event.ciphertextHash = hash();
    const bad = medvault(['verify', receiptFile('bad.json', tampered)]);
    expect(bad.status).toBe(1);
    expect(bad.stderr.toString()).toContain('[RECEIPT_INVALID]');
    const untrusted = medvault(['verify', receiptFile('ok2.json', receipts[2]), '--trust', 'f'.repeat(32)]);
    expect(untrusted.status).toBe(1);
    expect(untrusted.stderr.toString()).toContain('not a trusted member key');
  });
});

describe('medvault ledger', () => {
  it('verify walks the whole ledger', () => {
    const run = medvault(['ledger', 'verify', '--ledger', `file:${ledgerPath}`, '--trust', signer.id]);
    expect(run.status, run.stderr.toString()).toBe(0);
    expect(run.stdout.toString()).toMatch(/^ledger OK: \d+ blocks, 10 events, head \d+ [0-9a-f]{64}\n$/);
  });

  it('head prints the newest header', () => {
    const run = medvault(['ledger', 'head', '--ledger', `file:${ledgerPath}`]);
    expect(run.status).toBe(0);
    expect(JSON.parse(run.stdout.toString())).toMatchObject({
      height: receipts.at(-1)?.block.height,
      signer: signer.id,
    });
  });

  it('verify never writes: a damaged copy fails with exit 1 and stays as it was; a torn tail is reported, not cut', () => {
    const bytes = readFileSync(ledgerPath);
    const damagedPath = join(dir, 'damaged.mvl');
    const damaged = flipBits(Buffer.from(bytes), 8 + 2, 0x01); // block 0's length field
    writeFileSync(damagedPath, damaged);
    const bad = medvault(['ledger', 'verify', '--ledger', `file:${damagedPath}`]);
    expect(bad.status).toBe(1);
    expect(bad.stderr.toString()).toMatch(/at byte 8, .*\[LEDGER_CORRUPT\]/);
    expect(readFileSync(damagedPath).equals(damaged)).toBe(true);
    expect(existsSync(`${damagedPath}.lock`)).toBe(false);
    const tornPath = join(dir, 'torn.mvl');
    const torn = Buffer.concat([bytes, Buffer.from([0, 0, 0, 50, 1, 2, 3, 4, 0x7b, 0x22])]);
    writeFileSync(tornPath, torn);
    const noted = medvault(['ledger', 'verify', '--ledger', `file:${tornPath}`]);
    expect(noted.status, noted.stderr.toString()).toBe(0);
    expect(noted.stdout.toString()).toMatch(
      /^ledger OK: .*\nnote: 10 byte\(s\) after the last block at byte \d+ \(a record cut short\)/,
    );
    expect(readFileSync(tornPath).equals(torn)).toBe(true);
    // repair copies the intact blocks aside; the copy verifies.
    const copy = join(dir, 'repaired.mvl');
    const repaired = medvault(['ledger', 'repair', '--ledger', `file:${damagedPath}`, '-o', copy]);
    expect(repaired.status, repaired.stderr.toString()).toBe(0);
    expect(repaired.stdout.toString()).toMatch(/^copied blocks 0\.\.-1 \(8 bytes\)/);
    expect(readFileSync(damagedPath).equals(damaged)).toBe(true);
  });

  it('an empty ledger is LEDGER_EMPTY, not OK', () => {
    const empty = join(dir, 'empty.mvl');
    writeFileSync(empty, 'MVLEDG01');
    for (const uri of [`file:${empty}`, `file:${join(dir, 'missing.mvl')}`]) {
      const run = medvault(['ledger', 'verify', '--ledger', uri]);
      expect(run.status).toBe(1);
      expect(run.stderr.toString()).toContain('[LEDGER_EMPTY]');
    }
  });

  it('an unknown ledger URI is a typed error', () => {
    const run = medvault(['ledger', 'head', '--ledger', 'postgres://x']);
    expect(run.status).toBe(1);
    expect(run.stderr.toString()).toContain('[INVALID_ARGUMENT]');
  });
});
