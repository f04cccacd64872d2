/**
 * Ledger checkpoints, cosigned by the consortium (see anchor/checkpoint.ts).
 *
 * A node confirms "block H has hash X" only after walking its own view of the
 * ledger: every block from the last checkpoint it confirmed up to H verifies
 * (links, Merkle roots, signatures), and the block of that last checkpoint is
 * still the one it confirmed. A member that rewrites history on the shared
 * ledger can no longer get a checkpoint cosigned, every node refuses with
 * LEDGER_REWRITTEN (and logs it), and anyone holding an earlier checkpoint
 * sees the rewrite with `medvault verify CHECKPOINT --ledger URI`.
 *
 * Checkpoints are made on demand (an admin or a DPO) and, by `medvault
 * serve`, periodically while the ledger grows.
 */
import { blockHash } from '../../anchor/block.ts';
import {
  type Checkpoint,
  type CheckpointBody,
  type CheckpointSignature,
  checkpointBody,
  signCheckpoint,
  verifyCheckpoint,
} from '../../anchor/checkpoint.ts';
import { verifyChain } from '../../anchor/ledger.ts';
import { fail, isMedvaultError } from '../../errors.ts';
import { logger } from '../../log.ts';
import { confirmedCheckpointHolds, type VaultCore } from './core.ts';
import type { MemberRow } from './metadata.ts';
import type { Peers } from './peers.ts';
import { authorize } from './policy.ts';

export class Checkpoints {
  readonly #c: VaultCore;
  readonly #peers: Peers;

  constructor(core: VaultCore, peers: Peers) {
    this.#c = core;
    this.#peers = peers;
  }

  /**
   * Checks `body` against this node's view of the ledger (see above); throws
   * LEDGER_REWRITTEN when the ledger no longer holds what this node confirmed
   * before, CHECKPOINT_INVALID when its block H is not X, LEDGER_CORRUPT when
   * a block between does not verify.
   */
  async #check(body: CheckpointBody): Promise<void> {
    const ledger = this.#c.ledger;
    const last = await confirmedCheckpointHolds(this.#c.m, ledger);
    // Walk from the lower of the two checkpoints to the higher: the chain between must verify.
    const lowHeight = last ? Math.min(last.height, body.height) : -1;
    const highHeight = last ? Math.max(last.height, body.height) : body.height;
    const low =
      lowHeight < 0 ? null : lowHeight === last?.height ? last : ((await ledger.get(lowHeight))?.header ?? null);
    if (lowHeight >= 0 && !low) fail('CHECKPOINT_INVALID', `this node's view of the ledger has no block ${lowHeight}`);
    const walk = await verifyChain(ledger, { after: low, upTo: highHeight });
    if (walk.head?.height !== highHeight) {
      fail('CHECKPOINT_INVALID', `this node's view of the ledger has no block ${highHeight}`);
    }
    const at = body.height === highHeight ? walk.head : low;
    if (!at || blockHash(at) !== body.blockHash) {
      fail('CHECKPOINT_INVALID', `block ${body.height} on this node's view of the ledger is another block`);
    }
  }

  /** Confirms `body` (see #check), signs it, and remembers it as confirmed. */
  async #confirm(body: CheckpointBody): Promise<CheckpointSignature> {
    await this.#check(body);
    const signature = signCheckpoint(body, this.#c.node);
    const checkpoint: Checkpoint = { ...body, signatures: [signature] };
    this.#c.m.saveLedgerCheckpoint(body.height, body.blockHash, JSON.stringify(checkpoint), signature.at);
    return signature;
  }

  /**
   * Makes a checkpoint of the ledger's head, signed here and cosigned by the
   * peers that confirm it. Returns null when the ledger is empty or has not
   * grown since the last checkpoint (with `onlyIfGrown`).
   */
  async create(options: { actor?: MemberRow; onlyIfGrown?: boolean } = {}): Promise<Checkpoint | null> {
    if (options.actor) authorize(options.actor, 'checkpoint');
    const head = await this.#c.ledger.head();
    if (!head) return null;
    const last = this.#c.m.latestLedgerCheckpoint();
    if (options.onlyIfGrown && last && last.height >= head.height) return null;
    const body = checkpointBody(head.height, blockHash(head));
    const own = await this.#confirm(body);
    const cosignatures = await this.#peers.ask<CheckpointSignature>(
      '/v1/checkpoints/cosign',
      { checkpoint: { ...body, signatures: [own] } },
      { checkpoint: body.height },
      (peer, answer) => verifyCheckpoint({ ...body, signatures: [own, answer] }).signers[1] === peer.id,
    );
    const checkpoint: Checkpoint = { ...body, signatures: [own, ...cosignatures] };
    this.#c.m.saveLedgerCheckpoint(body.height, body.blockHash, JSON.stringify(checkpoint), own.at);
    logger.info({ height: body.height, signers: checkpoint.signatures.length }, 'ledger checkpoint');
    return checkpoint;
  }

  /**
   * A peer asks this node to cosign its checkpoint: its first signature must
   * be that peer's, and it must check out against this node's view of the
   * ledger.
   */
  async cosign(value: unknown): Promise<CheckpointSignature> {
    await this.#peers.refresh();
    const verified = verifyCheckpoint(value);
    const [proposer] = verified.signers;
    if (!proposer || !this.#peers.ids.includes(proposer)) {
      fail('CHECKPOINT_INVALID', `proposed by ${proposer}, which is not a peer of this node`);
    }
    const { v, type, height, blockHash: hash } = value as Checkpoint;
    try {
      return await this.#confirm({ v, type, height, blockHash: hash });
    } catch (err) {
      if (isMedvaultError(err, 'LEDGER_REWRITTEN')) {
        logger.error({ height, from: verified.signers }, 'refused to cosign a checkpoint: the ledger was rewritten');
      }
      throw err;
    }
  }

  /** The newest checkpoint this node confirmed, with the signatures it gathered; null before the first. */
  latest(actor: MemberRow): Checkpoint | null {
    authorize(actor, 'checkpoint.read');
    const row = this.#c.m.latestLedgerCheckpoint();
    return row ? (JSON.parse(row.checkpoint) as Checkpoint) : null;
  }
}
