/**
 * The vault's domain logic: the flows of DESIGN.md over the four layers
 * (kms, storage, anchor, crypto) and the metadata store. Transport-free: the
 * HTTP API (http.ts) authenticates a member and calls these methods; tests
 * call them directly too.
 *
 * Invariants:
 * - A record's stored header is always the KMS's rewrap of its file key to
 *   its live grantees and the subject's custodian, nothing else: upload,
 *   grant, revoke and expiry all rebuild it that way (the client's own reader
 *   stanzas are replaced, and its custodian stanza is proved by the rewrap).
 * - Nothing becomes visible before its event is anchored: a grant, access or
 *   upload that could not be anchored answers the ledger's error
 *   (LEDGER_UNAVAILABLE, LEDGER_FULL, …) and changes nothing. Revocations take effect on the ledger and locally together.
 * - Every change to one record runs under that record's lock, so two grants
 *   never rebuild the header from the same old copy.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { statfs } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { LRUCache } from 'lru-cache';
import { type Block, eventsTree } from '../../anchor/block.ts';
import type { Ledger } from '../../anchor/ledger.ts';
import { makeReceipt, type Receipt } from '../../anchor/receipt.ts';
import { coreTransform } from '../../crypto/age.ts';
import { keyFingerprint } from '../../crypto/ed25519.ts';
import { type HeaderLimits, HeaderScanner, parseHeader, type Recipient } from '../../crypto/header.ts';
import { noteChunkBytes } from '../../crypto/reclaim.ts';
import { PAYLOAD_NONCE_LENGTH, PayloadProbe } from '../../crypto/stream.ts';
import { X25519Recipient } from '../../crypto/x25519.ts';
import { check, fail, isMedvaultError, type MedvaultError } from '../../errors.ts';
import { PURPOSE } from '../../formats.ts';
import type { LocalKms } from '../../kms/local-kms.ts';
import { logger } from '../../log.ts';
import { readChecked, readSized } from '../../storage/blob-store.ts';
import type { StoreListener, StoreMeter } from '../../storage/measured-store.ts';
import { forwardMessage } from '../protocol/signing.ts';
import type { TlsIdentity } from '../protocol/tls.ts';
import type { RecordPage, RecordSummary, RecordView } from '../protocol/views.ts';
import type { Backups } from './backup.ts';
import { Checkpoints } from './checkpoints.ts';
import { Consortium, type ConsortiumInfo } from './consortium.ts';
import { ConsortiumIndex } from './consortium-index.ts';
import { type CoreDeps, checkSubject, ID, newId, VaultCore } from './core.ts';
import { crashPoint } from './crash-points.ts';
import { Erasures } from './erasure.ts';
import { KeyRotations, signingKeyOf } from './key-rotation.ts';
import type {
  ConsortiumNodeRow,
  GrantRow,
  MemberRow,
  Metadata,
  RecordQuery,
  RecordRow,
  RecordSummaryRow,
  Role,
} from './metadata.ts';
import {
  anchorAgain,
  anchorChange,
  type ChangeHandlers,
  cannotLand,
  isErasureChange,
  settleChanges,
} from './outcomes.ts';
import { type Peer, Peers } from './peers.ts';
import { authorize } from './policy.ts';
import { SubjectReports } from './report.ts';
import { type DiskReserve, minFree } from './reserve.ts';

export type { RecordView };

const MAX_READERS = 64;
/**
 * An uploaded header needs a stanza per reader, the uploader's and the custodian's: a header
 * with more (or larger) is refused before any work, far below the format's 1,024 stanzas.
 */
const UPLOAD_LIMITS: HeaderLimits = { maxStanzas: MAX_READERS + 2, maxBytes: 32 * 1024 };
const TAG_LENGTH = 16;
/** The longest a grant may run: ten years. */
const MAX_GRANT_MS = 10 * 365 * 86_400_000;

/** A record search (GET /v1/records): the filters, and the page. */
export interface RecordSearch extends Omit<RecordQuery, 'after' | 'limit' | 'liveAt'> {
  cursor?: string;
  limit?: number;
}

/** A page cursor: the last record's creation time and id. */
function encodeCursor(r: { createdAt: number; id: string }): string {
  return Buffer.from(`${r.createdAt}.${r.id}`).toString('base64url');
}

function decodeCursor(cursor: string): { createdAt: number; id: string } {
  const m = /^(\d{1,16})\.([0-9a-f]{32})$/.exec(Buffer.from(cursor, 'base64url').toString('latin1'));
  if (!m || Buffer.from(`${m[1]}.${m[2]}`).toString('base64url') !== cursor)
    fail('REQUEST_INVALID', 'not a page cursor');
  return { createdAt: Number(m[1]), id: m[2] as string };
}

export interface UploadOptions {
  /**
   * Called once the whole body was read and its payload stored, before the record is kept or
   * anchored: throws (or rejects) to refuse the upload (its blob is then removed). The HTTP API checks the
   * member's signature over the body's bytes here (services/protocol/signing.ts).
   */
  checkBody?: () => void | Promise<void>;
}

export interface VaultDeps extends CoreDeps {
  /** Whether this node owns its store alone, so start-up may collect unreferenced blobs. */
  ownsStore?: boolean;
  /** The consortium's other nodes: they cosign this node's erasure certificates and checkpoints, and it theirs. */
  peers?: Peer[];
  /** How long a peer may take to answer a forwarded request, and between two pieces of it (default 30 s). */
  peerTimeoutMs?: number;
  /** The node's files to sweep for traces after an erasure: data files and log files. */
  sweepFiles?: () => Promise<{ data: string[]; logs: string[] }>;
  /** Break-glass accesses one member may make in 24 hours (default 3). */
  emergencyPerDay?: number;
  /** Directories whose free space readiness reports (the data directory, an fs store's root). */
  diskPaths?: string[];
  /** The data directory's disk reserve: new documents are taken only while it is in place. */
  reserve?: DiskReserve;
  /** The node's own keystore: its node keys and the consortium's secrets (the subject key). */
  keystore?: LocalKms;
  /** The ledger URI and genesis an invite hands over (services/vault/consortium.ts). */
  consortium?: ConsortiumInfo;
  /** The certificate the node serves with and presents to its peers (services/protocol/tls.ts). */
  tls?: TlsIdentity;
  /** Where the store's operations are reported, if it was opened measured (storage/measured-store.ts). */
  storeMeter?: StoreMeter;
}

/** What the DPO is told of a break-glass access the moment it happens. */
export interface EmergencyAlert {
  reviewId: string;
  recordId: string;
  reader: string;
  at: number;
  /** The access's receipt: the event on the ledger. */
  receipt: Receipt;
}

const DAY_MS = 86_400_000;

/**
 * Refuses a ledger that ends below a block this node's records refer to: it lost acknowledged
 * blocks, or it is another ledger than the one the node was made on. Not checked (logged) when
 * the ledger cannot be read at start-up: the node then serves what does not need it.
 */
async function checkLedgerHolds(deps: VaultDeps): Promise<void> {
  const acknowledged = deps.metadata.highestAnchor();
  if (acknowledged === null) return;
  let height: number;
  try {
    height = (await deps.ledger.head())?.height ?? -1;
  } catch (err) {
    if (isMedvaultError(err, 'LEDGER_UNAVAILABLE')) {
      logger.warn({ acknowledged }, 'the ledger could not be read at start-up; its height is checked later');
      return;
    }
    throw err;
  }
  if (height < acknowledged) {
    fail(
      'LEDGER_CORRUPT',
      `the ledger ends at block ${height}, but this node's records refer to block ${acknowledged}: ` +
        'acknowledged blocks are missing, or this is not the ledger the node was made on',
    );
  }
}
const DEFAULT_EMERGENCY_PER_DAY = 3;

export type { ErasureTarget } from './erasure.ts';
export type { Peer } from './peers.ts';

export interface GrantInput {
  reader: string;
  purpose: string;
  expiresAt: number;
}

export interface UploadInput {
  subject: string;
  /** Member ids of the readers; each gets a grant with this purpose and expiry. */
  readers: readonly string[];
  purpose: string;
  expiresAt: number;
  /**
   * The client's key for this upload (8-64 of A-Z a-z 0-9 _ -): an upload repeated with the same
   * key by the same member returns the first one's record instead of making another.
   */
  idempotencyKey?: string;
}

