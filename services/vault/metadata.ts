/**
 * The node's metadata store: members, records (with their current header),
 * grants, an index of where each record's events sit on the ledger, the
 * break-glass review queue and erasure requests. SQLite through `node:sqlite`
 * (built into Node >= 22), WAL, `secure_delete` so erased rows are
 * overwritten rather than left in free pages, and numbered migrations.
 *
 * It holds nothing the ledger should hold instead: events live on the
 * ledger; `anchors` only says at which height and leaf to find them.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type SQLInputValue, type StatementSync } from 'node:sqlite';
import { LRUCache } from 'lru-cache';
import type { Receipt } from '../../anchor/receipt.ts';
import { keyFingerprint } from '../../crypto/ed25519.ts';
import { storageFailureAs } from '../../errors.ts';

import { ROLES_SQL } from '../../formats.ts';
import type { ConsortiumNode, ErasureRow, ErasureState, MemberRow, ReviewRow, Role } from '../protocol/views.ts';

export type { ErasureRow, ErasureState, MemberRow, ReviewRow, Role };
export type ConsortiumNodeRow = ConsortiumNode;

/** A member as it is added: its key id is its signing key's fingerprint, kept by the store. */
export type NewMember = Omit<MemberRow, 'removedAt' | 'emergencyAccess' | 'keyId'>;

/** What the ledger index (services/vault/consortium-index.ts) found in a block. */
export type LedgerFinding =
  | { kind: 'location'; recordId: string; node: string; height: number }
  | { kind: 'member'; member: NewMember }
  | { kind: 'removal'; id: string; node: string; at: number }
  | { kind: 'rotation'; id: string; node: string; signingKey: string; recipient: string; at: number }
  | { kind: 'node'; node: ConsortiumNodeRow }
  /** A joined node's vote to remove another (node.removal); `voter` null: the node's votes are void (invited again). */
  | { kind: 'vote'; node: string; voter: string | null; at: number }
  /** A node's key handed over (node.key): its new keys (a member row's forms), and the receipt. */
  | {
      kind: 'nodeKey';
      node: string;
      successor: string;
      height: number;
      signingKey: string;
      recipient: string;
      receipt: Receipt;
    };

export type RecordSummaryRow = Pick<
  RecordRow,
  'id' | 'subject' | 'uploader' | 'state' | 'ciphertextHash' | 'size' | 'createdAt' | 'erasedAt'
>;

/** What a record search asks for (services/vault/vault.ts searchRecords): every field narrows it. */
export interface RecordQuery {
  subject?: string;
  uploader?: string;
  /** Records granted to this member (with `liveAt`: grants live at that time only). */
  reader?: string;
  liveAt?: number;
  purpose?: string;
  /** Created at or after / before, ms. */
  since?: number;
  until?: number;
  state?: 'active' | 'erased' | 'pending-erasure';
  /** The last record of the previous page: the next page starts after it (newest first). */
  after?: { createdAt: number; id: string };
  limit: number;
}

/** A change whose anchoring outcome is not known yet (services/vault/outcomes.ts). */
export interface PendingChangeRow {
  id: string;
  /** The record it is about; for an erasure's filing or cancellation, the request's id; for a key rotation, the member's. */
  recordId: string;
  kind: 'grant' | 'revoke' | 'access' | 'erasure' | 'cancel' | 'tombstone' | 'rotation';
  /** The event's canonical JSON, as appended. */
  event: string;
  /** The lowest height the append tried: once the ledger holds a block there without it, it never landed. */
  settleAfter: number;
  /** The hash of the block the append extended. */
  settlePrev: string | null;
  createdAt: number;
}

export type RecordState = 'pending' | 'active' | 'erased';

export interface RecordRow {
  id: string;
  subject: string;
  uploader: string;
  state: RecordState;
  ciphertextHash: string;
  size: number;
  blobRef: string | null;
  header: Uint8Array | null;
  createdAt: number;
  ledgerFrom: number;
  erasedAt: number | null;
  erasureId: string | null;
}

export interface GrantRow {
  recordId: string;
  reader: string;
  purpose: string;
  grantedBy: string;
  grantedAt: number;
  expiresAt: number;
  revokedAt: number | null;
  /** Set once the reader's stanza was dropped from the header after expiry. */
  droppedAt: number | null;
}

export interface AnchorRow {
  recordId: string;
  type: string;
  height: number;
  leaf: number;
  at: number;
}

export interface LedgerCheckpointRow {
  height: number;
  blockHash: string;
  /** JSON of the checkpoint (anchor/checkpoint.ts). */
  checkpoint: string;
  confirmedAt: number;
}

