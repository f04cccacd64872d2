/** Ledger checkpoints: signatures verified offline, and the online check against a file ledger. */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Batcher } from '../../anchor/batcher.ts';
import { blockHash } from '../../anchor/block.ts';
import {
  type Checkpoint,
  checkCheckpointOnLedger,
  checkpointBody,
  signCheckpoint,
  verifyCheckpoint,
} from '../../anchor/checkpoint.ts';
import { FileLedger } from '../../anchor/file-ledger.ts';
import { SigningKey } from '../../crypto/ed25519.ts';
import { flipBits, tempDir } from '../helpers.ts';
import { sampleEvent } from './fixtures.ts';

const dir = tempDir();
const [a, b, c] = [SigningKey.generate(), SigningKey.generate(), SigningKey.generate()] as const;
const body = checkpointBody(7, 'ab'.repeat(32));
const signed = (...keys: SigningKey[]): Checkpoint => ({
  ...body,
  signatures: keys.map((k) => signCheckpoint(body, k)),
});

/** A file ledger of `blocks` blocks of 3 events each. */
async function ledgerOf(name: string, blocks: number): Promise<FileLedger> {
  const ledger = await FileLedger.open(join(dir, name));
  const batcher = new Batcher(ledger, a, { maxEvents: 3, maxBlocksPerAppend: 1, maxDelayMs: 1 });
  for (let i = 0; i < blocks; i++) await Promise.all([0, 1, 2].map(() => batcher.submit(sampleEvent())));
  return ledger;
}

describe('ledger checkpoints', () => {
  it('verify offline with every signer, in order, and honour trusted keys and a quorum', () => {
    expect(verifyCheckpoint(signed(a, b, c))).toEqual({
      height: 7,
      blockHash: body.blockHash,
      signers: [a.id, b.id, c.id],
    });
    expect(verifyCheckpoint(signed(a, b), { trusted: [a.id, b.id], quorum: 2 }).signers).toEqual([a.id, b.id]);
    expect(() => verifyCheckpoint(signed(a, c), { trusted: [a.id, b.id] })).toThrow(/not a trusted node key/);
    expect(() => verifyCheckpoint(signed(a), { quorum: 2 })).toThrow(/fewer than the 2 required/);
  });

  it('fail with any change: height, block hash, a signature byte, a key swapped, a signer twice, none at all', () => {
    const good = signed(a, b);
    const bad: Array<[unknown, RegExp]> = [
      [{ ...good, height: 8 }, /signature by .* does not verify/],
      [{ ...good, blockHash: 'cd'.repeat(32) }, /does not verify/],
      [
        {
          ...good,
          signatures: [
            good.signatures[0],
            {
              ...good.signatures[1],
              sig: flipBits(Buffer.from(good.signatures[1]?.sig ?? '', 'base64'), 9).toString('base64'),
            },
          ],
        },
        /does not verify/,
      ],
      [
        { ...good, signatures: [{ ...good.signatures[0], signerKey: good.signatures[1]?.signerKey }] },
        /not that key's id/,
      ],
      [{ ...good, signatures: [good.signatures[0], good.signatures[0]] }, /signed twice/],
      [{ ...good, signatures: [] }, /not a checkpoint/],
      [{ ...good, extra: 1 }, /not a checkpoint/],
    ];
    for (const [value, reason] of bad) {
      expect(() => verifyCheckpoint(value)).toThrow(reason);
      try {
        verifyCheckpoint(value);
      } catch (err) {
        expect(err).toMatchObject({ code: 'CHECKPOINT_INVALID' });
      }
    }
  });

  it('hold online only while the ledger still has that block at that height', async () => {
    const ledger = await ledgerOf('kept.mvl', 4);
    const block = await ledger.get(2);
    const checkpoint = checkpointBody(2, blockHash(block?.header ?? ({} as never)));
    await expect(checkCheckpointOnLedger(ledger, checkpoint)).resolves.toBeUndefined();
    // Another history (same heights, other blocks) and a shorter one both fail it.
    const other = await ledgerOf('other.mvl', 4);
    await expect(checkCheckpointOnLedger(other, checkpoint)).rejects.toMatchObject({ code: 'LEDGER_REWRITTEN' });
    const shorter = await ledgerOf('shorter.mvl', 2);
    await expect(checkCheckpointOnLedger(shorter, checkpoint)).rejects.toMatchObject({ code: 'LEDGER_REWRITTEN' });
    await Promise.all([ledger.close(), other.close(), shorter.close()]);
  });
});
