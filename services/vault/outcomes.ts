/**
 * Exactly-once grants, revocations, accesses and erasures. Like an upload (vault.ts #anchorUpload),
 * a grant or revocation whose anchor's outcome is unknown (LEDGER_OUTCOME_UNKNOWN:
 * the etcd ledger sent the append and got no answer; it may still commit) is
 * never treated as failed nor as done: its event is kept as a pending change,
 * the client gets OUTCOME_PENDING, and the ledger settles it.
 *
 * - A grant takes effect only once its acl.granted is found on the ledger; if
 *   the ledger moves past the height it was tried at without it, it is dropped
 *   (the client may grant again).
 * - A revocation takes effect at once, before the outcome is known (fail
 *   closed: the reader is not served while it is unsure), and the ledger must
 *   come to say it: found, it is done; lost, it is anchored again.
 * - An access (record.accessed) is not served while its anchor is unsure; if the
 *   ledger turns out to hold it, it is indexed in the record's trail (an access
 *   recorded but not served: the trail over-reports, never under-reports); lost,
 *   nothing is left.
 * - An erasure's filing (erasure.filed) is kept as a request in state `filing`: found,
 *   it is scheduled (and run once due); lost, it is filed again (the DPO asked for it).
 *   Its cancellation (erasure.cancelled) takes effect at once, like a revocation; lost,
 *   it is anchored again. A tombstone (record.erased) whose outcome is unknown holds its
 *   erasure until it is settled: found, it is indexed and reused; lost, the erasure
 *   anchors it when it runs again (never twice: it is not tried while pending).
 *
 * So the ledger never holds a grant the node does not apply, and the node
 * never keeps serving a reader whose revocation the ledger may hold.
 */
import { blockHash, eventsTree } from '../../anchor/block.ts';
import { canonicalJson, type LedgerEvent } from '../../anchor/events.ts';
import type { Ledger } from '../../anchor/ledger.ts';
import { makeReceipt, type Receipt } from '../../anchor/receipt.ts';
import { fail, isMedvaultError, type MedvaultError } from '../../errors.ts';
import { logger } from '../../log.ts';
import { newId, type VaultCore } from './core.ts';
import type { PendingChangeRow } from './metadata.ts';

export type ChangeKind = PendingChangeRow['kind'];

/** Kinds about an erasure request (the change's `recordId` holds the request id), not a record. */
const ABOUT_REQUEST: ReadonlySet<ChangeKind> = new Set(['erasure', 'cancel']);
export const isErasureChange = (kind: ChangeKind): boolean => ABOUT_REQUEST.has(kind) || kind === 'tombstone';

/** What the vault does with a pending change once the ledger settled it. */
export interface ChangeHandlers {
  /** Its event is on the ledger (`receipt`): apply it (a grant) or note it (a revocation). */
  landed(change: PendingChangeRow, event: LedgerEvent, receipt: Receipt): Promise<void>;
  /** Its event can no longer land: drop it (a grant) or anchor it again (a revocation). */
  lost(change: PendingChangeRow, event: LedgerEvent): Promise<void>;
}

/**
 * Anchors a change's event. An unknown outcome is kept as a pending change (with
 * what `onUnknown` writes, in the same transaction: a revocation takes effect at once)
 * and answered OUTCOME_PENDING naming the record (or the erasure request: `id`); any
 * other failure is thrown as it is.
 */
export async function anchorChange(
  core: VaultCore,
  kind: ChangeKind,
  event: LedgerEvent,
  onUnknown?: () => void,
  id: string = event.recordId as string,
): Promise<Receipt> {
  try {
    return await core.anchor(event);
  } catch (err) {
    if (!isMedvaultError(err, 'LEDGER_OUTCOME_UNKNOWN')) throw err;
    core.m.transaction(() => {
      onUnknown?.();
      keepPending(core, kind, id, event, err);
    });
    const about = ABOUT_REQUEST.has(kind) ? 'requestId' : kind === 'rotation' ? 'memberId' : 'recordId';
    const what = { requestId: 'erasure request', memberId: 'member', recordId: 'record' }[about];
    fail('OUTCOME_PENDING', `the ${kind} on ${what} ${id} (the ledger settles it)`, { info: { [about]: id } });
  }
}