const MIGRATIONS = [
  `CREATE TABLE members (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL UNIQUE,
     role TEXT NOT NULL CHECK (role IN (${ROLES_SQL})),
     signing_key TEXT NOT NULL UNIQUE,
     recipient TEXT NOT NULL,
     added_at INTEGER NOT NULL,
     removed_at INTEGER
   ) STRICT;
   CREATE TABLE records (
     id TEXT PRIMARY KEY,
     subject TEXT NOT NULL,
     uploader TEXT NOT NULL,
     state TEXT NOT NULL CHECK (state IN ('pending', 'active', 'erased')),
     ciphertext_hash TEXT NOT NULL,
     size INTEGER NOT NULL,
     blob_ref TEXT,
     header BLOB,
     created_at INTEGER NOT NULL,
     ledger_from INTEGER NOT NULL,
     erased_at INTEGER,
     erasure_id TEXT
   ) STRICT;
   CREATE INDEX records_subject ON records (subject);
   CREATE INDEX records_blob ON records (blob_ref);
   CREATE TABLE grants (
     record_id TEXT NOT NULL REFERENCES records (id),
     reader TEXT NOT NULL,
     purpose TEXT NOT NULL,
     granted_by TEXT NOT NULL,
     granted_at INTEGER NOT NULL,
     expires_at INTEGER NOT NULL,
     revoked_at INTEGER,
     dropped_at INTEGER,
     PRIMARY KEY (record_id, reader)
   ) STRICT;
   CREATE INDEX grants_expiry ON grants (expires_at) WHERE revoked_at IS NULL AND dropped_at IS NULL;
   CREATE TABLE anchors (
     record_id TEXT NOT NULL,
     type TEXT NOT NULL,
     height INTEGER NOT NULL,
     leaf INTEGER NOT NULL,
     at INTEGER NOT NULL
   ) STRICT;
   CREATE INDEX anchors_record ON anchors (record_id, height, leaf);
   CREATE TABLE reviews (
     id TEXT PRIMARY KEY,
     record_id TEXT NOT NULL,
     reader TEXT NOT NULL,
     reason TEXT,
     salt TEXT,
     at INTEGER NOT NULL,
     reviewed_by TEXT,
     reviewed_at INTEGER,
     outcome TEXT
   ) STRICT;
   CREATE TABLE erasures (
     id TEXT PRIMARY KEY,
     scope TEXT NOT NULL CHECK (scope IN ('subject', 'record')),
     target TEXT NOT NULL,
     filed_by TEXT NOT NULL,
     filed_at INTEGER NOT NULL,
     state TEXT NOT NULL CHECK (state IN ('executing', 'done')),
     certificate TEXT
   ) STRICT;
   CREATE TABLE erased_blobs (
     erasure_id TEXT NOT NULL,
     record_id TEXT NOT NULL,
     ref TEXT NOT NULL,
     removed INTEGER NOT NULL,
     confirmed TEXT NOT NULL
   ) STRICT;`,
  // 2: erasure requests get a cancel window (scheduled, cancelled) and sweep probes.
  `CREATE TABLE erasures_v2 (
     id TEXT PRIMARY KEY,
     scope TEXT NOT NULL CHECK (scope IN ('subject', 'record')),
     target TEXT NOT NULL,
     filed_by TEXT NOT NULL,
     filed_at INTEGER NOT NULL,
     state TEXT NOT NULL CHECK (state IN ('scheduled', 'executing', 'done', 'cancelled')),
     certificate TEXT,
     execute_at INTEGER NOT NULL,
     cancelled_by TEXT,
     cancelled_at INTEGER,
     probes TEXT
   ) STRICT;
   INSERT INTO erasures_v2 (id, scope, target, filed_by, filed_at, state, certificate, execute_at)
     SELECT id, scope, target, filed_by, filed_at, state, certificate, filed_at FROM erasures;
   DROP TABLE erasures;
   ALTER TABLE erasures_v2 RENAME TO erasures;
   CREATE INDEX erasures_due ON erasures (execute_at) WHERE state = 'scheduled';`,
  // 3: ledger checkpoints this node confirmed (see anchor/checkpoint.ts), with the signatures gathered.
  `CREATE TABLE ledger_checkpoints (
     height INTEGER PRIMARY KEY,
     block_hash TEXT NOT NULL,
     checkpoint TEXT NOT NULL,
     confirmed_at INTEGER NOT NULL
   ) STRICT;`,
  // 4: members of other nodes (readers granted here, whose fetches their own node forwards), and
  // which node holds each record, as the ledger's record.created events say (read up to next_height).
  `ALTER TABLE members ADD COLUMN node TEXT;
   CREATE TABLE record_locations (
     record_id TEXT PRIMARY KEY,
     node TEXT NOT NULL,
     height INTEGER NOT NULL
   ) STRICT;
   CREATE TABLE record_locator (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     next_height INTEGER NOT NULL
   ) STRICT;
   INSERT INTO record_locator (id, next_height) VALUES (1, 0);`,
  // 5: the ledger is also read for the consortium's member directory (member.added events that
  // carry public keys): read it again from the start once.
  `UPDATE record_locator SET next_height = 0;`,
  // 6: break-glass is a capability an admin gives to named members (none has it at first).
  `ALTER TABLE members ADD COLUMN emergency_access INTEGER NOT NULL DEFAULT 0 CHECK (emergency_access IN (0, 1));
   CREATE INDEX reviews_by_reader ON reviews (reader, at);
   CREATE INDEX grants_by_reader ON grants (reader);`,
  // 7: erasures ordered by another node (its id; NULL: filed here), which this node executes
  // for its own records of the subject and does not pass on.
  `ALTER TABLE erasures ADD COLUMN origin TEXT;`,
  // 8: uploads whose anchoring outcome is not known yet wait for the ledger to reach
  // settle_after before an unanchored one is rolled back; a client's idempotency key makes a
  // retried upload return the first one's record.
  `ALTER TABLE records ADD COLUMN settle_after INTEGER;
   ALTER TABLE records ADD COLUMN idempotency_key TEXT;
   CREATE UNIQUE INDEX records_idempotency ON records (uploader, idempotency_key) WHERE idempotency_key IS NOT NULL;`,
  // 9: the hash of the block an unknown append extended: once the ledger holds another block
  // at that height, the append can never land and the upload is settled without waiting.
  `ALTER TABLE records ADD COLUMN settle_prev TEXT;`,
  // 10: the consortium's nodes as the ledger says (services/vault/consortium.ts): invited by a
  // node of the consortium (the digest of the invite it handed over), joined with their keys
  // and URL, left.
  `CREATE TABLE consortium_nodes (
     id TEXT PRIMARY KEY,
     state TEXT NOT NULL CHECK (state IN ('invited', 'joined', 'left')),
     invited_by TEXT,
     invite TEXT,
     signing_key TEXT,
     recipient TEXT,
     url TEXT,
     since INTEGER NOT NULL
   ) STRICT;`,
  // 11: the fingerprint of the TLS certificate a node serves with, which its peers pin.
  `ALTER TABLE consortium_nodes ADD COLUMN tls TEXT;`,
  // 12: a grant or revocation whose anchor's outcome is not known yet (services/vault/outcomes.ts):
  // its event, and the height and head its append tried, until the ledger settles it.
  `CREATE INDEX records_by_time ON records (created_at, id);
   CREATE INDEX records_by_uploader ON records (uploader, created_at);
   CREATE TABLE pending_changes (
     id TEXT PRIMARY KEY,
     record_id TEXT NOT NULL,
     kind TEXT NOT NULL CHECK (kind IN ('grant', 'revoke')),
     event TEXT NOT NULL,
     settle_after INTEGER NOT NULL,
     settle_prev TEXT,
     created_at INTEGER NOT NULL
   ) STRICT;`,
  // 13: an access (record.accessed) whose anchor's outcome is unknown is kept pending too.
  `CREATE TABLE pending_changes_13 (
     id TEXT PRIMARY KEY,
     record_id TEXT NOT NULL,
     kind TEXT NOT NULL CHECK (kind IN ('grant', 'revoke', 'access')),
     event TEXT NOT NULL,
     settle_after INTEGER NOT NULL,
     settle_prev TEXT,
     created_at INTEGER NOT NULL
   ) STRICT;
   INSERT INTO pending_changes_13 SELECT * FROM pending_changes;
   DROP TABLE pending_changes;
   ALTER TABLE pending_changes_13 RENAME TO pending_changes;`,
  // 14: erasures settle unknown outcomes too: a filing (erasure.filed) kept as a request in
  // state 'filing', a cancellation (erasure.cancelled), a tombstone (record.erased).
  `CREATE TABLE pending_changes_14 (
     id TEXT PRIMARY KEY,
     record_id TEXT NOT NULL,
     kind TEXT NOT NULL CHECK (kind IN ('grant', 'revoke', 'access', 'erasure', 'cancel', 'tombstone')),
     event TEXT NOT NULL,
     settle_after INTEGER NOT NULL,
     settle_prev TEXT,
     created_at INTEGER NOT NULL
   ) STRICT;
   INSERT INTO pending_changes_14 SELECT * FROM pending_changes;
   DROP TABLE pending_changes;
   ALTER TABLE pending_changes_14 RENAME TO pending_changes;
   CREATE TABLE erasures_14 (
     id TEXT PRIMARY KEY,
     scope TEXT NOT NULL CHECK (scope IN ('subject', 'record')),
     target TEXT NOT NULL,
     filed_by TEXT NOT NULL,
     filed_at INTEGER NOT NULL,
     state TEXT NOT NULL CHECK (state IN ('filing', 'scheduled', 'executing', 'done', 'cancelled')),
     certificate TEXT,
     execute_at INTEGER NOT NULL,
     cancelled_by TEXT,
     cancelled_at INTEGER,
     probes TEXT,
     origin TEXT
   ) STRICT;
   INSERT INTO erasures_14 (id, scope, target, filed_by, filed_at, state, certificate, execute_at, cancelled_by,
       cancelled_at, probes, origin)
     SELECT id, scope, target, filed_by, filed_at, state, certificate, execute_at, cancelled_by, cancelled_at, probes,
       origin FROM erasures;
   DROP TABLE erasures;
   ALTER TABLE erasures_14 RENAME TO erasures;
   CREATE INDEX erasures_due ON erasures (execute_at) WHERE state = 'scheduled';`,
  // 15: a record's anchors of one type found without reading its accesses (a record read
  // 100,000 times has 100,000 access anchors; a fetch wants only its creation). The old index
  // goes: SQLite would keep scanning it for its order (height, leaf) instead of seeking by type.
  `DROP INDEX anchors_record;
   CREATE INDEX anchors_record_type ON anchors (record_id, type, height, leaf);`,
  // 16: member key rotation (key.rotated). A member's id stays its first key's fingerprint; the
  // key it signs with now is key_id (requests name it). Every key a member held and replaced
  // is kept, so no key is ever enrolled twice; a member whose headers are still to be
  // rewrapped to its new recipient is queued until they all are (a crash finishes at open).
  `ALTER TABLE members ADD COLUMN key_id TEXT;
   UPDATE members SET key_id = id;
   CREATE UNIQUE INDEX members_key_id ON members (key_id);
   CREATE TABLE retired_keys (
     key_id TEXT PRIMARY KEY,
     member_id TEXT NOT NULL,
     retired_at INTEGER NOT NULL
   ) STRICT;
   CREATE TABLE key_rewraps (
     member_id TEXT PRIMARY KEY,
     since INTEGER NOT NULL
   ) STRICT;
   CREATE TABLE pending_changes_16 (
     id TEXT PRIMARY KEY,
     record_id TEXT NOT NULL,
     kind TEXT NOT NULL CHECK (kind IN ('grant', 'revoke', 'access', 'erasure', 'cancel', 'tombstone', 'rotation')),
     event TEXT NOT NULL,
     settle_after INTEGER NOT NULL,
     settle_prev TEXT,
     created_at INTEGER NOT NULL
   ) STRICT;
   INSERT INTO pending_changes_16 SELECT * FROM pending_changes;
   DROP TABLE pending_changes;
   ALTER TABLE pending_changes_16 RENAME TO pending_changes;`,
  // 17: a node removed by the votes of a majority of the other joined nodes (node.removal), and
  // the votes counted so far (a vote read in one read of the ledger counts with those of later ones).
  `CREATE TABLE consortium_nodes_17 (
     id TEXT PRIMARY KEY,
     state TEXT NOT NULL CHECK (state IN ('invited', 'joined', 'left', 'removed')),
     invited_by TEXT,
     invite TEXT,
     signing_key TEXT,
     recipient TEXT,
     url TEXT,
     since INTEGER NOT NULL,
     tls TEXT
   ) STRICT;
   INSERT INTO consortium_nodes_17 (id, state, invited_by, invite, signing_key, recipient, url, since, tls)
     SELECT id, state, invited_by, invite, signing_key, recipient, url, since, tls FROM consortium_nodes;
   DROP TABLE consortium_nodes;
   ALTER TABLE consortium_nodes_17 RENAME TO consortium_nodes;
   CREATE TABLE node_votes (
     node TEXT NOT NULL,
     voter TEXT NOT NULL,
     at INTEGER NOT NULL,
     PRIMARY KEY (node, voter)
   ) STRICT;`,
  // 18: nodes that replaced their keys (node.key): the first hand-over of each key, and its receipt,
  // which verifiers follow (anchor/trusted-keys.ts).
  `CREATE TABLE node_keys (
     node TEXT PRIMARY KEY,
     successor TEXT NOT NULL UNIQUE,
     height INTEGER NOT NULL,
     receipt TEXT NOT NULL
   ) STRICT;`,
];

