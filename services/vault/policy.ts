/**
 * Who may do what: one table of roles per action, plus the per-record rules
 * (an uploader manages only its own records; fetching needs a live grant).
 * The vault calls `authorize` before it changes or reveals anything, so the
 * HTTP API, the SDK and the tests all meet the same policy.
 */
import { fail } from '../../errors.ts';
import { ROLES, type Role } from '../../formats.ts';
import type { MemberRow, RecordRow } from './metadata.ts';

export type Action =
  | 'member.list'
  | 'member.add'
  | 'member.remove'
  | 'member.capability'
  | 'custodian'
  | 'upload'
  | 'record.read'
  | 'fetch'
  | 'grant'
  | 'revoke'
  | 'emergency'
  | 'audit'
  | 'erase'
  | 'review'
  | 'checkpoint'
  | 'checkpoint.read'
  | 'ledger.read'
  | 'backup'
  | 'consortium.invite'
  | 'consortium.leave'
  | 'consortium.remove'
  | 'record.search'
  | 'subject.report'
  | 'subject-key';

const ALL = ROLES;

/** The roles that may attempt each action at all. */
export const ACTION_ROLES: Record<Action, readonly Role[]> = {
  'member.list': ALL,
  'member.add': ['admin'],
  'member.remove': ['admin'],
  // Giving or withdrawing break-glass: an admin, never to itself (it is not a clinical role).
  'member.capability': ['admin'],
  custodian: ['uploader'],
  upload: ['uploader'],
  // Per record, below: its uploader, a live grantee, or a DPO.
  'record.read': ALL,
  // Per record: a live grant, whatever the role.
  fetch: ALL,
  grant: ['uploader'],
  revoke: ['uploader'],
  // Break-glass: only the clinical roles, and only a member of this node an admin gave the capability
  // (below). An insurer or any other plain reader is never given it; an admin or a DPO cannot hold it.
  emergency: ['uploader', 'reader'],
  audit: ['uploader', 'dpo'],
  erase: ['dpo'],
  review: ['dpo'],
  // Making a ledger checkpoint asks every peer to walk the chain: not for everyone.
  checkpoint: ['admin', 'dpo'],
  'checkpoint.read': ALL,
  // Reading whole blocks (the console's ledger explorer): every event of the consortium, who
  // accessed what, when. Those who answer for the ledger; a member checks its own receipts.
  'ledger.read': ['admin', 'dpo'],
  // Taking a backup of the node (its secrets sealed under a rotating backup key): its operator.
  backup: ['admin'],
  // Searching records: an uploader its own, a reader those granted to it (live), a DPO all
  // (vault.ts searchRecords narrows each); an admin manages members, not records.
  'record.search': ['uploader', 'reader', 'dpo'],
  // A subject access report (GDPR Art. 15): the DPO answers it.
  'subject.report': ['dpo'],
  // Inviting another node into the consortium: an admin of a member node.
  'consortium.invite': ['admin'],
  'consortium.leave': ['admin'],
  // Voting to remove another node (node.removal): an admin of a joined node.
  'consortium.remove': ['admin'],
  // The consortium's subject key, sealed to the member: those who turn patient ids into
  // subjects on their own machines (uploading, filing erasures, administering); never a reader.
  'subject-key': ['uploader', 'dpo', 'admin'],
};

export interface RecordFacts {
  record: RecordRow;
  /** Whether the actor holds a live grant on the record. */
  liveGrant: boolean;
}

/**
 * Throws FORBIDDEN unless `actor` may replace `member`'s keys: its own, or (a key that was
 * lost) an admin's for any member of this node.
 */
export function authorizeKeyRotation(actor: MemberRow, member: MemberRow): void {
  if (actor.removedAt !== null) fail('FORBIDDEN', `member ${actor.id} was removed`);
  if (actor.id !== member.id && actor.role !== 'admin') {
    fail('FORBIDDEN', "a member rotates its own keys; an admin another member's");
  }
}

/** Throws FORBIDDEN or NO_GRANT unless `actor` may do `action` (on `on`, when given). */
export function authorize(actor: MemberRow, action: Action, on?: RecordFacts): void {
  if (actor.removedAt !== null) fail('FORBIDDEN', `member ${actor.id} was removed`);
  if (!ACTION_ROLES[action].includes(actor.role)) {
    fail('FORBIDDEN', `${/^[aeiou]/.test(actor.role) ? 'an' : 'a'} ${actor.role} may not ${action}`);
  }
  if (action === 'emergency') {
    if (actor.node !== null) fail('FORBIDDEN', 'break-glass is for members of the node that holds the record');
    if (!actor.emergencyAccess) fail('FORBIDDEN', 'this member has not been given break-glass access by an admin');
  }
  if (!on) return;
  const own = on.record.uploader === actor.id;
  switch (action) {
    case 'record.read':
      if (!own && !on.liveGrant && actor.role !== 'dpo') fail('NO_GRANT');
      return;
    case 'fetch':
      if (!on.liveGrant) fail('NO_GRANT');
      return;
    case 'grant':
    case 'revoke':
      if (!own) fail('FORBIDDEN', 'only the uploader of a record manages its readers');
      return;
    case 'audit':
      if (!own && actor.role !== 'dpo') fail('FORBIDDEN', "only the record's uploader or a DPO audits it");
      return;
    default:
      return;
  }
}
