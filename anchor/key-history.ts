/**
 * A node key history as verifiers take it: the receipts of node.key events
 * (anchor/trusted-keys.ts says what they mean), from a node's GET /v1/node
 * (`keyHistory`) or a file, followed from the ids a verifier trusts.
 */
import { check, fail, isMedvaultError } from '../errors.ts';
import { verifyReceipt } from './receipt.ts';
import { keyLink, TrustedKeys } from './trusted-keys.ts';

/**
 * The trusted ids followed through `history`: receipts of node.key events, in any order.
 * RECEIPT_INVALID when one does not verify or is not a hand-over.
 */
export function followHistory(ids: Iterable<string>, history: readonly unknown[]): TrustedKeys {
  const trusted = new TrustedKeys(ids);
  const links = history.map((receipt, i) => {
    try {
      const verified = verifyReceipt(receipt);
      const link = keyLink(verified.event, verified.signer, verified.height);
      if (!link) fail('RECEIPT_INVALID', 'not a node key hand-over signed by the key it replaces');
      return link;
    } catch (err) {
      if (isMedvaultError(err)) fail('RECEIPT_INVALID', `key history entry ${i}: ${err.message}`);
      throw err;
    }
  });
  trusted.follow(links);
  return trusted;
}

/** Throws INVALID_ARGUMENT unless `value` is a key history: a list of receipts (or a node's GET /v1/node answer). */
export function historyOf(value: unknown): unknown[] {
  const list = Array.isArray(value) ? value : (value as { keyHistory?: unknown } | null)?.keyHistory;
  check(Array.isArray(list), 'INVALID_ARGUMENT', 'a key history is a JSON list of node.key receipts');
  return list;
}