type Row = Record<string, SQLInputValue>;

/** snake_case column names to the camelCase fields of the row types. */
/** A member row with its flags as booleans (SQLite keeps them as 0 and 1). */
function memberRow(row: MemberRow | undefined): MemberRow | undefined {
  return row && { ...row, emergencyAccess: (row.emergencyAccess as unknown) === 1 };
}

/** Column names already converted: the set is small and fixed, and a fetch reads several rows. */
const CAMEL = new Map<string, string>();

function camel<T>(row: Row | undefined): T | undefined {
  if (!row) return undefined;
  const out: Record<string, unknown> = {};
  for (const key in row) {
    let name = CAMEL.get(key);
    if (name === undefined) {
      name = key.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
      CAMEL.set(key, name);
    }
    out[name] = row[key];
  }
  return out as T;
}

export class Metadata {
  readonly #db: DatabaseSync;
  readonly #statements = new Map<string, StatementSync>();
  /**
   * Member rows by `id:` and `key:` (every request looks its member up, an upload its readers
   * several times; members change rarely). Only rows as committed: emptied by any statement
   * that writes the members table, and never filled inside a transaction, whose reads may yet be
   * rolled back. This node's process is the database's only writer (node.lock). Rows are frozen:
   * a caller cannot change what the next one reads.
   */
  readonly #members = new LRUCache<string, MemberRow>({ max: 10_000 });
  readonly #group: Array<{ step: () => unknown; resolve: (value: unknown) => void; reject: (err: unknown) => void }> =
    [];

