/**
 * Node key history (anchor/trusted-keys.ts): a receipt signed before a node replaced its key
 * verifies against its new id, one signed after against its old id, through the node.key
 * receipt; a retired key's later signature, a hand-over the new key did not accept, one
 * signed by another key, and a second hand-over of one key do not. The same documents go
 * through the Python verifier (verifier/medvault_verify.py), and through a whole-ledger walk.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type Block, type BlockHeader, buildBlock } from '../../anchor/block.ts';
import { checkpointBody, signCheckpoint, verifyCheckpoint } from '../../anchor/checkpoint.ts';
import type { LedgerEvent } from '../../anchor/events.ts';
import { FileLedger } from '../../anchor/file-ledger.ts';
import { followHistory } from '../../anchor/key-history.ts';
import { verifyChain } from '../../anchor/ledger.ts';
import { makeReceipt, type Receipt, verifyReceipt } from '../../anchor/receipt.ts';
import { SigningKey } from '../../crypto/ed25519.ts';
import { X25519Identity } from '../../crypto/x25519.ts';
import { isMedvaultError } from '../../errors.ts';
import type { MemberKeys } from '../../kms/local-kms.ts';
import { nodeKeyEvent } from '../../services/vault/node-key.ts';
import { codeOf, ROOT, tempDir } from '../helpers.ts';
import { sampleEvent } from './fixtures.ts';

const keys = (): MemberKeys => ({ signing: SigningKey.generate(), identity: X25519Identity.generate() });
const [a, b, c] = [keys(), keys(), keys()] as const;

/** Blocks signed in turn by each step's key, each holding the step's events; and each event's receipt. */
function chainOf(steps: Array<[MemberKeys, LedgerEvent[]]>): { blocks: Block[]; receipts: Receipt[][] } {
  const blocks: Block[] = [];
  const receipts: Receipt[][] = [];
  let previous: BlockHeader | null = null;
  for (const [signer, events] of steps) {
    const { block, tree } = buildBlock(previous, events, signer.signing);
    blocks.push(block);
    receipts.push(events.map((_, i) => makeReceipt(block, tree, i)));
    previous = block.header;
  }
  return { blocks, receipts };
}

// Block 0 by A; block 1: A hands over to B; block 2 by B; block 3: A (retired) signs again;
// block 4: A hands over a second time, to C; block 5 by C.
const { blocks, receipts } = chainOf([
  [a, [sampleEvent()]],
  [a, [nodeKeyEvent(a, b, 1)]],
  [b, [sampleEvent()]],
  [a, [sampleEvent()]],
  [a, [nodeKeyEvent(a, c, 2)]],
  [c, [sampleEvent()]],
]);
const r = (height: number) => receipts[height]?.[0] as Receipt;
const history = [r(1)];

const work = tempDir('medvault-keys-');
let files = 0;
/** The Python verifier's exit status on `receipt`, trusting `trust` with `keyHistory`. */
function python(receipt: unknown, trust: string[], keyHistory?: unknown) {
  const write = (value: unknown) => {
    const file = join(work, `${files++}.json`);
    writeFileSync(file, JSON.stringify(value));
    return file;
  };
  const args = [join(ROOT, 'verifier', 'medvault_verify.py'), 'receipt', write(receipt)];
  for (const id of trust) args.push('--trust', id);
  if (keyHistory !== undefined) args.push('--keys', write(keyHistory));
  const run = spawnSync('python3', args, { encoding: 'utf8', timeout: 30_000 });
  return run.status;
}

