/**
 * The shapes the API sends and the SDK reads: members, records, reviews,
 * erasure requests and sweep reports. The vault's metadata rows are these
 * shapes (services/vault/metadata.ts), so the server and the SDK share one
 * definition without the SDK importing the server.
 */
import type { Receipt } from '../../anchor/receipt.ts';
import type { Role } from '../../formats.ts';

export type { Role };

/** GET /v1/node: the node's key id and key, its ledger, and the peers it knows. */
export interface NodeInfo {
  id: string;
  signingKey: string;
  ledger: string;
  height: number | null;
  peers?: string[];
  /** The receipts of node key hand-overs (node.key), earliest first (anchor/trusted-keys.ts). */
  keyHistory?: Receipt[];
}

export interface MemberRow {
  id: string;
  name: string;
  role: Role;
  signingKey: string;
  /** The id of the key it signs with now: its `id` until it rotates its keys (key.rotated). */
  keyId: string;
  recipient: string;
  /** The node a remote member belongs to (its requests come forwarded by that node); null: this node's own. */
  node: string | null;
  addedAt: number;
  removedAt: number | null;
  /** May open records by break-glass: a capability an admin gives (anchored as member.capability). */
  emergencyAccess: boolean;
}

/** A node of the consortium as the ledger says (services/vault/consortium-index.ts). */
export interface ConsortiumNode {
  id: string;
  /** removed: by the votes of a majority of the other joined nodes (node.removal). */
  state: 'invited' | 'joined' | 'left' | 'removed';
  /** The node that invited it (null for the founder). */
  invitedBy: string | null;
  /** SHA-256 of the invite handed over (services/protocol/invites.ts inviteDigest). */
  invite: string | null;
  /** Base64 Ed25519 key (its id is the fingerprint) and age recipient, once joined. */
  signingKey: string | null;
  recipient: string | null;
  url: string | null;
  /** SHA-256 of the TLS certificate it serves with (services/protocol/tls.ts); null: no TLS. */
  tls: string | null;
  since: number;
}

/** A record as a search lists it: the view without its receipt (GET /v1/records/:id has it). */
export type RecordSummary = Omit<RecordView, 'receipt'>;

/** What GET /v1/records answers: a page of records, newest first, and the cursor of the next page. */
export interface RecordPage {
  records: RecordSummary[];
  /** Give it as `cursor` for the next page; null on the last page. */
  next: string | null;
}

/** What a member may see of a record. */
export interface RecordView {
  id: string;
  subject: string;
  uploader: string;
  state: 'active' | 'erased';
  ciphertextHash: string;
  size: number;
  createdAt: number;
  erasedAt: number | null;
  /** The live grants: only to the uploader and DPOs. */
  grants?: Array<{ reader: string; purpose: string; expiresAt: number }>;
  /** The receipt of the event that fixed the current ciphertext (record.created or record.reencrypted). */
  receipt: Receipt;
}

export interface ReviewRow {
  id: string;
  recordId: string;
  reader: string;
  reason: string | null;
  salt: string | null;
  at: number;
  reviewedBy: string | null;
  reviewedAt: number | null;
  outcome: string | null;
}

/** `filing`: its erasure.filed's outcome is not known yet (the ledger settles it). */
export type ErasureState = 'filing' | 'scheduled' | 'executing' | 'done' | 'cancelled';

export interface ErasureRow {
  id: string;
  scope: 'subject' | 'record';
  target: string;
  filedBy: string;
  filedAt: number;
  state: ErasureState;
  certificate: string | null;
  /** When a scheduled erasure runs (the end of its cancel window). */
  executeAt: number;
  cancelledBy: string | null;
  cancelledAt: number | null;
  /** JSON: salted hashes of the erased headers' tokens, for the sweep (see services/vault/sweep.ts). */
  probes: string | null;
  /** The node that filed it, when another node ordered this one to erase its part; null: filed here. */
  origin: string | null;
}

export interface Finding {
  where: string;
  what: string;
  count: number;
}

export interface SweepReport {
  requestId: string;
  records: number;
  /** Every place looked at, so "nothing found" says where. */
  checked: string[];
  findings: Finding[];
}

/** A backup key as the node lists it (services/vault/backup.ts): no secret. */
export interface BackupKey {
  id: string;
  recipient: string;
  createdAt: number;
  /** When it is destroyed: every backup made with it becomes unreadable then. */
  expiresAt: number;
}

/** A backup's manifest.json. */
export interface BackupManifest {
  v: 1;
  type: 'medvault.backup';
  node: string;
  takenAt: number;
  /** The ledger's head when the backup was taken: a restore re-applies erasures anchored after it. */
  ledgerHeight: number | null;
  backupKey: { id: string; expiresAt: number };
  /** SHA-256 (hex) of every file of the backup but this manifest, by its path in the backup. */
  files: Record<string, string>;
}
