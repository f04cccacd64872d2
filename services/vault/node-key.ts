/**
 * A node replacing its own key (`medvault node rotate-key`, the node stopped).
 *
 * The node's id is the fingerprint of the key that signs its blocks, so a new
 * key is a new id, linked to the old one on the ledger: a node.key event in a
 * block the old key signs, carrying the new key's acceptance
 * (anchor/trusted-keys.ts). Every node's ledger index then knows the node by
 * its new id (services/vault/consortium-index.ts), and verifiers follow the
 * hand-over from either end.
 *
 * Crash-safe in three steps: the new keys are made and kept in the keystore
 * (NODE_NEXT_KEY) before anything is anchored; the hand-over is anchored,
 * unless the ledger holds it already; then the new keys replace the node's in
 * one rewrite of the keystore, and the old private key is kept nowhere. A run
 * cut anywhere is finished by the next run or the node's next start, which
 * never hands over to another key than the one kept: no crash leaves the
 * ledger naming a key the node does not hold.
 */
import { buildBlock } from '../../anchor/block.ts';
import type { LedgerEvent } from '../../anchor/events.ts';
import type { Ledger } from '../../anchor/ledger.ts';
import { keyLink, nodeKeyMessage } from '../../anchor/trusted-keys.ts';
import { isMedvaultError } from '../../errors.ts';
import type { LocalKms, MemberKeys } from '../../kms/local-kms.ts';
import { logger } from '../../log.ts';
import { NODE_KEY } from './consortium.ts';
import { crashPoint } from './crash-points.ts';

/** The keystore name of the node's next keys, while a hand-over to them is under way. */
export const NODE_NEXT_KEY = 'node.next';

/** Tries of the hand-over's append when other nodes' blocks get there first. */
const APPEND_TRIES = 20;

/** The node.key event handing `current`'s key over to `next`'s. */
export function nodeKeyEvent(current: MemberKeys, next: MemberKeys, at: number): LedgerEvent {
  const recipient = Buffer.from(next.identity.recipient.publicKey).toString('hex');
  const proof = next.signing.sign(nodeKeyMessage(current.signing.id, next.signing.id, recipient));
  return {
    type: 'node.key',
    at,
    node: current.signing.id,
    successor: next.signing.id,
    signingKey: Buffer.from(next.signing.publicKey).toString('hex'),
    recipient,
    proof: Buffer.from(proof).toString('hex'),
  };
}

/** Starts a hand-over: the next keys are made (once) and kept before anything is anchored. */
export async function prepareNodeKey(kms: LocalKms): Promise<void> {
  if (!kms.hasMember(NODE_NEXT_KEY)) await kms.createMember(NODE_NEXT_KEY);
}

/**
 * Finishes a hand-over under way (nothing when none is): anchors it unless the ledger holds it
 * from height `from` on (where a run cut short may have left it), then the next keys become the
 * node's. The ids before and after, or null.
 */
export async function finishNodeKey(
  kms: LocalKms,
  ledger: Ledger,
  from: number,
): Promise<{ previous: string; node: string } | null> {
  if (!kms.hasMember(NODE_NEXT_KEY)) return null;
  const current = kms.memberKeys(NODE_KEY);
  const next = kms.memberKeys(NODE_NEXT_KEY);
  const previous = current.signing.id;
  if (!(await handedOver(ledger, previous, next.signing.id, from))) {
    crashPoint('node-key.prepared');
    await appendAlone(ledger, nodeKeyEvent(current, next, Date.now()), current);
  }
  crashPoint('node-key.anchored');
  await kms.replaceMember(NODE_KEY, NODE_NEXT_KEY);
  logger.warn({ previous, node: next.signing.id }, 'this node replaced its key: it is known by its new id');
  return { previous, node: next.signing.id };
}

/** True when a block from height `from` on hands `node`'s key over to `successor`. */
async function handedOver(ledger: Ledger, node: string, successor: string, from: number): Promise<boolean> {
  for await (const block of ledger.blocks(from)) {
    const { signer, height } = block.header;
    if (signer !== node) continue;
    if (block.events.some((e) => keyLink(e, signer, height)?.successor === successor)) return true;
  }
  return false;
}

/** Appends `event` in a block of its own signed by `keys`, retrying when another block got there first. */
async function appendAlone(ledger: Ledger, event: LedgerEvent, keys: MemberKeys): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    const { block } = buildBlock(await ledger.head(), [event], keys.signing);
    try {
      await ledger.append([block]);
      return;
    } catch (err) {
      if (!isMedvaultError(err) || err.code !== 'LEDGER_CONFLICT' || attempt >= APPEND_TRIES) throw err;
    }
  }
}