const IDEMPOTENCY_KEY = /^[A-Za-z0-9_-]{8,64}$/;

export interface Opened {
  record: RecordRow;
  /** The header to serve: the stored one, or for break-glass one with the requester added. */
  header: Uint8Array;
  /**
   * The blob: a small record's (up to WHOLE_BLOB bytes) whole, read and checked against its
   * recorded size and hash before the access was anchored; a larger one's as a stream, which the
   * reader checks against the content receipt.
   */
  blob: Buffer | Readable;
  /** The receipt of this access. */
  receipt: Receipt;
  /** The receipt that fixes the served ciphertext's hash (record.created or record.reencrypted). */
  content: Receipt;
}

/** A record up to this size is read whole and checked before its access is anchored, and sent as one buffer. */
export const WHOLE_BLOB = 64 * 1024;

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

export class Vault {
  readonly #c: VaultCore;
  /** The consortium's other nodes (configuration; tests wire nodes up with `peers.set`). */
  readonly peers: Peers;
  /** The DPO's flows: erasure, cancel window, certificates and cosignatures, the sweep. */
  readonly erasures: Erasures;
  /** Ledger checkpoints cosigned by the consortium. */
  readonly checkpoints: Checkpoints;
  /** This node's part in the consortium: announcing itself, inviting nodes, the subject key for members. */
  readonly consortium: Consortium;
  /** The certificate the node serves with, if it serves TLS. */
  readonly tls: TlsIdentity | undefined;
  /** Subject access reports across the consortium (DPO). */
  readonly reports: SubjectReports;
  /** Backups of this node (services/vault/backup.ts); absent for a vault opened without its data directory. */
  backups: Backups | undefined;
  /** Members replacing their keys (key.rotated), and the rewraps that carry their grants over. */
  readonly rotations: KeyRotations;
  /** Which node holds a record and which members other nodes have, as the ledger says. */
  readonly #index: ConsortiumIndex;

  readonly #storeMeter: StoreMeter | undefined;
  readonly #emergencyPerDay: number;
  readonly #diskPaths: readonly string[];
  readonly #reserve: DiskReserve | undefined;
  readonly #emergencyListeners: Array<(alert: EmergencyAlert) => void> = [];
  readonly #onClose: Array<() => Promise<void>> = [];
  /** Uploads of this process still waiting for their anchors' answers: not the settler's. */
  readonly #inFlight = new Set<string>();
  #settling: Promise<number> | null = null;

  private constructor(deps: VaultDeps) {
    this.#c = new VaultCore(deps);
    this.#emergencyPerDay = deps.emergencyPerDay ?? DEFAULT_EMERGENCY_PER_DAY;
    this.#storeMeter = deps.storeMeter;
    this.#diskPaths = deps.diskPaths ?? [];
    this.#reserve = deps.reserve;
    this.#index = new ConsortiumIndex(this.#c.ledger, this.#c.m, this.#c.node.id, (nodes) => this.#announce(nodes));
    this.peers = new Peers(deps.peers, () => this.#index.catchUp(), deps.tls, deps.peerTimeoutMs);
    this.tls = deps.tls;
    this.#announce(this.#c.m.consortiumNodes());
    this.erasures = new Erasures(this.#c, {
      peers: this.peers,
      sweepFiles: deps.sweepFiles,
      backupsUntil: () => latestExpiry(deps.keystore?.backupKeys() ?? []),
    });
    this.checkpoints = new Checkpoints(this.#c, this.peers);
    this.rotations = new KeyRotations(this.#c, (id) => this.#rewrapToReaders(id));
    this.reports = new SubjectReports(this.#c, this.peers, (record) => this.#summary(record, true));
    this.consortium = new Consortium(
      this.#c,
      deps.keystore,
      { ...(deps.consortium ?? { ledger: `${deps.ledger.kind}:`, genesis: undefined }), tls: deps.tls },
      () => this.#index.catchUp(),
    );
  }

  /** Opens the vault and finishes what a crash interrupted: pending uploads, erasures, stray blobs. */
  static async open(deps: VaultDeps): Promise<Vault> {
    await checkLedgerHolds(deps);
    const vault = new Vault(deps);
    try {
      await vault.#refuseRetiredKey();
      await vault.settlePending();
      await vault.erasures.resume();
      if (deps.ownsStore) await vault.#collectGarbage();
      await vault.collectStrays();
    } catch (err) {
      await vault.close().catch(() => {}); // a refused start holds nothing: ledger, store, custody, database
      throw err;
    }
    return vault;
  }

  /**
   * NODE_KEY_RETIRED when the ledger says this node's key was handed over to another (node.key):
   * a keystore restored from before `medvault node rotate-key` would sign blocks nobody takes.
   * With the ledger unreachable at start-up the node starts unchecked (logged); its next start
   * checks again.
   */
  async #refuseRetiredKey(): Promise<void> {
    try {
      await this.#index.catchUp();
    } catch (err) {
      if (!isMedvaultError(err, 'LEDGER_UNAVAILABLE')) throw err;
      logger.warn(
        { code: err.code },
        'the ledger could not be read at start-up: whether the node key is current is not known',
      );
      return;
    }
    const handedOver = this.#c.m.nodeKeyHistory().find((k) => k.node === this.nodeId);
    if (handedOver) {
      fail(
        'NODE_KEY_RETIRED',
        `node key ${this.nodeId} was handed over to ${handedOver.successor} in block ${handedOver.height}: ` +
          'restore the keystore from after that rotation',
      );
    }
  }

  get nodeId(): string {
    return this.#c.node.id;
  }

  /** The node's signature over forwarding `member`'s request signed `memberSignature` (services/protocol/signing.ts). */
  signForward(member: string, memberSignature: string): string {
    return Buffer.from(this.#c.node.sign(forwardMessage(this.nodeId, member, memberSignature))).toString('base64');
  }

  /**
   * The receipts of every node key hand-over (node.key) the ledger holds, earliest first: what
   * verifiers follow to trust a receipt signed by a node's earlier or later key.
   */
  async nodeKeyHistory(): Promise<Receipt[]> {
    await this.#index.catchUp().catch((err: unknown) => {
      logger.warn(
        { code: isMedvaultError(err) ? err.code : 'INTERNAL' },
        'node key history given without a read of the ledger',
      );
    });
    return this.#c.m.nodeKeyHistory().map((k) => k.receipt);
  }

  get nodeKey(): string {
    return Buffer.from(this.#c.node.publicKey).toString('base64');
  }

  get ledger(): Ledger {
    return this.#c.ledger;
  }

  /**
   * Up to `limit` blocks below height `before` (default: all up to the head), newest first, for
   * the ledger explorer (admin, DPO); `next` is the `before` of the page after, null at block 0.
   */
  async blocks(
    actor: MemberRow,
    page: { before?: number; limit: number },
  ): Promise<{ blocks: Block[]; next: number | null }> {
    authorize(actor, 'ledger.read');
    const head = await this.#c.ledger.head();
    const end = Math.min(page.before ?? Number.POSITIVE_INFINITY, (head?.height ?? -1) + 1);
    const start = Math.max(0, end - page.limit);
    const blocks: Block[] = [];
    for (let height = end - 1; height >= start; height--) {
      const block = await this.#c.ledger.get(height);
      if (block) blocks.push(block);
    }
    return { blocks, next: start > 0 ? start : null };
  }

  // Members.

  /** The active member with this id. */
  member(id: string): MemberRow | undefined {
    const row = this.#c.m.member(id);
    return row && row.removedAt === null ? row : undefined;
  }

  /** The active member whose current signing key has this id, for authentication (a request names its key). */
  memberByKey(keyId: string): MemberRow | undefined {
    const row = this.#c.m.memberByKey(keyId);
    return row && row.removedAt === null ? row : undefined;
  }

  /** The members this node knows: its own, and the readers other nodes publish on the ledger. */
  async listMembers(actor: MemberRow): Promise<MemberRow[]> {
    authorize(actor, 'member.list');
    // With the ledger unreachable, the list is what this node already knew (and says so in its log).
    await this.#index.catchUp().catch((err: unknown) => {
      logger.warn(
        { code: isMedvaultError(err) ? err.code : 'INTERNAL' },
        'members listed without a read of the ledger',
      );
    });
    return this.#c.m.members();
  }