  constructor(path: string) {
    if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
    this.#db = new DatabaseSync(path);
    this.#db.exec(`PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA secure_delete = ON;
                   PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;`);
    this.#migrate();
  }

  #migrate(): void {
    const { user_version: version } = this.#db.prepare('PRAGMA user_version').get() as { user_version: number };
    for (let v = version; v < MIGRATIONS.length; v++) {
      this.transaction(() => {
        this.#db.exec(MIGRATIONS[v] as string);
        this.#db.exec(`PRAGMA user_version = ${v + 1}`);
      });
    }
  }

  /** Runs `step` in one transaction: all of its writes or none (inside another: part of that one). */
  transaction<T>(step: () => T): T {
    if (this.#db.isTransaction) return step();
    try {
      this.#db.exec('BEGIN IMMEDIATE');
      try {
        const result = step();
        this.#db.exec('COMMIT');
        return result;
      } catch (err) {
        // SQLite may have rolled back already (a full disk does): a second ROLLBACK would
        // throw and hide the real error.
        if (this.#db.isTransaction) this.#db.exec('ROLLBACK');
        throw err;
      }
    } catch (err) {
      throw storageFailureAs(err, "the metadata database's disk");
    }
  }

  /**
   * Runs `step` in a transaction shared with every other step queued in the same turn of the
   * event loop, and resolves once that transaction is committed: concurrent uploads and fetches
   * pay one commit (one WAL fsync, `synchronous = FULL` kept) between them instead of one each.
   * Each step runs in its own savepoint: one that throws is undone and rejected alone; a commit
   * that fails rejects every step of the group, and none of their writes is kept.
   */
  grouped<T>(step: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#group.push({ step, resolve: resolve as (value: unknown) => void, reject });
      if (this.#group.length === 1) setImmediate(() => this.#commitGroup());
    });
  }

  #commitGroup(): void {
    const group = this.#group.splice(0);
    const results: unknown[] = [];
    const failed = new Set<number>();
    try {
      this.#db.exec('BEGIN IMMEDIATE');
      for (const [i, entry] of group.entries()) {
        this.#db.exec('SAVEPOINT step');
        try {
          results[i] = entry.step();
          this.#db.exec('RELEASE step');
        } catch (err) {
          if (!this.#db.isTransaction) throw err; // SQLite undid the whole transaction (a full disk does)
          this.#db.exec('ROLLBACK TO step');
          this.#db.exec('RELEASE step');
          failed.add(i);
          entry.reject(storageFailureAs(err, "the metadata database's disk"));
        }
      }
      this.#db.exec('COMMIT');
    } catch (err) {
      try {
        if (this.#db.isOpen && this.#db.isTransaction) this.#db.exec('ROLLBACK');
      } catch {
        // the first error says what went wrong
      }
      const failure = storageFailureAs(err, "the metadata database's disk");
      for (const entry of group) entry.reject(failure);
      return;
    }
    for (const [i, entry] of group.entries()) if (!failed.has(i)) entry.resolve(results[i]);
  }

  /** Each query is compiled once and kept (the SQL texts are the fixed ones of this class). */
  #statement(sql: string): StatementSync {
    let statement = this.#statements.get(sql);
    if (!statement) {
      statement = this.#db.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }

  #one<T>(sql: string, ...params: SQLInputValue[]): T | undefined {
    return camel<T>(this.#statement(sql).get(...params) as Row | undefined);
  }

  #all<T>(sql: string, ...params: SQLInputValue[]): T[] {
    return (this.#statement(sql).all(...params) as Row[]).map((r) => camel<T>(r) as T);
  }

  #run(sql: string, ...params: SQLInputValue[]): number {
    if (/\bmembers\b/.test(sql)) this.#members.clear();
    try {
      return Number(this.#statement(sql).run(...params).changes);
    } catch (err) {
      throw storageFailureAs(err, "the metadata database's disk");
    }
  }

  // Members.

  /** Adds a member; with `ifAbsent`, nothing happens when its id, name or key is already here. */
  addMember(m: NewMember, options: { ifAbsent?: boolean } = {}): void {
    this.#run(
      `INSERT INTO members (id, name, role, signing_key, recipient, node, added_at, key_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)${
        options.ifAbsent ? ' ON CONFLICT DO NOTHING' : ''
      }`,
      m.id,
      m.name,
      m.role,
      m.signingKey,
      m.recipient,
      m.node,
      m.addedAt,
      keyFingerprint(Buffer.from(m.signingKey, 'base64')),
    );
  }

  member(id: string): MemberRow | undefined {
    return this.#memberWhere('id', id);
  }

  /** The member whose current signing key has this id (what a request names). */
  memberByKey(keyId: string): MemberRow | undefined {
    return this.#memberWhere('key', keyId);
  }

  #memberWhere(by: 'id' | 'key', value: string): MemberRow | undefined {
    const cached = this.#members.get(`${by}:${value}`);
    if (cached) return cached;
    const row = memberRow(
      this.#one(by === 'id' ? 'SELECT * FROM members WHERE id = ?' : 'SELECT * FROM members WHERE key_id = ?', value),
    );
    if (!row || this.#db.isTransaction) return row;
    Object.freeze(row);
    this.#members.set(`id:${row.id}`, row);
    this.#members.set(`key:${row.keyId}`, row);
    return row;
  }

  /** Whether a key with this id was ever enrolled here: a member's first, current or a replaced one. */
  keyEverUsed(keyId: string): boolean {
    return (
      this.#one(
        `SELECT 1 AS hit FROM members WHERE id = ?1 OR key_id = ?1
         UNION ALL SELECT 1 FROM retired_keys WHERE key_id = ?1 LIMIT 1`,
        keyId,
      ) !== undefined
    );
  }

  /**
   * Replaces a member's keys (its id stays): the previous key is retired for good and the
   * member queued for its headers to be rewrapped (keyRewraps). `node`: only a member of that
   * node (a rotation read from the ledger); false when no such active member has other keys.
   */
  rotateMemberKeys(id: string, keys: { signingKey: string; recipient: string }, at: number, node?: string): boolean {
    const member = this.member(id);
    if (!member || member.removedAt !== null || (node !== undefined && member.node !== node)) return false;
    const keyId = keyFingerprint(Buffer.from(keys.signingKey, 'base64'));
    if (member.keyId === keyId || this.keyEverUsed(keyId)) return false;
    this.#run('INSERT INTO retired_keys (key_id, member_id, retired_at) VALUES (?, ?, ?)', member.keyId, id, at);
    this.#run(
      'UPDATE members SET signing_key = ?, recipient = ?, key_id = ? WHERE id = ?',
      keys.signingKey,
      keys.recipient,
      keyId,
      id,
    );
    this.queueKeyRewrap(id, at);
    return true;
  }

  /** Queues member `id` for its headers to be rewrapped to its recipient (keyRewraps). */
  queueKeyRewrap(id: string, at: number): void {
    this.#run('INSERT INTO key_rewraps (member_id, since) VALUES (?, ?) ON CONFLICT DO NOTHING', id, at);
  }

  /** Members whose headers are still to be rewrapped to their new recipient. */
  keyRewraps(): string[] {
    return this.#all<{ memberId: string }>('SELECT member_id FROM key_rewraps ORDER BY since').map((r) => r.memberId);
  }

  keyRewrapQueued(memberId: string): boolean {
    return this.#one('SELECT 1 AS hit FROM key_rewraps WHERE member_id = ?', memberId) !== undefined;
  }

  keyRewrapDone(memberId: string): void {
    this.#run('DELETE FROM key_rewraps WHERE member_id = ?', memberId);
  }

  memberByName(name: string): MemberRow | undefined {
    return memberRow(this.#one('SELECT * FROM members WHERE name = ?', name));
  }

  members(): MemberRow[] {
    return this.#all<MemberRow>('SELECT * FROM members ORDER BY name').map((m) => memberRow(m) as MemberRow);
  }

  setEmergencyAccess(id: string, granted: boolean): void {
    this.#run('UPDATE members SET emergency_access = ? WHERE id = ?', granted ? 1 : 0, id);
  }

  renameMember(id: string, name: string): void {
    this.#run('UPDATE members SET name = ? WHERE id = ?', name, id);
  }

  removeMember(id: string, at: number): void {
    this.#run('UPDATE members SET removed_at = ? WHERE id = ? AND removed_at IS NULL', at, id);
  }

  // Where records are held (services/vault/consortium-index.ts).

  recordLocation(recordId: string): string | undefined {
    return this.#one<{ node: string }>('SELECT node FROM record_locations WHERE record_id = ?', recordId)?.node;
  }

  locatorNextHeight(): number {
    return (this.#one<{ nextHeight: number }>('SELECT next_height FROM record_locator') as { nextHeight: number })
      .nextHeight;
  }

  /**
   * Applies what was found in the ledger's blocks below `nextHeight` (services/vault/consortium-index.ts), in
   * ledger order, and that they were read: record locations, and members of other nodes (added
   * unless this node knows that key already; removed only when still of that node).
   */
  applyLedgerIndex(found: LedgerFinding[], nextHeight: number): void {
    this.transaction(() => {
      for (const f of found) {
        if (f.kind === 'location') {
          this.#run(
            'INSERT OR IGNORE INTO record_locations (record_id, node, height) VALUES (?, ?, ?)',
            f.recordId,
            f.node,
            f.height,
          );
        } else if (f.kind === 'member') {
          this.addMember(f.member, { ifAbsent: true });
        } else if (f.kind === 'vote') {
          if (f.voter === null) this.#run('DELETE FROM node_votes WHERE node = ?', f.node);
          else this.#run('INSERT OR IGNORE INTO node_votes (node, voter, at) VALUES (?, ?, ?)', f.node, f.voter, f.at);
        } else if (f.kind === 'rotation') {
          this.rotateMemberKeys(f.id, f, f.at, f.node);
        } else if (f.kind === 'nodeKey') {
          this.#handOverNodeKey(f);
        } else if (f.kind === 'node') {
          const n = f.node;
          this.#run(
            `INSERT OR REPLACE INTO consortium_nodes (id, state, invited_by, invite, signing_key, recipient, url, since, tls)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
            n.id,
            n.state,
            n.invitedBy,
            n.invite,
            n.signingKey,
            n.recipient,
            n.url,
            n.since,
            n.tls,
          );
        } else {
          this.#run(
            'UPDATE members SET removed_at = ? WHERE id = ? AND node = ? AND removed_at IS NULL',
            f.at,
            f.id,
            f.node,
          );
        }
      }
      this.#run('UPDATE record_locator SET next_height = ? WHERE next_height < ?', nextHeight, nextHeight);
    });
  }

  /**
   * A node's key handed over (the first hand-over of that key only): the node is known by its
   * new id wherever this store names it (its row, its readers, its records, its votes, the
   * erasures it ordered here).
   */
  #handOverNodeKey(f: Extract<LedgerFinding, { kind: 'nodeKey' }>): void {
    const { node, successor } = f;
    const taken = this.#run(
      'INSERT OR IGNORE INTO node_keys (node, successor, height, receipt) VALUES (?, ?, ?, ?)',
      node,
      successor,
      f.height,
      JSON.stringify(f.receipt),
    );
    if (taken === 0) return;
    this.#run(
      'UPDATE consortium_nodes SET id = ?, signing_key = ?, recipient = ? WHERE id = ?',
      successor,
      f.signingKey,
      f.recipient,
      node,
    );
    for (const [table, column] of [
      ['members', 'node'],
      ['record_locations', 'node'],
      ['node_votes', 'node'],
      ['node_votes', 'voter'],
      ['erasures', 'origin'],
    ]) {
      this.#run(`UPDATE ${table} SET ${column} = ? WHERE ${column} = ?`, successor, node);
    }
  }

  /** The node keys handed over (node.key), earliest first: each old id, its successor, and the receipt. */
  nodeKeyHistory(): Array<{ node: string; successor: string; height: number; receipt: Receipt }> {
    return this.#all<{ node: string; successor: string; height: number; receipt: string }>(
      'SELECT node, successor, height, receipt FROM node_keys ORDER BY height',
    ).map((row) => ({ ...row, receipt: JSON.parse(row.receipt) as Receipt }));
  }

  /** The votes to remove each node counted so far: voters by node. */
  nodeVotes(): Map<string, Set<string>> {
    const votes = new Map<string, Set<string>>();
    for (const v of this.#all<{ node: string; voter: string }>('SELECT node, voter FROM node_votes')) {
      votes.set(v.node, (votes.get(v.node) ?? new Set()).add(v.voter));
    }
    return votes;
  }

  /** The consortium's nodes the ledger has named, in the order they were first named. */
  consortiumNodes(): ConsortiumNodeRow[] {
    return this.#all<ConsortiumNodeRow>('SELECT * FROM consortium_nodes ORDER BY since, id');
  }

  // Grants and revocations whose outcome is not known yet.

  addPendingChange(c: PendingChangeRow): void {
    this.#run(
      `INSERT INTO pending_changes (id, record_id, kind, event, settle_after, settle_prev, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
      c.id,
      c.recordId,
      c.kind,
      c.event,
      c.settleAfter,
      c.settlePrev,
      c.createdAt,
    );
  }

  pendingChanges(): PendingChangeRow[] {
    return this.#all<PendingChangeRow>('SELECT * FROM pending_changes ORDER BY created_at, id');
  }

  deletePendingChange(id: string): void {
    this.#run('DELETE FROM pending_changes WHERE id = ?', id);
  }

  /** Records matching `q`, newest first, never a pending upload; without their headers. */
  searchRecords(q: RecordQuery): RecordSummaryRow[] {
    const where = ["r.state != 'pending'"];
    const params: SQLInputValue[] = [];
    const add = (clause: string, ...values: SQLInputValue[]) => {
      where.push(clause);
      params.push(...values);
    };
    if (q.subject !== undefined) add('r.subject = ?', q.subject);
    if (q.uploader !== undefined) add('r.uploader = ?', q.uploader);
    if (q.reader !== undefined || q.purpose !== undefined) {
      const grant = ['g.record_id = r.id'];
      const values: SQLInputValue[] = [];
      if (q.reader !== undefined) {
        grant.push('g.reader = ?');
        values.push(q.reader);
      }
      if (q.purpose !== undefined) {
        grant.push('g.purpose = ?');
        values.push(q.purpose);
      }
      if (q.liveAt !== undefined) {
        grant.push('g.revoked_at IS NULL AND g.dropped_at IS NULL AND g.expires_at > ?');
        values.push(q.liveAt);
      }
      add(`EXISTS (SELECT 1 FROM grants g WHERE ${grant.join(' AND ')})`, ...values);
    }
    if (q.since !== undefined) add('r.created_at >= ?', q.since);
    if (q.until !== undefined) add('r.created_at < ?', q.until);
    if (q.state === 'active' || q.state === 'erased') add('r.state = ?', q.state);
    if (q.state === 'pending-erasure') {
      add(`r.state = 'active' AND EXISTS (SELECT 1 FROM erasures e WHERE e.state = 'scheduled'
             AND ((e.scope = 'subject' AND e.target = r.subject) OR (e.scope = 'record' AND e.target = r.id)))`);
    }
    if (q.after)
      add('(r.created_at < ? OR (r.created_at = ? AND r.id < ?))', q.after.createdAt, q.after.createdAt, q.after.id);
    return this.#all<RecordSummaryRow>(
      `SELECT r.id, r.subject, r.uploader, r.state, r.ciphertext_hash, r.size, r.created_at, r.erased_at
       FROM records r WHERE ${where.join(' AND ')} ORDER BY r.created_at DESC, r.id DESC LIMIT ?`,
      ...params,
      q.limit,
    );
  }

  // Records.

  insertRecord(r: RecordRow & { idempotencyKey?: string | null }): void {
    this.#run(
      `INSERT INTO records (id, subject, uploader, state, ciphertext_hash, size, blob_ref, header, created_at, ledger_from, idempotency_key)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      r.id,
      r.subject,
      r.uploader,
      r.state,
      r.ciphertextHash,
      r.size,
      r.blobRef,
      r.header,
      r.createdAt,
      r.ledgerFrom,
      r.idempotencyKey ?? null,
    );
  }

  record(id: string): RecordRow | undefined {
    return this.#one('SELECT * FROM records WHERE id = ?', id);
  }

  /** The subjects of this node's active records (pseudonyms). */
  activeSubjects(): string[] {
    return this.#all<{ subject: string }>("SELECT DISTINCT subject FROM records WHERE state = 'active'").map(
      (r) => r.subject,
    );
  }

  /** A consistent copy of the whole database at `path` (for a backup); `path` must not exist. */
  snapshot(path: string): void {
    this.#db.prepare('VACUUM INTO ?').run(path);
  }

  recordsOf(subject: string, state: RecordState): RecordRow[] {
    return this.#all('SELECT * FROM records WHERE subject = ? AND state = ? ORDER BY created_at', subject, state);
  }

  pendingRecords(): Array<RecordRow & { settleAfter: number | null; settlePrev: string | null }> {
    return this.#all("SELECT * FROM records WHERE state = 'pending'");
  }

  /** An uploader's record made with `key` (in any state), if any. */
  recordByIdempotencyKey(uploader: string, key: string): RecordRow | undefined {
    return this.#one('SELECT * FROM records WHERE uploader = ? AND idempotency_key = ?', uploader, key);
  }

  /**
   * A pending upload is settled (anchored or not) once the ledger reaches `height`, or, when
   * its append extended block `prev`, once another block stands at `height - 1`.
   */
  setSettleAfter(id: string, height: number, prev: string | null = null): void {
    this.#run(
      "UPDATE records SET settle_after = ?, settle_prev = ? WHERE id = ? AND state = 'pending'",
      height,
      prev,
      id,
    );
  }

  activate(id: string): void {
    this.#run("UPDATE records SET state = 'active' WHERE id = ? AND state = 'pending'", id);
  }

  deleteRecord(id: string): void {
    this.#run('DELETE FROM grants WHERE record_id = ?', id);
    this.#run('DELETE FROM records WHERE id = ?', id);
  }

  setHeader(id: string, header: Uint8Array): void {
    this.#run('UPDATE records SET header = ? WHERE id = ?', header, id);
  }

  setBlob(id: string, blobRef: string, ciphertextHash: string, size: number): void {
    this.#run(
      'UPDATE records SET blob_ref = ?, ciphertext_hash = ?, size = ? WHERE id = ?',
      blobRef,
      ciphertextHash,
      size,
      id,
    );
  }

  /** How many records other than `except` point at `blobRef`. */
  blobUsers(blobRef: string, except: string): number {
    return (
      this.#one<{ n: number }>('SELECT count(*) AS n FROM records WHERE blob_ref = ? AND id != ?', blobRef, except)
        ?.n ?? 0
    );
  }

  /** Every blob ref a record (pending or active) still points at. */
  blobRefs(): Set<string> {
    return new Set(
      this.#all<{ blobRef: string }>('SELECT blob_ref FROM records WHERE blob_ref IS NOT NULL').map((r) => r.blobRef),
    );
  }

  // Grants.

  upsertGrant(g: Omit<GrantRow, 'revokedAt' | 'droppedAt'>): void {
    this.#run(
      `INSERT INTO grants (record_id, reader, purpose, granted_by, granted_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (record_id, reader) DO UPDATE SET purpose = excluded.purpose, granted_by = excluded.granted_by,
         granted_at = excluded.granted_at, expires_at = excluded.expires_at, revoked_at = NULL, dropped_at = NULL`,
      g.recordId,
      g.reader,
      g.purpose,
      g.grantedBy,
      g.grantedAt,
      g.expiresAt,
    );
  }

  grant(recordId: string, reader: string): GrantRow | undefined {
    return this.#one('SELECT * FROM grants WHERE record_id = ? AND reader = ?', recordId, reader);
  }

  /** Grants not revoked and not yet expired at `now`. */
  liveGrants(recordId: string, now: number): GrantRow[] {
    return this.#all(
      'SELECT * FROM grants WHERE record_id = ? AND revoked_at IS NULL AND expires_at > ? ORDER BY granted_at',
      recordId,
      now,
    );
  }

  /** The records on which `reader` holds a grant not yet revoked (expired or not): their stanzas may be in headers. */
  recordsGrantedTo(reader: string): string[] {
    return this.#all<{ recordId: string }>(
      `SELECT g.record_id FROM grants g JOIN records r ON r.id = g.record_id
       WHERE g.reader = ? AND g.revoked_at IS NULL AND r.state = 'active' ORDER BY g.granted_at`,
      reader,
    ).map((r) => r.recordId);
  }

  revokeGrant(recordId: string, reader: string, at: number): void {
    this.#run('UPDATE grants SET revoked_at = ? WHERE record_id = ? AND reader = ?', at, recordId, reader);
  }

  /** Records with a grant that expired at or before `now` whose stanza is still in the header. */
  recordsWithExpiredStanzas(now: number): string[] {
    return this.#all<{ recordId: string }>(
      `SELECT DISTINCT record_id FROM grants
       WHERE revoked_at IS NULL AND dropped_at IS NULL AND expires_at <= ?`,
      now,
    ).map((r) => r.recordId);
  }

  /** Whether one record has such a grant (the check on every fetch: the grants' primary key, not a scan). */
  hasExpiredStanza(recordId: string, now: number): boolean {
    return !!this.#one(
      `SELECT 1 AS found FROM grants
       WHERE record_id = ? AND revoked_at IS NULL AND dropped_at IS NULL AND expires_at <= ? LIMIT 1`,
      recordId,
      now,
    );
  }

  markDropped(recordId: string, now: number): void {
    this.#run(
      'UPDATE grants SET dropped_at = ? WHERE record_id = ? AND revoked_at IS NULL AND dropped_at IS NULL AND expires_at <= ?',
      now,
      recordId,
      now,
    );
  }

  // Ledger index.

  addAnchor(a: AnchorRow): void {
    this.#run(
      'INSERT INTO anchors (record_id, type, height, leaf, at) VALUES (?, ?, ?, ?, ?)',
      a.recordId,
      a.type,
      a.height,
      a.leaf,
      a.at,
    );
  }

  /** The highest ledger height any anchor here refers to (null: none): the node relies on that block. */
  highestAnchor(): number | null {
    return this.#one<{ h: number | null }>('SELECT MAX(height) AS h FROM anchors')?.h ?? null;
  }

  /** A record's (or request's) anchors in ledger order; with `types`, only those of these event types. */
  anchors(recordId: string, ...types: string[]): AnchorRow[] {
    if (types.length === 0) {
      return this.#all('SELECT * FROM anchors WHERE record_id = ? ORDER BY height, leaf', recordId);
    }
    const marks = types.map(() => '?').join(', ');
    return this.#all(
      `SELECT * FROM anchors WHERE record_id = ? AND type IN (${marks}) ORDER BY height, leaf`,
      recordId,
      ...types,
    );
  }

  // Break-glass reviews.

  addReview(r: Omit<ReviewRow, 'reviewedBy' | 'reviewedAt' | 'outcome'>): void {
    this.#run(
      'INSERT INTO reviews (id, record_id, reader, reason, salt, at) VALUES (?, ?, ?, ?, ?, ?)',
      r.id,
      r.recordId,
      r.reader,
      r.reason,
      r.salt,
      r.at,
    );
  }

  reviews(open: boolean): ReviewRow[] {
    return this.#all(`SELECT * FROM reviews ${open ? 'WHERE reviewed_at IS NULL' : ''} ORDER BY at`);
  }

  /** How many break-glass accesses `reader` made at or after `since`. */
  emergencyUsesSince(reader: string, since: number): number {
    return (
      this.#one<{ n: number }>('SELECT COUNT(*) AS n FROM reviews WHERE reader = ? AND at >= ?', reader, since)?.n ?? 0
    );
  }

  review(id: string): ReviewRow | undefined {
    return this.#one('SELECT * FROM reviews WHERE id = ?', id);
  }

  closeReview(id: string, by: string, at: number, outcome: string): void {
    this.#run('UPDATE reviews SET reviewed_by = ?, reviewed_at = ?, outcome = ? WHERE id = ?', by, at, outcome, id);
  }

  // Erasure requests.

  addErasure(
    e: Pick<ErasureRow, 'id' | 'scope' | 'target' | 'filedBy' | 'filedAt' | 'executeAt' | 'state'> & {
      origin?: string | null;
    },
  ): void {
    this.#run(
      'INSERT INTO erasures (id, scope, target, filed_by, filed_at, state, execute_at, origin) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      e.id,
      e.scope,
      e.target,
      e.filedBy,
      e.filedAt,
      e.state,
      e.executeAt,
      e.origin ?? null,
    );
  }

  /**
   * Forgets an erasure's subject once every node has confirmed: the pseudonym leaves its
   * row (secure_delete overwrites the freed bytes; the caller checkpoints the WAL).
   */
  forgetErasureSubject(id: string): void {
    this.#run("UPDATE erasures SET target = '' WHERE id = ? AND scope = 'subject'", id);
  }

  /** Erasures this node filed that are done but not yet confirmed by every node. */
  erasuresAwaitingNodes(): ErasureRow[] {
    return this.#all(
      "SELECT * FROM erasures WHERE state = 'done' AND origin IS NULL AND scope = 'subject' AND target != '' ORDER BY filed_at",
    );
  }

  /** Scheduled erasures whose window has passed. */
  dueErasures(now: number): ErasureRow[] {
    return this.#all("SELECT * FROM erasures WHERE state = 'scheduled' AND execute_at <= ? ORDER BY execute_at", now);
  }

  erasures(): ErasureRow[] {
    return this.#all('SELECT * FROM erasures ORDER BY filed_at');
  }

  setErasureState(id: string, state: ErasureState): void {
    this.#run('UPDATE erasures SET state = ? WHERE id = ?', state, id);
  }

  cancelErasure(id: string, by: string, at: number): void {
    this.#run(
      "UPDATE erasures SET state = 'cancelled', cancelled_by = ?, cancelled_at = ? WHERE id = ? AND state = 'scheduled'",
      by,
      at,
      id,
    );
  }

  setProbes(id: string, probes: string): void {
    this.#run('UPDATE erasures SET probes = ? WHERE id = ?', probes, id);
  }

  recordsOfErasure(erasureId: string): RecordRow[] {
    return this.#all('SELECT * FROM records WHERE erasure_id = ? ORDER BY created_at', erasureId);
  }

  /**
   * First step of an erasure, in one transaction: the records answer 410 from
   * now on, their headers (every wrapped key), grants and break-glass reasons
   * are gone; the blob ref stays until the blob is deleted.
   */
  beginErasure(ids: readonly string[], erasureId: string, at: number): void {
    for (const id of ids) {
      this.#run(
        // The subject's pseudonym leaves the row too: nothing here links the erased record to a patient.
        "UPDATE records SET state = 'erased', header = NULL, subject = '', erased_at = ?, erasure_id = ? WHERE id = ?",
        at,
        erasureId,
        id,
      );
      this.#run('DELETE FROM grants WHERE record_id = ?', id);
      this.#run('UPDATE reviews SET reason = NULL, salt = NULL WHERE record_id = ?', id);
    }
  }

  blobErased(erasureId: string, recordId: string, ref: string, removed: boolean, confirmed: string): void {
    this.transaction(() => {
      this.#run(
        'INSERT INTO erased_blobs (erasure_id, record_id, ref, removed, confirmed) VALUES (?, ?, ?, ?, ?)',
        erasureId,
        recordId,
        ref,
        removed ? 1 : 0,
        confirmed,
      );
      this.#run('UPDATE records SET blob_ref = NULL WHERE id = ?', recordId);
    });
  }

  erasedBlobs(erasureId: string, recordId: string): Array<{ ref: string; removed: boolean; confirmed: string }> {
    return this.#all<{ ref: string; removed: number; confirmed: string }>(
      'SELECT ref, removed, confirmed FROM erased_blobs WHERE erasure_id = ? AND record_id = ?',
      erasureId,
      recordId,
    ).map((r) => ({ ref: r.ref, removed: r.removed === 1, confirmed: r.confirmed }));
  }

  erasure(id: string): ErasureRow | undefined {
    return this.#one('SELECT * FROM erasures WHERE id = ?', id);
  }

  unfinishedErasures(): ErasureRow[] {
    return this.#all("SELECT * FROM erasures WHERE state = 'executing' ORDER BY filed_at");
  }

  finishErasure(id: string, certificate: string): void {
    this.#run("UPDATE erasures SET state = 'done', certificate = ? WHERE id = ?", certificate, id);
  }

  /** Keeps a ledger checkpoint this node confirmed (the newest copy of it, signatures and all). */
  saveLedgerCheckpoint(height: number, blockHash: string, checkpoint: string, at: number): void {
    this.#run(
      `INSERT INTO ledger_checkpoints (height, block_hash, checkpoint, confirmed_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (height) DO UPDATE SET checkpoint = excluded.checkpoint WHERE block_hash = excluded.block_hash`,
      height,
      blockHash,
      checkpoint,
      at,
    );
  }

  /** The highest checkpoint this node confirmed. */
  latestLedgerCheckpoint(): LedgerCheckpointRow | undefined {
    return this.#one('SELECT * FROM ledger_checkpoints ORDER BY height DESC LIMIT 1');
  }

  /** Folds the WAL into the database and truncates it, so no erased page lingers there. */
  checkpoint(): void {
    this.#db.exec('PRAGMA wal_checkpoint(TRUNCATE)');
  }

  ping(): void {
    this.#db.prepare('SELECT 1').get();
  }

  close(): void {
    if (this.#db.isOpen) this.#db.close();
  }
}
