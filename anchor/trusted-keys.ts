/**
 * Trusted node keys: which node keys a verifier trusts, and for which blocks.
 *
 * A node's id is the fingerprint of the key it signs blocks with. When a node
 * replaces that key (`medvault node rotate-key`), it anchors a node.key event
 * in a block signed by its old key, naming the new key and carrying the new
 * key's signature of NODE_KEY_LABEL || node || "\n" || successor || "\n" ||
 * recipient (hex): the old key hands over, the new key accepts. From the
 * block after it, the new key signs and the old one signs nothing.
 *
 * A verifier that trusts some node keys (an auditor's pinned ids, or the ids a
 * node names today) follows the receipts of those events, its key history:
 * - forward: a link from a trusted key, in a block that key signed at a height
 *   it may sign, makes the successor trusted for the blocks after it, and the
 *   old key for the blocks up to it only;
 * - backward: a link into a trusted key (whose acceptance signature it holds)
 *   makes the old key trusted for the blocks up to it.
 * So a receipt signed before a rotation verifies against today's ids, and one
 * signed after it against ids pinned before; a retired key's signature on a
 * later block does not verify. verifier/medvault_verify.py follows the same
 * rules; anchor/key-history.ts reads a history from its receipts.
 */
import { keyFingerprint, verifySignature } from '../crypto/ed25519.ts';
import type { LedgerEvent } from './events.ts';

export const NODE_KEY_LABEL = 'medvault-node-key-v1\n';

/** What the new key signs to accept the hand-over from `node` (its old id). */
export function nodeKeyMessage(node: string, successor: string, recipientHex: string): Uint8Array {
  return Buffer.from(`${NODE_KEY_LABEL}${node}\n${successor}\n${recipientHex}`, 'utf8');
}

/** A hand-over as the ledger holds it: `node`'s key replaced by `successor`'s in the block at `height`. */
export interface KeyLink {
  node: string;
  successor: string;
  height: number;
}

/**
 * The hand-over a node.key event in a block signed by `signer` at `height` makes, or null when
 * it makes none: the block is signed by the key handing over, the successor is the new key's
 * fingerprint, and the new key's acceptance verifies.
 */
export function keyLink(event: LedgerEvent, signer: string, height: number): KeyLink | null {
  if (event.type !== 'node.key' || event.node !== signer || event.successor === signer) return null;
  const key = Buffer.from(event.signingKey as string, 'hex');
  if (key.length !== 32 || keyFingerprint(key) !== event.successor) return null;
  const message = nodeKeyMessage(signer, event.successor as string, event.recipient as string);
  if (!verifySignature(key, message, Buffer.from(event.proof as string, 'hex'))) return null;
  return { node: signer, successor: event.successor as string, height };
}

/** The key ids a verifier trusts and the heights each may sign blocks at. */
export class TrustedKeys {
  /** By key id: the lowest and highest height it signs at, and the first trusted id it descends from. */
  readonly #keys = new Map<string, { from: number; until: number; root: string }>();

  constructor(ids: Iterable<string> = []) {
    for (const id of ids) this.#keys.set(id, { from: 0, until: Number.POSITIVE_INFINITY, root: id });
  }

  /** `trusted` as given to a verifier (ids, or keys already followed through their history). */
  static of(trusted: Iterable<string> | TrustedKeys): TrustedKeys {
    return trusted instanceof TrustedKeys ? trusted : new TrustedKeys(trusted);
  }

  /** Follows `links` (module comment), earliest first, until nothing changes: a key hands over once. */
  follow(links: readonly KeyLink[]): void {
    const ordered = [...links].sort((x, y) => x.height - y.height);
    let changed = true;
    while (changed) {
      changed = false;
      for (const link of ordered) changed = this.#followOne(link) || changed;
    }
  }

  #followOne({ node, successor, height }: KeyLink): boolean {
    const old = this.#keys.get(node);
    const next = this.#keys.get(successor);
    if (!old && !next) return false;
    if (!old && next) {
      // Backward: the trusted successor accepted the hand-over, so the old key was that node's.
      this.#keys.set(node, { from: 0, until: height, root: next.root });
      next.from = Math.max(next.from, height + 1);
      return true;
    }
    if (!old || !this.#signs(old, height)) return false;
    let changed = old.until !== height;
    old.until = height; // forward: the old key signs nothing after its hand-over
    if (!next) {
      this.#keys.set(successor, { from: height + 1, until: Number.POSITIVE_INFINITY, root: old.root });
      return true;
    }
    if (next.from <= height) {
      next.from = height + 1;
      changed = true;
    }
    return changed;
  }

  #signs(key: { from: number; until: number }, height: number): boolean {
    return key.from <= height && height <= key.until;
  }

  /** True when key `id` is trusted, and (with `height`) may sign the block at that height. */
  allows(id: string, height?: number): boolean {
    const key = this.#keys.get(id);
    return key !== undefined && (height === undefined || this.#signs(key, height));
  }

  /** The trusted id key `id` descends from (the same node under its first trusted key), or undefined. */
  nodeOf(id: string): string | undefined {
    return this.#keys.get(id)?.root;
  }

  /** Every key id trusted, for messages and lists. */
  ids(): string[] {
    return [...this.#keys.keys()];
  }
}

/** `trusted` as verifiers take it: undefined (trust any signer), ids, or followed keys. */
export type Trust = Iterable<string> | TrustedKeys;

/** The same, normalised. */
export function trustOf(trusted: Trust | undefined): TrustedKeys | undefined {
  return trusted === undefined ? undefined : TrustedKeys.of(trusted);
}