  /**
   * Before a request forwarded by node `via` is authenticated: a member of
   * that node this node has not seen yet may have been published on the
   * ledger since the last read.
   */
  async learnMember(keyId: string, via: string): Promise<void> {
    if (this.peers.get(via) && this.#c.m.memberByKey(keyId)) return;
    await this.#index.catchUp();
    // A member that rotated its keys at its node: its records here are rewrapped to its new
    // recipient before this request of its is served.
    const member = this.#c.m.memberByKey(keyId);
    if (member) await this.rotations.finish(member.id);
  }

  /** The nodes that joined the consortium and have not left, but this one, as peers. */
  #announce(nodes: readonly ConsortiumNodeRow[]): void {
    this.peers.setAnnounced(
      nodes
        .filter((n) => n.state === 'joined' && n.id !== this.nodeId)
        .map((n) => ({
          id: n.id,
          url: n.url as string,
          signingKey: n.signingKey as string,
          ...(n.tls ? { tls: n.tls } : {}),
        })),
    );
  }

  /**
   * Adds a member; `actor` null is the node itself (the first admin, at
   * `medvault init`). With `node`, a member of that other node: a reader that
   * may be granted records here, whose requests reach this node only as
   * forwarded and signed by its own node.
   */
  async addMember(
    actor: MemberRow | null,
    input: { name: string; role: Role; signingKey: string; recipient: string; node?: string },
  ): Promise<{ member: MemberRow; receipt: Receipt }> {
    if (actor) authorize(actor, 'member.add');
    if (input.node !== undefined) {
      check(ID.test(input.node), 'REQUEST_INVALID', 'node is a node key id (32 hex digits)');
      check(input.node !== this.nodeId, 'REQUEST_INVALID', 'node names another node, not this one');
      check(input.role === 'reader', 'REQUEST_INVALID', "a member of another node is added as a 'reader'");
    }
    const key = signingKeyOf(input.signingKey);
    const recipient = X25519Recipient.parse(input.recipient); // KEY_INVALID when malformed
    const id = keyFingerprint(key);
    // A key is enrolled once, ever (a removed or replaced key stays unusable); a name is free
    // again once its member was removed: the new member is another id, with its own keys and grants.
    if (this.#c.m.keyEverUsed(id)) fail('MEMBER_EXISTS', `${input.name}: that signing key was enrolled before`);
    const named = this.#c.m.memberByName(input.name);
    if (named && named.removedAt === null) fail('MEMBER_EXISTS', input.name);
    const at = this.#c.now();
    const receipt = await this.#c.anchor({
      type: 'member.added',
      at,
      member: id,
      role: input.role,
      by: actor?.id ?? this.#c.node.id,
      // This node's own readers go into the consortium's directory (public keys, no name), so
      // the other nodes' uploaders can name them (services/vault/consortium-index.ts); no other role is of use
      // at another node.
      ...(input.node === undefined && input.role === 'reader'
        ? {
            signingKey: key.toString('hex'),
            recipient: Buffer.from(recipient.publicKey).toString('hex'),
            node: this.nodeId,
          }
        : {}),
    });
    const member: MemberRow = {
      id,
      name: input.name,
      role: input.role,
      signingKey: input.signingKey,
      keyId: id,
      recipient: recipient.toString(),
      node: input.node ?? null,
      addedAt: at,
      removedAt: null,
      emergencyAccess: false,
    };
    this.#c.m.transaction(() => {
      // The removed holder of the name keeps its row (reports and audits name it) under
      // `NAME~removed-TIME`, which no enrolled name can be ('~' is not allowed in one).
      if (named) this.#c.m.renameMember(named.id, `${named.name}~removed-${named.removedAt}`);
      this.#c.m.addMember(member);
      this.#c.index(id, receipt);
    });
    return { member, receipt };
  }

  /**
   * The node to forward a request for record `id`, which this node does not
   * hold, to: the one the ledger says holds it, when that is another node.
   */
  async holderElsewhere(id: string): Promise<string | undefined> {
    if (!ID.test(id)) return undefined;
    const holder = await this.#index.holder(id);
    return holder === this.nodeId ? undefined : holder;
  }

  async removeMember(actor: MemberRow, id: string): Promise<{ receipt: Receipt }> {
    authorize(actor, 'member.remove');
    const member = this.member(id);
    if (!member) fail('MEMBER_NOT_FOUND', id);
    const admins = this.#c.m.members().filter((m) => m.role === 'admin' && m.removedAt === null);
    if (member.role === 'admin' && admins.length === 1) fail('FORBIDDEN', 'the last admin cannot be removed');
    const at = this.#c.now();
    const receipt = await this.#c.anchor({ type: 'member.removed', at, member: id, by: actor.id });
    this.#c.m.transaction(() => {
      this.#c.m.removeMember(id, at);
      this.#c.index(id, receipt);
    });
    // Its stanzas leave every header it was in, each anchored as a revocation by the admin.
    for (const recordId of this.#c.m.recordsGrantedTo(id)) await this.#revokeRemoved(actor, recordId, id);
    return { receipt };
  }

  /** Revokes a removed member's grant on one record (its stanza leaves the header); anchored. */
  async #revokeRemoved(actor: MemberRow, recordId: string, readerId: string): Promise<void> {
    await this.#c.locked(recordId, async () => {
      const record = this.#c.m.record(recordId);
      const grant = this.#c.m.grant(recordId, readerId);
      if (record?.state !== 'active' || !grant || grant.revokedAt !== null) return;
      try {
        await this.#revokeStanza(record, readerId, actor.id, this.#c.now());
      } catch (err) {
        if (!isMedvaultError(err, 'OUTCOME_PENDING')) throw err; // revoked here; the ledger settles it
      }
    });
  }

  /**
   * Gives (`granted`) or withdraws a member's break-glass capability (admin); anchored as
   * member.capability. Only this node's own uploaders and readers may hold it, never an admin
   * or a DPO (whose keys could otherwise open any record on their own say).
   */
  async setEmergencyAccess(
    actor: MemberRow,
    id: string,
    granted: boolean,
  ): Promise<{ member: MemberRow; receipt?: Receipt }> {
    authorize(actor, 'member.capability');
    checkMemberId(id);
    const member = this.#c.m.member(id);
    if (!member || member.removedAt !== null) fail('MEMBER_NOT_FOUND', id);
    check(member.node === null, 'REQUEST_INVALID', 'break-glass is given to members of this node only');
    check(
      member.role === 'uploader' || member.role === 'reader',
      'REQUEST_INVALID',
      `break-glass is for clinical members (uploaders and readers), not for ${member.role === 'admin' ? 'an admin' : 'a DPO'}`,
    );
    if (member.emergencyAccess === granted) return { member };
    const receipt = await this.#c.anchor({
      type: 'member.capability',
      at: this.#c.now(),
      member: id,
      capability: 'emergency',
      granted,
      by: actor.id,
    });
    this.#c.m.transaction(() => {
      this.#c.m.setEmergencyAccess(id, granted);
      this.#c.index(id, receipt);
    });
    return { member: { ...member, emergencyAccess: granted }, receipt };
  }

  // Upload.

  /** The subject's custodian recipient, for uploaders to encrypt to (made on first use). */
  async custodian(actor: MemberRow, subject: string): Promise<{ recipient: string; keyId: string }> {
    authorize(actor, 'custodian');
    checkSubject(subject);
    const { recipient, keyId } = await this.#c.kms.custodian(subject);
    return { recipient: String(recipient), keyId };
  }

  /**
   * Stores an age file streamed by the client (header, then payload). The
   * header must carry a stanza for the subject's custodian; the stored header
   * is the KMS's rewrap to the named readers. Nothing is kept if any step fails.
   */
  async upload(
    actor: MemberRow,
    input: UploadInput,
    body: AsyncIterable<Uint8Array>,
    options: UploadOptions = {},
  ): Promise<{ record: RecordView; receipt: Receipt; repeated?: boolean }> {
    authorize(actor, 'upload');
    await this.#reserve?.checkWritable(); // a node started on a full disk takes no new documents
    const key = input.idempotencyKey;
    if (key === undefined) return this.#upload(actor, input, body, options);
    check(IDEMPOTENCY_KEY.test(key), 'REQUEST_INVALID', 'an idempotency key is 8-64 of A-Z a-z 0-9 _ -');
    // One upload per key at a time; a repeat answers with the first one's record, unread.
    return this.#c.locked(`upload:${actor.id}:${key}`, async () => {
      const first = this.#c.m.recordByIdempotencyKey(actor.id, key);
      if (!first) return this.#upload(actor, input, body, options);
      if (first.state === 'pending') {
        fail('OUTCOME_PENDING', `record ${first.id} (the first upload with this key)`, {
          info: { recordId: first.id },
        });
      }
      const created = this.#c.m.anchors(first.id, 'record.created')[0];
      if (!created) fail('LEDGER_CORRUPT', `record ${first.id} has no record.created indexed`);
      const receipt = await this.#c.receiptAt(created.height, created.leaf);
      return { record: this.#view(first, true, receipt), receipt, repeated: true };
    });
  }

  /**
   * Which of `keys` (idempotency keys of this member's uploads) the node already holds a
   * completed upload for: a bulk re-run asks before encrypting and sending anything.
   * Pending and erased ones are left out (a new upload with the key answers for them).
   */
  knownUploads(actor: MemberRow, keys: string[]): Record<string, { recordId: string; size: number }> {
    authorize(actor, 'upload');
    check(keys.length <= 1000, 'REQUEST_INVALID', 'at most 1,000 keys at a time');
    const known: Record<string, { recordId: string; size: number }> = {};
    for (const key of keys) {
      check(IDEMPOTENCY_KEY.test(key), 'REQUEST_INVALID', 'an idempotency key is 8-64 of A-Z a-z 0-9 _ -');
      const record = this.#c.m.recordByIdempotencyKey(actor.id, key);
      if (record?.state === 'active') known[key] = { recordId: record.id, size: record.size };
    }
    return known;
  }

  async #upload(
    actor: MemberRow,
    input: UploadInput,
    body: AsyncIterable<Uint8Array>,
    options: UploadOptions,
  ): Promise<{ record: RecordView; receipt: Receipt }> {
    checkSubject(input.subject);
    checkGrantTerms(input.purpose, input.expiresAt, this.#c.now());
    check(
      input.readers.length > 0 && input.readers.length <= MAX_READERS,
      'REQUEST_INVALID',
      `name 1 to ${MAX_READERS} readers`,
    );
    const readers = await this.#readers([...new Set(input.readers)]);
    const { header: clientHeader, rest } = await readHeader(body);
    const { keyId: custodian } = await this.#c.kms.custodian(input.subject);
    // Read the ledger head first: with the ledger down, the upload is refused before any byte is stored.
    const ledgerFrom = ((await this.#c.ledger.head())?.height ?? -1) + 1;
    const probe = new PayloadProbe();
    const putStartedAt = performance.now();
    const put = await this.#c.store.put(checkPayload(rest, probe));
    const id = newId();
    let header: Uint8Array;
    try {
      await options.checkBody?.(); // the whole body is read: its signature, before anything is kept
      // Inside the KMS, with one unwrap of the custodian's stanza: the file key opens the first
      // and last chunks (a payload no reader could ever decrypt is refused now, not found out at
      // the first fetch), and the header is rewrapped to the readers.
      header = await this.#c.kms
        .admit(input.subject, clientHeader, readers.map(recipientOf), probe.sample())
        .catch((err: unknown) => {
          if (isMedvaultError(err, 'AGE_NO_IDENTITY')) {
            fail('REQUEST_INVALID', "the header has no stanza for the subject's custodian key (encrypt to it)");
          }
          throw err;
        });
    } catch (err) {
      await this.#c.deleteBlobIfUnused(put.ref, id);
      throw err;
    }
    crashPoint('upload.stored');
    const at = this.#c.now();
    this.#inFlight.add(id); // the settler leaves it alone until its anchors have answered
    try {
      return await this.#anchorUpload(actor, input, {
        id,
        at,
        put,
        putStartedAt,
        header,
        custodian,
        ledgerFrom,
        readers,
      });
    } finally {
      this.#inFlight.delete(id);
    }
  }

  /**
   * Anchors an upload's record.created and grants, then keeps or drops it by their outcome:
   * all anchored, it is active; none, and every failure certain, it is dropped (row and blob);
   * any outcome unknown (the ledger may still commit it), or some anchored and some not, it
   * stays pending and is settled by reading the ledger (settlePending): never dropped while
   * it may be anchored. The client then gets OUTCOME_PENDING with the record id.
   */
  async #anchorUpload(
    actor: MemberRow,
    input: UploadInput,
    u: {
      id: string;
      at: number;
      put: { ref: string; sha256: string; size: number };
      putStartedAt: number;
      header: Uint8Array;
      custodian: string;
      ledgerFrom: number;
      readers: MemberRow[];
    },
  ): Promise<{ record: RecordView; receipt: Receipt }> {
    const { id, at, put, header, custodian, ledgerFrom, readers } = u;
    let receipts: Receipt[];
    // The pending row is durable before anything is anchored (a crash then leaves a row to settle,
    // never an anchored record with no row); concurrent uploads share its commit.
    const inserted = this.#c.m.grouped(() =>
      this.#c.m.insertRecord({
        id,
        subject: input.subject,
        uploader: actor.id,
        state: 'pending',
        ciphertextHash: put.sha256,
        size: put.size,
        blobRef: put.ref,
        header,
        createdAt: at,
        ledgerFrom,
        erasedAt: null,
        erasureId: null,
        idempotencyKey: input.idempotencyKey ?? null,
      }),
    );
    await inserted.catch(async (err: unknown) => {
      await this.#c.deleteBlobIfUnused(put.ref, id).catch(() => {}); // else start-up collects it
      throw err;
    });
    // Nothing is anchored for a blob a failing upload of the same bytes removed meanwhile.
    await this.#c.checkBlobKept(put.ref, u.putStartedAt).catch((err: unknown) => {
      this.#c.m.deleteRecord(id);
      throw err;
    });
    crashPoint('upload.pending');
    const outcomes = await Promise.allSettled([
      this.#c.anchor({
        type: 'record.created',
        at,
        recordId: id,
        ciphertextHash: put.sha256,
        headerHash: sha256(header),
        size: put.size,
        uploader: actor.id,
        // The custodian key's fingerprint, never the subject: the ledger links no records to a patient.
        custodian,
        node: this.#c.node.id,
      }),
      ...readers.map((r) => this.#c.anchor(grantEvent(id, r.id, actor.id, input, at))),
    ]);
    const failures = outcomes.filter((o) => o.status === 'rejected').map((o) => o.reason as unknown);
    if (failures.length === 0) {
      receipts = outcomes.map((o) => (o as PromiseFulfilledResult<Receipt>).value);
    } else {
      const unknown = failures.filter((e) => isMedvaultError(e, 'LEDGER_OUTCOME_UNKNOWN')) as MedvaultError[];
      if (unknown.length === 0 && failures.length === outcomes.length) {
        // Nothing anchored, and nothing can be: drop the row and the blob (start-up does it
        // if this process dies first).
        this.#c.m.deleteRecord(id);
        await this.#c
          .deleteBlobIfUnused(put.ref, id)
          .catch((e) =>
            logger.error({ err: e, recordId: id }, 'could not delete the blob of a failed upload; start-up GC will'),
          );
        throw failures[0];
      }
      // Settled once the ledger holds a block at the lowest height an unknown append
      // tried (ours, or another that took its place); with no unknown, it can be settled now.
      const lowest = unknown.toSorted((a, b) => Number(a.info?.from) - Number(b.info?.from))[0];
      const settleAfter = lowest ? Number(lowest.info?.from ?? ledgerFrom) : ledgerFrom - 1;
      const prev = typeof lowest?.info?.prev === 'string' ? lowest.info.prev : null;
      this.#c.m.setSettleAfter(id, settleAfter, prev);
      logger.warn({ recordId: id, settleAfter }, 'upload outcome not known yet: kept pending until the ledger answers');
      fail('OUTCOME_PENDING', `record ${id}`, { info: { recordId: id }, cause: failures[0] });
    }
    crashPoint('upload.anchored');
    // Activated in a commit shared with the uploads anchored alongside. Should it fail (a disk
    // failing its sync), the record is anchored and its row pending: the settler completes it.
    await this.#c.m
      .grouped(() => {
        this.#c.m.activate(id);
        for (const r of readers) {
          this.#c.m.upsertGrant({
            recordId: id,
            reader: r.id,
            purpose: input.purpose,
            grantedBy: actor.id,
            grantedAt: at,
            expiresAt: input.expiresAt,
          });
        }
        for (const receipt of receipts) this.#c.index(id, receipt);
      })
      .catch((err: unknown) => {
        logger.error({ err, recordId: id }, 'an anchored upload could not be activated; the settler completes it');
        fail('OUTCOME_PENDING', `record ${id} (anchored; not yet recorded here)`, {
          info: { recordId: id },
          cause: err,
        });
      });
    crashPoint('upload.active');
    // A reader that rotated its keys after its recipient was read for this header: its rotation's
    // rewraps ran before this record was active and did not see it, so it is rewrapped now.
    if (readers.some((r) => this.#c.m.member(r.id)?.recipient !== r.recipient)) await this.#rewrapAfterRotation(id);
    const created = receipts[0] as Receipt;
    return { record: this.#view(this.#c.m.record(id) as RecordRow, true, created), receipt: created };
  }

  // Reading.

  /** A record's metadata and the receipt that fixes its ciphertext hash. */
  async record(actor: MemberRow, id: string): Promise<RecordView> {
    const record = this.#c.record(id, { allowErased: true });
    authorize(actor, 'record.read', this.#facts(record, actor));
    if (record.state === 'erased') fail('RECORD_ERASED', `erased at ${new Date(record.erasedAt ?? 0).toISOString()}`);
    const manager = record.uploader === actor.id || actor.role === 'dpo';
    return this.#view(record, manager, await this.#contentReceipt(record));
  }

  /**
   * Records matching `input`, newest first, a page at a time (`cursor` from the previous page).
   * Each role sees only what it may: an uploader its own records, a reader those granted to it
   * now, a DPO every record (grants included, never content). A subject is its pseudonym.
   */
  searchRecords(actor: MemberRow, input: RecordSearch): RecordPage {
    authorize(actor, 'record.search');
    const limit = input.limit ?? 50;
    check(Number.isSafeInteger(limit) && limit >= 1 && limit <= 500, 'REQUEST_INVALID', 'limit is 1 to 500');
    if (input.subject !== undefined) checkSubject(input.subject);
    for (const id of [input.uploader, input.reader]) {
      check(id === undefined || ID.test(id), 'REQUEST_INVALID', 'a member is named by its id (32 hex digits)');
    }
    check(input.purpose === undefined || PURPOSE.test(input.purpose), 'REQUEST_INVALID', 'not a purpose code');
    for (const t of [input.since, input.until]) {
      check(t === undefined || (Number.isSafeInteger(t) && t >= 0), 'REQUEST_INVALID', 'times are ms since the epoch');
    }
    const { cursor, limit: _asked, ...filters } = input;
    const query: RecordQuery = { ...filters, limit: limit + 1 };
    if (cursor !== undefined) query.after = decodeCursor(cursor);
    if (actor.role === 'uploader') {
      if (input.uploader !== undefined && input.uploader !== actor.id)
        fail('FORBIDDEN', 'an uploader searches its own records');
      query.uploader = actor.id;
    } else if (actor.role === 'reader') {
      if (input.reader !== undefined && input.reader !== actor.id)
        fail('FORBIDDEN', 'a reader searches the records granted to it');
      query.reader = actor.id;
      query.liveAt = this.#c.now();
    }
    const rows = this.#c.m.searchRecords(query);
    const page = rows.slice(0, limit);
    const last = page.at(-1);
    return {
      records: page.map((r) => this.#summary(r, actor.role === 'dpo' || r.uploader === actor.id)),
      next: rows.length > limit && last ? encodeCursor(last) : null,
    };
  }

  #summary(record: RecordSummaryRow, manager: boolean): RecordSummary {
    const summary: RecordSummary = {
      id: record.id,
      subject: record.subject,
      uploader: record.uploader,
      state: record.state === 'erased' ? 'erased' : 'active',
      ciphertextHash: record.ciphertextHash,
      size: record.size,
      createdAt: record.createdAt,
      erasedAt: record.erasedAt,
    };
    if (manager) {
      summary.grants = this.#c.m
        .liveGrants(record.id, this.#c.now())
        .map((g) => ({ reader: g.reader, purpose: g.purpose, expiresAt: g.expiresAt }));
    }
    return summary;
  }

  /** Fetch: a live grantee gets the header and a stream of the blob; the access is anchored first. */
  async open(actor: MemberRow, id: string): Promise<Opened> {
    await this.#dropExpiredStanzas(id);
    const record = this.#c.record(id);
    authorize(actor, 'fetch', this.#facts(record, actor));
    const content = await this.#contentReceipt(record);
    const blob = await this.#blobOf(record);
    try {
      // An unknown outcome: nothing is served (OUTCOME_PENDING), and if the ledger turns out to
      // hold the access it joins the record's trail then (services/vault/outcomes.ts).
      const receipt = await anchorChange(this.#c, 'access', {
        type: 'record.accessed',
        at: this.#c.now(),
        recordId: id,
        reader: actor.id,
        node: this.#c.node.id,
      });
      await this.#c.indexAnchored(id, receipt); // anchored: the access is served even if the index must wait
      return { record, header: record.header as Uint8Array, blob, receipt, content };
    } catch (err) {
      if (!Buffer.isBuffer(blob)) blob.destroy();
      throw err;
    }
  }

  /**
   * Break-glass: access without a grant, with a stated reason. The served
   * header adds the requester (the stored one is unchanged); the access is
   * anchored as access.emergency and queued for the DPO's review. The reason
   * stays on this node; the ledger holds only a salted digest of it.
   */
  async emergency(actor: MemberRow, id: string, reason: string): Promise<Opened & { reviewId: string }> {
    authorize(actor, 'emergency');
    check(
      typeof reason === 'string' && reason.trim().length >= 10 && reason.length <= 1000,
      'REQUEST_INVALID',
      'state the reason for emergency access in 10 to 1000 characters',
    );
    // One member's accesses one after another, so the daily limit cannot be raced past.
    const opened = await this.#c.locked(`emergency:${actor.id}`, () => this.#emergency(actor, id, reason));
    const alert = {
      reviewId: opened.reviewId,
      recordId: id,
      reader: actor.id,
      at: opened.receipt.event.at,
      receipt: opened.receipt,
    };
    for (const listener of this.#emergencyListeners) {
      try {
        listener(alert);
      } catch (err) {
        logger.error({ err, reviewId: opened.reviewId }, 'a break-glass alert failed');
      }
    }
    return opened;
  }

  /**
   * Calls `listener` at once after each break-glass access is anchored, to alert the DPO
   * (the server's metric, an operator's webhook). It is never given the reason.
   */
  onEmergency(listener: (alert: EmergencyAlert) => void): void {
    this.#emergencyListeners.push(listener);
  }

  /** How many break-glass reviews wait for a DPO. */
  openReviews(): number {
    return this.#c.m.reviews(true).length;
  }

  /** What an operator watches (GET /metrics): what waits for the ledger, erasures due, peers. */
  operatorState(): { pendingUploads: number; pendingChanges: number; scheduledErasures: number; peers: number } {
    return {
      pendingUploads: this.#c.m.pendingRecords().length,
      pendingChanges: this.#c.m.pendingChanges().length,
      scheduledErasures: this.#c.m.erasures().filter((e) => e.state === 'scheduled').length,
      peers: this.peers.list.length,
    };
  }

  /** Calls `listener` with each anchor's duration (s) and outcome ('ok' or its error code). */
  onAnchored(listener: (seconds: number, outcome: string) => void): void {
    this.#c.onAnchored = listener;
  }

  /** Calls `listener` with each blob store operation's backend, outcome and duration (a store opened measured). */
  onStoreOperation(listener: StoreListener): void {
    if (this.#storeMeter) this.#storeMeter.listener = listener;
  }

  async #emergency(actor: MemberRow, id: string, reason: string): Promise<Opened & { reviewId: string }> {
    const used = this.#c.m.emergencyUsesSince(actor.id, this.#c.now() - DAY_MS);
    if (used >= this.#emergencyPerDay) {
      fail('EMERGENCY_LIMIT', `${used} break-glass accesses in the last 24 hours (at most ${this.#emergencyPerDay})`);
    }
    return this.#c.locked(id, async () => {
      const record = this.#c.record(id);
      const readers = this.#liveReaders(id, this.#c.now());
      const header = await this.#c.kms.rewrap(record.subject, record.header as Uint8Array, [
        ...readers.map(recipientOf),
        X25519Recipient.parse(actor.recipient),
      ]);
      const content = await this.#contentReceipt(record);
      const blob = await this.#blobOf(record);
      const salt = randomBytes(32).toString('hex');
      const reviewId = newId();
      try {
        const at = this.#c.now();
        const review = { id: reviewId, recordId: id, reader: actor.id, reason, salt, at };
        // An unknown outcome: nothing is served, but the DPO's queue gets the review at once (the
        // ledger may come to hold the access: over-report, never under-report); it joins the
        // record's trail if it lands (a pending access, services/vault/outcomes.ts).
        const receipt = await anchorChange(
          this.#c,
          'access',
          {
            type: 'access.emergency',
            at,
            recordId: id,
            reader: actor.id,
            reasonDigest: createHmac('sha256', Buffer.from(salt, 'hex')).update(reason, 'utf8').digest('hex'),
          },
          () => this.#c.m.addReview(review),
        );
        this.#c.m.transaction(() => {
          this.#c.index(id, receipt);
          this.#c.m.addReview(review);
        });
        return { record, header, blob, receipt, content, reviewId };
      } catch (err) {
        if (!Buffer.isBuffer(blob)) blob.destroy();
        throw err;
      }
    });
  }

  // Grants.

  async grant(actor: MemberRow, id: string, input: GrantInput): Promise<{ receipt: Receipt }> {
    checkGrantTerms(input.purpose, input.expiresAt, this.#c.now());
    return this.#c.locked(id, async () => {
      const record = this.#c.record(id);
      authorize(actor, 'grant', this.#facts(record, actor));
      const [reader] = (await this.#readers([input.reader])) as [MemberRow];
      const now = this.#c.now();
      const readers = this.#liveReaders(id, now).filter((m) => m.id !== reader.id);
      const header = await this.#c.kms.rewrap(record.subject, record.header as Uint8Array, [
        ...readers.map(recipientOf),
        recipientOf(reader),
      ]);
      // An unknown outcome: OUTCOME_PENDING, and the grant takes effect only if the ledger shows it.
      const receipt = await anchorChange(this.#c, 'grant', grantEvent(id, reader.id, actor.id, input, now));
      this.#applyGrant(id, header, receipt);
      return { receipt };
    });
  }

  /** Keeps a grant anchored by `receipt` (an acl.granted) with the header it makes. */
  #applyGrant(recordId: string, header: Uint8Array, receipt: Receipt): void {
    const e = receipt.event;
    this.#c.m.transaction(() => {
      this.#c.m.setHeader(recordId, header);
      this.#c.m.upsertGrant({
        recordId,
        reader: e.reader as string,
        purpose: e.purpose as string,
        expiresAt: e.expiresAt as number,
        grantedBy: e.grantor as string,
        grantedAt: e.at,
      });
      this.#c.index(recordId, receipt);
    });
  }

  /**
   * Drops `readerId`'s stanza from the header and anchors acl.revoked. With the outcome
   * unknown the revocation takes effect at once (fail closed) and the ledger is brought to
   * say it (services/vault/outcomes.ts); the caller gets OUTCOME_PENDING.
   */
  async #revokeStanza(record: RecordRow, readerId: string, revoker: string, now: number): Promise<Receipt> {
    const recipients = this.#liveReaders(record.id, now).filter((m) => m.id !== readerId);
    const header = await this.#c.kms.rewrap(record.subject, record.header as Uint8Array, recipients.map(recipientOf));
    const apply = () => {
      this.#c.m.setHeader(record.id, header);
      this.#c.m.revokeGrant(record.id, readerId, now);
    };
    const receipt = await anchorChange(this.#c, 'revoke', revokeEvent(record.id, readerId, revoker, false, now), apply);
    this.#c.m.transaction(() => {
      apply();
      this.#c.index(record.id, receipt);
    });
    return receipt;
  }

  /** What settling does with a change the ledger has answered for (services/vault/outcomes.ts). */
  readonly #changes: ChangeHandlers = {
    landed: async (change, event, receipt) => {
      if (isErasureChange(change.kind)) return this.erasures.changes.landed(change, event, receipt);
      if (change.kind === 'revoke' || change.kind === 'access' || change.kind === 'rotation') {
        // A revocation or key rotation: in effect since it was made. An access: nothing was served,
        // but the ledger holds it, so the record's trail (audit, the subject report) shows it too.
        this.#c.index(change.recordId, receipt);
        return;
      }
      const record = this.#c.m.record(change.recordId);
      const reader = this.member(event.reader as string);
      if (record?.state !== 'active' || !reader) {
        this.#c.index(change.recordId, receipt);
        return; // erased or its reader removed since: the grant is on the ledger, with nothing left to open
      }
      const others = this.#liveReaders(record.id, this.#c.now()).filter((m) => m.id !== reader.id);
      const header = await this.#c.kms.rewrap(record.subject, record.header as Uint8Array, [
        ...others.map(recipientOf),
        recipientOf(reader),
      ]);
      this.#applyGrant(record.id, header, receipt);
    },
    lost: async (change, event) => {
      if (isErasureChange(change.kind)) return this.erasures.changes.lost(change, event);
      if (change.kind === 'grant' || change.kind === 'access') {
        logger.warn(
          { recordId: change.recordId, kind: change.kind },
          `pending ${change.kind} dropped: it was never anchored`,
        );
        return;
      }
      // A revocation, in effect here since it was made: the ledger must say it too.
      await anchorAgain(this.#c, change, event, (receipt) => this.#c.index(change.recordId, receipt));
    },
  };

  /**
   * Revokes a reader: its stanza leaves the header. A reader who already
   * decrypted the record keeps what it read; `reencrypt` (for a suspected key
   * compromise) also makes a new file key and blob and deletes the old blob,
   * so a copy of the old header no longer opens anything the vault serves.
   */
  async revoke(actor: MemberRow, id: string, readerId: string, options: { reencrypt?: boolean } = {}) {
    return this.#c.locked(id, async () => {
      const record = this.#c.record(id);
      authorize(actor, 'revoke', this.#facts(record, actor));
      const now = this.#c.now();
      const grant = this.#c.m.grant(id, readerId);
      if (!grant || grant.revokedAt !== null) fail('NO_GRANT', `member ${readerId} holds no grant on this record`);
      const recipients = this.#liveReaders(id, now)
        .filter((m) => m.id !== readerId)
        .map(recipientOf);
      if (!options.reencrypt) return { receipt: await this.#revokeStanza(record, readerId, actor.id, now) };
      await this.#reserve?.checkWritable(); // a new blob: refused while the node is read-only
      const { header, core } = await this.#c.kms.reencrypt(record.subject, record.header as Uint8Array, recipients);
      const old = await this.#c.store.get(record.blobRef as string);
      const put = await this.#c.store.put(old.pipe(coreTransform(core)));
      let receipts: Receipt[];
      try {
        receipts = await Promise.all([
          this.#c.anchor(revokeEvent(id, readerId, actor.id, true, now)),
          this.#c.anchor({
            type: 'record.reencrypted',
            at: now,
            recordId: id,
            ciphertextHash: put.sha256,
            headerHash: sha256(header),
            size: put.size,
            by: actor.id,
          }),
        ]);
      } catch (err) {
        await this.#c.deleteBlobIfUnused(put.ref, id).catch(() => {});
        throw err;
      }
      this.#c.m.transaction(() => {
        this.#c.m.setHeader(id, header);
        this.#c.m.setBlob(id, put.ref, put.sha256, put.size);
        this.#c.m.revokeGrant(id, readerId, now);
        for (const r of receipts) this.#c.index(id, r);
      });
      await this.#c.deleteBlobIfUnused(record.blobRef as string, id);
      return { receipt: receipts[0] as Receipt, reencrypted: receipts[1] as Receipt };
    });
  }

  /** Drops the stanzas of every grant that has expired (run on a timer by the server). */
  async expireGrants(): Promise<number> {
    const ids = this.#c.m.recordsWithExpiredStanzas(this.#c.now());
    for (const id of ids) await this.#dropExpiredStanzas(id);
    return ids.length;
  }

  /**
   * Rewraps a record that became active after a reader's key rotation ran its rewraps; should
   * that fail, its readers are queued for the rotation rewraps the settler finishes.
   */
  async #rewrapAfterRotation(id: string): Promise<void> {
    try {
      await this.#rewrapToReaders(id);
    } catch (err) {
      for (const g of this.#c.m.liveGrants(id, this.#c.now())) this.#c.m.queueKeyRewrap(g.reader, this.#c.now());
      logger.warn(
        { recordId: id, code: isMedvaultError(err) ? err.code : 'INTERNAL' },
        'a new record not yet rewrapped to a rotated key; finished at the next settling',
      );
    }
  }

  /**
   * Rewraps active record `id`'s header to its live readers' recipients as their member rows say
   * at `now`; `also` is written in the same transaction as the new header.
   */
  async #rewrapToReaders(id: string, now = this.#c.now(), also?: () => void): Promise<void> {
    await this.#c.locked(id, async () => {
      const record = this.#c.m.record(id);
      if (record?.state !== 'active') return;
      const readers = this.#liveReaders(id, now);
      const header = await this.#c.kms.rewrap(record.subject, record.header as Uint8Array, readers.map(recipientOf));
      this.#c.m.transaction(() => {
        this.#c.m.setHeader(id, header);
        also?.();
      });
    });
  }

  async #dropExpiredStanzas(id: string): Promise<void> {
    const now = this.#c.now();
    if (!this.#c.m.hasExpiredStanza(id, now)) return;
    await this.#rewrapToReaders(id, now, () => this.#c.m.markDropped(id, now));
  }

  // Audit and review.

  /** A record's trail, read from the ledger: every event anchored for it, each with its receipt. */
  async audit(actor: MemberRow, id: string): Promise<{ recordId: string; events: Receipt[] }> {
    const record = this.#c.record(id, { allowErased: true });
    authorize(actor, 'audit', this.#facts(record, actor));
    return { recordId: id, events: await this.#c.receiptsOf(id) };
  }

  reviews(actor: MemberRow, open = true) {
    authorize(actor, 'review');
    return this.#c.m.reviews(open);
  }

  /** Closes a break-glass review with its outcome (DPO); anchored as review.closed, on the record's trail. */
  async closeReview(actor: MemberRow, id: string, outcome: 'justified' | 'unjustified'): Promise<{ receipt: Receipt }> {
    authorize(actor, 'review');
    checkMemberId(id);
    return this.#c.locked(`review:${id}`, async () => {
      const review = this.#c.m.review(id);
      if (!review) fail('REVIEW_NOT_FOUND', id);
      if (review.reviewedAt !== null) fail('REQUEST_INVALID', `review ${id} was closed already (${review.outcome})`);
      const at = this.#c.now();
      const receipt = await this.#c.anchor({
        type: 'review.closed',
        at,
        recordId: review.recordId,
        reviewId: id,
        dpo: actor.id,
        outcome,
      });
      this.#c.m.transaction(() => {
        this.#c.m.closeReview(id, actor.id, at, outcome);
        this.#c.index(review.recordId, receipt);
      });
      return { receipt };
    });
  }

  // Health.

  async ready(): Promise<Record<string, string>> {
    const checks: Record<string, string> = {};
    const probe = async (name: string, step: () => Promise<unknown>) => {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('no answer within 2 s')), 2000);
      });
      try {
        await Promise.race([step(), late]);
        checks[name] = 'ok';
      } catch (err) {
        checks[name] = isMedvaultError(err) ? err.code : 'TIMEOUT';
      } finally {
        clearTimeout(timer);
      }
    };
    await Promise.all([
      probe('disk', async () => {
        await this.#reserve?.checkWritable();
        for (const path of this.#diskPaths) {
          const { bavail, blocks, bsize } = await statfs(path);
          if (bavail * bsize < minFree(blocks * bsize)) fail('STORAGE_FULL', `${path}: ${bavail * bsize} bytes free`);
        }
      }),
      probe('metadata', async () => this.#c.m.ping()),
      probe('ledger', () => this.#c.ledger.head()),
      probe('store', async () => {
        // The first entry of a listing: one cheap round trip on every backend.
        for await (const _ref of this.#c.store.list()) break;
      }),
    ]);
    return checks;
  }

  async close(): Promise<void> {
    await this.peers.close();
    await this.#c.close();
    for (const step of this.#onClose.splice(0)) await step();
  }

  /** Runs `step` once the vault is closed (the node's data-directory lock is released so). */
  onClose(step: () => Promise<void>): void {
    this.#onClose.push(step);
  }

  // Internals.

  /**
   * What a fetch serves of `record`'s blob, before any access is anchored: a small one whole and
   * checked, so that a blob the store lost or changed is refused (STORE_NOT_FOUND,
   * STORE_INTEGRITY); a larger one as a stream of exactly its size, once the store says it holds
   * that many bytes (a blob lost, cut or grown is refused the same way; one whose bytes changed
   * is streamed after its access is anchored, and refused by the reader's hash check).
   */
  async #blobOf(record: RecordRow): Promise<Buffer | Readable> {
    const ref = record.blobRef as string;
    if (record.size > WHOLE_BLOB) return readSized(this.#c.store, ref, record.size);
    return readChecked(this.#c.store, ref, record.size, record.ciphertextHash);
  }

  async #contentReceipt(record: RecordRow): Promise<Receipt> {
    const rows = this.#c.m.anchors(record.id, 'record.created', 'record.reencrypted');
    const last = rows[rows.length - 1];
    if (!last) fail('LEDGER_CORRUPT', `record ${record.id} has no creation event indexed`);
    return this.#c.receiptAt(last.height, last.leaf);
  }

  /**
   * The readers named for an upload or a grant. Another node's members come
   * from the ledger, so it is read first (one read of the head when nothing
   * is new) whenever one of them is named, or an id is unknown: a reader
   * published or removed there a moment ago counts.
   */
  async #readers(ids: string[]): Promise<MemberRow[]> {
    for (const id of ids) checkMemberId(id);
    // Unknown (undefined) or another node's (its id): not null.
    if (ids.some((id) => this.#c.m.member(id)?.node !== null)) await this.#index.catchUp();
    return ids.map((id) => this.#reader(id));
  }

  /**
   * The members whose stanzas a rewrapped header keeps: live grantees that are still members.
   * A removed member's grants are revoked when it is removed; one removed before that rule is
   * left out here too, so it never blocks a grant or a break-glass on its records.
   */
  #liveReaders(recordId: string, now: number): MemberRow[] {
    return this.#c.m
      .liveGrants(recordId, now)
      .map((g) => this.#c.m.member(g.reader))
      .filter((m): m is MemberRow => m !== undefined && m.removedAt === null);
  }

  #reader(id: string): MemberRow {
    checkMemberId(id);
    const member = this.#c.m.member(id);
    if (!member || member.removedAt !== null) fail('MEMBER_NOT_FOUND', id);
    return member;
  }

  #facts(record: RecordRow, actor: MemberRow) {
    const grant = this.#c.m.grant(record.id, actor.id);
    return { record, liveGrant: isLive(grant, this.#c.now()) };
  }

  #view(record: RecordRow, manager: boolean, receipt: Receipt): RecordView {
    return { ...this.#summary(record, manager), receipt };
  }

  /**
   * Uploads a crash interrupted: if record.created reached the ledger the
   * record becomes active (with the grants anchored with it); otherwise the
   * row and its blob go.
   */
  /**
   * Settles pending uploads by the ledger: one whose record.created is on the ledger is
   * completed (with the grants found there); one whose record.created is not, once the ledger
   * holds a block at its `settleAfter` height (so an append of it can no longer land), is
   * rolled back, row and blob. Uploads a crash interrupted have no `settleAfter`: on a file
   * ledger (no append outlives its process) they are settled at once; elsewhere an append may
   * still be in the cluster, so they wait for the next block. Run at start-up and by the
   * server's timer; returns how many are still pending. Runs one at a time.
   */
  settlePending(): Promise<number> {
    this.#settling ??= this.#settle().finally(() => {
      this.#settling = null;
    });
    return this.#settling;
  }

  async #settle(): Promise<number> {
    this.#c.retryIndex();
    await this.rotations.resume();
    const pending = this.#c.m.pendingRecords().filter((r) => !this.#inFlight.has(r.id));
    const changes = this.#c.m.pendingChanges().length;
    if (pending.length === 0 && changes === 0) return 0;
    let height: number;
    try {
      height = (await this.#c.ledger.head())?.height ?? -1;
    } catch (err) {
      if (isMedvaultError(err, 'LEDGER_UNAVAILABLE')) {
        logger.warn(
          { pending: pending.length, changes },
          'pending outcomes not settled: the ledger cannot be read; later',
        );
        return pending.length + changes;
      }
      throw err;
    }
    const waiting = await settleChanges(this.#c, this.#changes, height);
    return waiting + (await this.#settleUploads(pending, height));
  }

  async #settleUploads(pending: ReturnType<Metadata['pendingRecords']>, height: number): Promise<number> {
    if (pending.length === 0) return 0;
    for (const record of pending) {
      if (record.settleAfter !== null) continue;
      const after = this.#c.ledger.kind === 'file' ? height : height + 1;
      this.#c.m.setSettleAfter(record.id, after);
      record.settleAfter = after;
    }
    const from = Math.min(...pending.map((r) => r.ledgerFrom));
    const found = new Map<string, Receipt[]>();
    const ids = new Set(pending.map((r) => r.id));
    for await (const block of this.#c.ledger.blocks(from)) {
      if (block.header.height > height) break;
      const tree = eventsTree(block.events);
      block.events.forEach((event, i) => {
        const recordId = event.recordId;
        if (typeof recordId === 'string' && ids.has(recordId)) {
          found.set(recordId, [...(found.get(recordId) ?? []), makeReceipt(block, tree, i)]);
        }
      });
    }
    let left = 0;
    for (const record of pending) {
      const receipts = found.get(record.id) ?? [];
      if (!receipts.some((r) => r.event.type === 'record.created')) {
        if (height < (record.settleAfter as number) && !(await cannotLand(this.#c.ledger, record, height))) {
          logger.info(
            { recordId: record.id, head: height, settleAfter: record.settleAfter },
            'pending upload still open',
          );
          left++;
          continue;
        }
        this.#c.m.deleteRecord(record.id);
        if (record.blobRef) await this.#c.deleteBlobIfUnused(record.blobRef, record.id);
        logger.warn({ recordId: record.id }, 'pending upload rolled back: it was never anchored');
        continue;
      }
      this.#c.m.transaction(() => {
        this.#c.m.activate(record.id);
        for (const r of receipts) {
          this.#c.index(record.id, r);
          const e = r.event;
          if (e.type === 'acl.granted') {
            this.#c.m.upsertGrant({
              recordId: record.id,
              reader: e.reader as string,
              purpose: e.purpose as string,
              grantedBy: e.grantor as string,
              grantedAt: e.at,
              expiresAt: e.expiresAt as number,
            });
          }
        }
      });
      logger.warn({ recordId: record.id }, 'pending upload completed: it was anchored');
      // Its header was made when it was uploaded: a reader may have rotated its keys since.
      await this.#rewrapAfterRotation(record.id);
    }
    return left;
  }

  /**
   * What puts cut off by a crash left in the stores (temporaries, incomplete multipart uploads,
   * unpinned blocks) older than an hour, so that no running put, here or on another node
   * sharing the store, is touched. At start-up and every hour (the server's timer).
   */
  async collectStrays(olderThanMs = 60 * 60_000): Promise<string[]> {
    try {
      const removed = (await this.#c.store.collectStrays?.({ olderThanMs })) ?? [];
      if (removed.length > 0)
        logger.warn({ removed: removed.length }, 'strays of cut-off puts collected from the store');
      return removed;
    } catch (err) {
      logger.warn({ code: isMedvaultError(err) ? err.code : 'INTERNAL' }, 'the store could not be swept for strays');
      return [];
    }
  }

  /** Deletes blobs no record points at (uploads cut off before their row was written). */
  async #collectGarbage(): Promise<void> {
    const used = this.#c.m.blobRefs();
    let removed = 0;
    for await (const ref of this.#c.store.list()) {
      if (used.has(ref)) continue;
      await this.#c.store.delete(ref);
      removed++;
    }
    if (removed > 0) logger.warn({ removed }, 'unreferenced blobs collected at start-up');
  }
}

function isLive(grant: GrantRow | undefined, now: number): boolean {
  return !!grant && grant.revokedAt === null && grant.expiresAt > now;
}

/** Recipients parsed lately, by their text: each keeps its key object for the next wrap to it. */
const RECIPIENTS = new LRUCache<string, X25519Recipient>({ max: 4096 });

function recipientOf(member: MemberRow): Recipient {
  let recipient = RECIPIENTS.get(member.recipient);
  if (!recipient) {
    recipient = X25519Recipient.parse(member.recipient);
    RECIPIENTS.set(member.recipient, recipient);
  }
  return recipient;
}

function checkGrantTerms(purpose: unknown, expiresAt: unknown, now: number): void {
  check(
    typeof purpose === 'string' && PURPOSE.test(purpose),
    'REQUEST_INVALID',
    'a purpose is a short code such as treatment or claims.review',
  );
  check(
    Number.isSafeInteger(expiresAt) && (expiresAt as number) > now && (expiresAt as number) <= now + MAX_GRANT_MS,
    'REQUEST_INVALID',
    'expiresAt is a time (ms) in the future, at most ten years ahead',
  );
}

function grantEvent(recordId: string, reader: string, grantor: string, terms: Omit<GrantInput, 'reader'>, at: number) {
  return {
    type: 'acl.granted' as const,
    at,
    recordId,
    reader,
    grantor,
    purpose: terms.purpose,
    expiresAt: terms.expiresAt,
  };
}

function revokeEvent(recordId: string, reader: string, revoker: string, reencrypted: boolean, at: number) {
  return { type: 'acl.revoked' as const, at, recordId, reader, revoker, reencrypted };
}

/** Reads an age header off the front of a stream; the rest is the payload. */
function checkMemberId(id: unknown): asserts id is string {
  check(typeof id === 'string' && ID.test(id), 'REQUEST_INVALID', 'a member id is 32 hex digits');
}

async function readHeader(
  body: AsyncIterable<Uint8Array>,
): Promise<{ header: Uint8Array; rest: AsyncIterable<Uint8Array> }> {
  const iterator = body[Symbol.asyncIterator]();
  const scanner = new HeaderScanner(UPLOAD_LIMITS);
  for (;;) {
    const { value, done } = await iterator.next();
    if (done) fail('AGE_HEADER_MALFORMED', 'the upload ends inside the age header');
    const end = scanner.push(value);
    if (end < 0) continue;
    const buffered = scanner.bytes;
    // Parsed here, under the upload's limits, before the KMS spends anything on its stanzas.
    parseHeader(buffered.subarray(0, end), UPLOAD_LIMITS);
    const first = buffered.subarray(end);
    const rest = (async function* () {
      if (first.length > 0) yield first;
      for (;;) {
        const next = await iterator.next();
        if (next.done) return;
        yield next.value;
      }
    })();
    return { header: new Uint8Array(buffered.subarray(0, end)), rest };
  }
}

/**
 * Passes the payload through, showing every piece to `probe` (which samples the chunks the KMS
 * then checks), and refuses one too short to be an age payload (nonce + one sealed chunk).
 */
async function* checkPayload(payload: AsyncIterable<Uint8Array>, probe: PayloadProbe): AsyncIterable<Uint8Array> {
  let size = 0;
  for await (const chunk of payload) {
    size += chunk.length;
    noteChunkBytes(chunk.length);
    probe.take(chunk);
    yield chunk;
  }
  if (size < PAYLOAD_NONCE_LENGTH + TAG_LENGTH) fail('AGE_PAYLOAD_TRUNCATED', 'the upload has no age payload');
}

/** When the last of these backup keys expires; null for none. */
function latestExpiry(keys: readonly { expiresAt: number }[]): number | null {
  return keys.length === 0 ? null : Math.max(...keys.map((k) => k.expiresAt));
}
