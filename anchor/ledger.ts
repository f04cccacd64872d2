/**
 * The ledger contract every backend meets (file, etcd, EVM), and the checks
 * that run over any of them: whole-chain verification and the online half of
 * receipt verification.
 */
import { fail } from '../errors.ts';
import { type Block, type BlockHeader, blockHash, verifyBlock } from './block.ts';
import type { Receipt } from './receipt.ts';
import { keyLink, type Trust, TrustedKeys } from './trusted-keys.ts';

export interface Ledger {
  readonly kind: 'file' | 'etcd' | 'evm';
  /** The newest block's header, or null for an empty ledger. */
  head(): Promise<BlockHeader | null>;
  /** The block at `height`, or null when there is none. */
  get(height: number): Promise<Block | null>;
  /** Blocks from `from` up to the head at the time of the call, in order. */
  blocks(from?: number): AsyncIterable<Block>;
  /**
   * Appends a run of consecutive blocks if and only if the first extends the
   * current head (its height is the next and its `prev` is the head's hash):
   * compare-and-swap on the head. Throws LEDGER_CONFLICT when another block
   * got there first; resolves only once all are durable. A run lets one
   * ledger round trip (one etcd transaction, one fsync) carry several blocks.
   * All or none, except where a backend must split a run (etcd, over its
   * request limit): an error after the first part committed carries
   * `info.committedBlocks`, the number of blocks of the run that are durable.
   */
  append(blocks: readonly Block[]): Promise<void>;
  /**
   * Optional: `blocks` are about to be appended (in a later run); the ledger
   * may start the work of storing them (etcd compresses them) so that the
   * append does not wait for it. Never required for correctness.
   */
  prepare?(blocks: readonly Block[]): void;
  close(): Promise<void>;
}

/** True when `block` is the block a CAS append would put after `head`. */
export function extendsHead(block: Block, head: BlockHeader | null): boolean {
  return head
    ? block.header.height === head.height + 1 && block.header.prev === blockHash(head)
    : block.header.height === 0;
}

/** Throws unless `blocks` is a non-empty run in which each block extends the one before. */
export function checkRun(blocks: readonly Block[]): void {
  if (blocks.length === 0) fail('INVALID_ARGUMENT', 'append needs at least one block');
  for (let i = 1; i < blocks.length; i++) {
    if (!extendsHead(blocks[i] as Block, (blocks[i - 1] as Block).header)) {
      fail('INVALID_ARGUMENT', `block ${blocks[i]?.header.height} does not extend the block before it in the run`);
    }
  }
}

export interface ChainSummary {
  blocks: number;
  events: number;
  head: BlockHeader | null;
}

/**
 * Walks the whole ledger and checks every block: links, Merkle roots, counts
 * and signatures. With `trusted`, every signer must be one of those key ids, or
 * a key one of them handed over to on the way (node.key).
 */
export async function verifyChain(
  ledger: Ledger,
  options: {
    trusted?: Trust;
    /** Start after this (already verified) header instead of at block 0. */
    after?: BlockHeader | null;
    /** Stop after this height instead of at the head. */
    upTo?: number;
  } = {},
): Promise<ChainSummary> {
  let previous: BlockHeader | null = options.after ?? null;
  // Copied: the walk follows the node.key hand-overs it meets (anchor/trusted-keys.ts).
  const trusted = options.trusted === undefined ? undefined : new TrustedKeys(TrustedKeys.of(options.trusted).ids());
  let blocks = 0;
  let events = 0;
  for await (const block of ledger.blocks(previous ? previous.height + 1 : 0)) {
    if (options.upTo !== undefined && block.header.height > options.upTo) break;
    try {
      verifyBlock(block, previous);
    } catch (err) {
      fail('LEDGER_CORRUPT', (err as Error).message, { cause: err });
    }
    if (trusted && !trusted.allows(block.header.signer, block.header.height)) {
      fail(
        'LEDGER_CORRUPT',
        `block ${block.header.height} is signed by ${block.header.signer}, not a trusted node key at that height`,
      );
    }
    // A trusted node replacing its key: its successor signs the blocks after this one, it none.
    if (trusted) {
      const { signer, height } = block.header;
      trusted.follow(block.events.flatMap((event) => keyLink(event, signer, height) ?? []));
    }
    previous = block.header;
    blocks++;
    events += block.events.length;
  }
  return { blocks, events, head: previous };
}

/**
 * The online half of receipt verification: the ledger holds the receipt's
 * header at its height, and the chain links from there up to the head.
 */
export async function checkReceiptOnLedger(ledger: Ledger, receipt: Receipt): Promise<{ headHeight: number }> {
  return checkReceiptsOnLedger(ledger, [receipt]);
}

/**
 * The same for many receipts in one walk of the ledger: from the lowest receipt's
 * block to the head, every link checked once and each receipt's header found at
 * its height (RECEIPT_INVALID naming the first that is not).
 */
export async function checkReceiptsOnLedger(
  ledger: Ledger,
  receipts: readonly Receipt[],
): Promise<{ headHeight: number }> {
  const claimed = new Map<number, string[]>();
  for (const receipt of receipts) {
    const hashes = claimed.get(receipt.block.height) ?? [];
    hashes.push(blockHash(receipt.block));
    claimed.set(receipt.block.height, hashes);
  }
  const lowest = Math.min(...claimed.keys());
  if (!Number.isFinite(lowest)) fail('INVALID_ARGUMENT', 'no receipt to check');
  const at = await ledger.get(lowest);
  if (!at) fail('RECEIPT_INVALID', `the ledger has no block at height ${lowest}`);
  const check = (header: BlockHeader) => {
    for (const hash of claimed.get(header.height) ?? []) {
      if (blockHash(header) !== hash) {
        fail('RECEIPT_INVALID', `the ledger's block ${header.height} is not the one in the receipt`);
      }
    }
    claimed.delete(header.height);
  };
  check(at.header);
  let previous = at.header;
  for await (const block of ledger.blocks(lowest + 1)) {
    if (block.header.prev !== blockHash(previous)) {
      fail('LEDGER_CORRUPT', `block ${block.header.height} does not link to block ${previous.height}`);
    }
    check(block.header);
    previous = block.header;
  }
  const [missing] = claimed.keys();
  if (missing !== undefined) fail('RECEIPT_INVALID', `the ledger has no block at height ${missing}`);
  return { headHeight: previous.height };
}