/**
 * Anchors again a change the ledger lost that is in effect here (a revocation, an
 * erasure's filing or cancellation: the ledger must come to say it). `onAnchored` keeps
 * its receipt; an unknown outcome is pending again; any other failure keeps the change
 * to be tried at the next settling.
 */
export async function anchorAgain(
  core: VaultCore,
  change: PendingChangeRow,
  event: LedgerEvent,
  onAnchored: (receipt: Receipt) => void,
): Promise<void> {
  try {
    onAnchored(await anchorChange(core, change.kind, { ...event, at: core.now() }, undefined, change.recordId));
  } catch (err) {
    if (isMedvaultError(err, 'OUTCOME_PENDING')) return;
    core.m.addPendingChange({ ...change, id: newId(), settlePrev: null }); // past its height: lost again, retried
    logger.warn(
      { id: change.recordId, kind: change.kind, code: isMedvaultError(err) ? err.code : 'INTERNAL' },
      'a lost change not yet anchored again; tried at the next settling',
    );
  }
}

function keepPending(core: VaultCore, kind: ChangeKind, id: string, event: LedgerEvent, err: MedvaultError): void {
  const info = err.info ?? {};
  core.m.addPendingChange({
    id: newId(),
    recordId: id,
    kind,
    event: canonicalJson(event),
    settleAfter: Number(info.from ?? 0),
    settlePrev: typeof info.prev === 'string' ? info.prev : null,
    createdAt: core.now(),
  });
  logger.warn({ id, kind }, 'the anchoring outcome is unknown: kept pending');
}

/**
 * Settles pending changes against the ledger up to `head`: each found is `landed`; each that
 * can no longer land (the ledger holds a block at its height without it, or another block
 * below it than the one it extended) is `lost`; the rest wait. Returns how many wait.
 */
export async function settleChanges(core: VaultCore, handlers: ChangeHandlers, head: number): Promise<number> {
  const pending = core.m.pendingChanges();
  if (pending.length === 0) return 0;
  const wanted = new Map(pending.map((c) => [c.event, c]));
  const found = new Map<string, Receipt>();
  const from = Math.min(...pending.map((c) => c.settleAfter));
  for await (const block of core.ledger.blocks(from)) {
    if (block.header.height > head) break;
    const hits = block.events.flatMap((event, i) => {
      const json = canonicalJson(event);
      return wanted.has(json) && !found.has(json) ? [{ json, i }] : [];
    });
    if (hits.length === 0) continue;
    const tree = eventsTree(block.events);
    for (const { json, i } of hits) found.set(json, makeReceipt(block, tree, i));
  }
  let waiting = 0;
  for (const change of pending) {
    const event = JSON.parse(change.event) as LedgerEvent;
    const receipt = found.get(change.event);
    // An erasure's changes under its request's lock (Erasures), the rest under their record's.
    await core.locked(ABOUT_REQUEST.has(change.kind) ? `erasure:${change.recordId}` : change.recordId, async () => {
      if (receipt) {
        await handlers.landed(change, event, receipt);
        core.m.deletePendingChange(change.id);
        logger.warn({ id: change.recordId, kind: change.kind }, 'pending change completed: it was anchored');
      } else if (head >= change.settleAfter || (await cannotLand(core.ledger, change, head))) {
        core.m.deletePendingChange(change.id);
        await handlers.lost(change, event);
      } else {
        waiting++;
      }
    });
  }
  return waiting;
}

/**
 * Whether an append whose outcome was unknown can no longer land: it extended block
 * `settlePrev` at settleAfter - 1 (a compare-and-swap on that head), and another block
 * stands there (an upload's or a change's; the ledger at height `head`).
 */
export async function cannotLand(
  ledger: Ledger,
  pending: { settleAfter: number | null; settlePrev: string | null },
  head: number,
): Promise<boolean> {
  const at = (pending.settleAfter as number) - 1;
  if (pending.settlePrev === null || at < 0 || head < at) return false;
  const there = await ledger.get(at);
  return there !== null && blockHash(there.header) !== pending.settlePrev;
}