describe('node key history', () => {
  it('follows a hand-over forward from a pinned old id and backward from a current one', () => {
    // Without the history, each id verifies only its own key's blocks.
    expect(codeOf(() => verifyReceipt(r(2), { trusted: [a.signing.id] }))).toBe('RECEIPT_INVALID');
    expect(codeOf(() => verifyReceipt(r(0), { trusted: [b.signing.id] }))).toBe('RECEIPT_INVALID');
    const forward = followHistory([a.signing.id], history);
    const backward = followHistory([b.signing.id], history);
    for (const trusted of [forward, backward]) {
      expect(verifyReceipt(r(0), { trusted }).signer).toBe(a.signing.id);
      expect(verifyReceipt(r(1), { trusted }).signer).toBe(a.signing.id);
      expect(verifyReceipt(r(2), { trusted }).signer).toBe(b.signing.id);
      // The retired key signs nothing after its hand-over.
      expect(codeOf(() => verifyReceipt(r(3), { trusted }))).toBe('RECEIPT_INVALID');
      expect(trusted.nodeOf(b.signing.id)).toBe(trusted.nodeOf(a.signing.id));
    }
    // The Python verifier, from docs/formats.md: the same answers.
    expect(python(r(2), [a.signing.id])).toBe(1);
    expect(python(r(2), [a.signing.id], history)).toBe(0);
    expect(python(r(0), [b.signing.id], { keyHistory: history })).toBe(0);
    expect(python(r(3), [a.signing.id], history)).toBe(1);
    expect(python(r(3), [b.signing.id], history)).toBe(1);
  });

  it('takes the first hand-over of a key only, in whatever order the history lists them', () => {
    for (const list of [
      [r(1), r(4)],
      [r(4), r(1)],
    ]) {
      const trusted = followHistory([a.signing.id], list);
      expect(trusted.allows(b.signing.id)).toBe(true);
      expect(trusted.allows(c.signing.id)).toBe(false);
      expect(python(r(5), [a.signing.id], list)).toBe(1);
    }
  });

  it('refuses a hand-over the new key did not accept, or that another key signed', () => {
    const unaccepted: LedgerEvent = { ...nodeKeyEvent(a, b, 1), proof: nodeKeyEvent(a, c, 1).proof as string };
    const forged = chainOf([[a, [unaccepted]]]).receipts[0]?.[0] as Receipt;
    expect(codeOf(() => followHistory([a.signing.id], [forged]))).toBe('RECEIPT_INVALID');
    // C anchors "A hands over to C": only A's own block hands A's key over.
    const byOther = chainOf([[c, [nodeKeyEvent(a, c, 1)]]]).receipts[0]?.[0] as Receipt;
    expect(codeOf(() => followHistory([a.signing.id], [byOther]))).toBe('RECEIPT_INVALID');
    // B's block naming A as the node handing over: the event must name the key that signs it.
    const misnamed: LedgerEvent = { ...nodeKeyEvent(b, c, 1), node: a.signing.id };
    const byB = chainOf([[b, [misnamed]]]).receipts[0]?.[0] as Receipt;
    expect(codeOf(() => followHistory([b.signing.id], [byB]))).toBe('RECEIPT_INVALID');
    expect(python(r(2), [a.signing.id], [forged])).toBe(1);
    expect(python(byB, [b.signing.id])).toBe(0);
    expect(python(byB, [b.signing.id], [byB])).toBe(1); // the history itself is refused
    expect(python(r(2), [a.signing.id], [byOther])).toBe(1);
  });

  it("refuses a retired key's checkpoint signature at a height after its hand-over", () => {
    const at = (height: number) => {
      const body = checkpointBody(height, 'ab'.repeat(32));
      return { ...body, signatures: [signCheckpoint(body, a.signing)] };
    };
    const trusted = followHistory([b.signing.id], history);
    expect(verifyCheckpoint(at(1), { trusted }).signers).toEqual([a.signing.id]);
    expect(codeOf(() => verifyCheckpoint(at(2), { trusted }))).toBe('CHECKPOINT_INVALID');
  });

  it('walks a whole ledger from the old id through the hand-over, and refuses the retired key after it', async () => {
    const ledger = await FileLedger.open(join(work, 'ledger.mvl'));
    try {
      await ledger.append(blocks.slice(0, 3));
      expect((await verifyChain(ledger, { trusted: [a.signing.id] })).blocks).toBe(3);
      await ledger.append([blocks[3] as Block]);
      const err = await verifyChain(ledger, { trusted: [a.signing.id] }).catch((e: unknown) => e);
      expect(isMedvaultError(err, 'LEDGER_CORRUPT')).toBe(true);
      expect(String((err as Error).message)).toMatch(/block 3 is signed by/);
    } finally {
      await ledger.close();
    }
  });
});
