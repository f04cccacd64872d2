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
 *   upload that could not be anchored answers LEDGER_UNAVAILABLE and changes
 *   nothing. Revocations take effect on the ledger and locally together.
 * - Every change to one record runs under that record's lock, so two grants
 *   never rebuild the header from the same old copy.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { Batcher, type BatcherOptions } from '../anchor/batcher.ts';
import { eventLeaf } from '../anchor/block.ts';
import type { LedgerEvent } from '../anchor/events.ts';
import { checkReceiptOnLedger, type Ledger } from '../anchor/ledger.ts';
import { makeReceipt, type Receipt } from '../anchor/receipt.ts';
import { coreTransform } from '../crypto/age.ts';
import { keyFingerprint, type SigningKey } from '../crypto/ed25519.ts';
import { DEFAULT_LIMITS, findHeaderEnd, type Recipient } from '../crypto/header.ts';
import { MerkleTree } from '../crypto/merkle.ts';
import { noteChunkBytes } from '../crypto/reclaim.ts';
import { PAYLOAD_NONCE_LENGTH } from '../crypto/stream.ts';
import { X25519Recipient } from '../crypto/x25519.ts';
import { check, fail, isMedvaultError } from '../errors.ts';
import type { Kms } from '../kms/kms.ts';
import { logger } from '../log.ts';
import type { BlobStore } from '../storage/blob-store.ts';
import {
  type Cosignature,
  cosignCertificate,
  type ErasureCertificate,
  signCertificate,
  verifyCertificate,
} from './certificate.ts';
import type { GrantRow, MemberRow, Metadata, RecordRow, Role } from './metadata.ts';
import { authorize } from './policy.ts';
import { makeProbes, type Probes, type SweepReport, scanFiles } from './sweep.ts';

const ID = /^[0-9a-f]{32}$/;
const SUBJECT = /^[0-9a-f]{64}$/;
const PURPOSE = /^[a-z][a-z0-9._-]{0,39}$/;
const MAX_READERS = 64;
const TAG_LENGTH = 16;
/** The longest a grant may run: ten years. */
const MAX_GRANT_MS = 10 * 365 * 86_400_000;

export interface VaultDeps {
  metadata: Metadata;
  kms: Kms;
  store: BlobStore;
  ledger: Ledger;
  /** The node's key: signs blocks and erasure certificates. */
  node: SigningKey;
  batcher?: BatcherOptions;
  /** Whether this node owns its store alone, so start-up may collect unreferenced blobs. */
  ownsStore?: boolean;
  clock?: () => number;
  /** The consortium's other nodes: they cosign this node's erasure certificates, and it theirs. */
  peers?: Peer[];
  /** The node's files to sweep for traces after an erasure: data files and log files. */
  sweepFiles?: () => Promise<{ data: string[]; logs: string[] }>;
}

export type ErasureTarget = { subject: string } | { recordId: string };

export interface Peer {
  /** The peer node's key id. */
  id: string;
  /** Its API, e.g. http://10.0.0.2:7400. */
  url: string;
}

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

export interface Opened {
  record: RecordRow;
  /** The header to serve: the stored one, or for break-glass one with the requester added. */
  header: Uint8Array;
  blob: Readable;
  /** The receipt of this access. */
  receipt: Receipt;
  /** The receipt that fixes the served ciphertext's hash (record.created or record.reencrypted). */
  content: Receipt;
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
export const newId = () => randomBytes(16).toString('hex');

export class Vault {
  readonly #m: Metadata;
  readonly #kms: Kms;
  readonly #store: BlobStore;
  readonly #ledger: Ledger;
  readonly #batcher: Batcher;
  readonly #node: SigningKey;
  readonly #now: () => number;
  readonly #locks = new Map<string, Promise<unknown>>();
  readonly #sweepFiles: () => Promise<{ data: string[]; logs: string[] }>;
  #peers: Peer[];

  private constructor(deps: VaultDeps) {
    this.#m = deps.metadata;
    this.#kms = deps.kms;
    this.#store = deps.store;
    this.#ledger = deps.ledger;
    this.#node = deps.node;
    this.#now = deps.clock ?? Date.now;
    this.#sweepFiles = deps.sweepFiles ?? (async () => ({ data: [], logs: [] }));
    this.#peers = deps.peers ?? [];
    this.#batcher = new Batcher(deps.ledger, deps.node, deps.batcher);
  }

  /** Opens the vault and finishes what a crash interrupted: pending uploads, erasures, stray blobs. */
  static async open(deps: VaultDeps): Promise<Vault> {
    const vault = new Vault(deps);
    await vault.#recoverPending();
    for (const erasure of deps.metadata.unfinishedErasures()) await vault.#executeErasure(erasure.id);
    await vault.runDueErasures();
    if (deps.ownsStore) await vault.#collectGarbage();
    return vault;
  }

  get nodeId(): string {
    return this.#node.id;
  }

  get nodeKey(): string {
    return Buffer.from(this.#node.publicKey).toString('base64');
  }

  get ledger(): Ledger {
    return this.#ledger;
  }

  // Members.

  /** The active member with this key id, for authentication. */
  member(id: string): MemberRow | undefined {
    const row = this.#m.member(id);
    return row && row.removedAt === null ? row : undefined;
  }

  listMembers(actor: MemberRow): MemberRow[] {
    authorize(actor, 'member.list');
    return this.#m.members();
  }

  /** Adds a member; `actor` null is the node itself (the first admin, at `medvault init`). */
  async addMember(
    actor: MemberRow | null,
    input: { name: string; role: Role; signingKey: string; recipient: string },
  ): Promise<{ member: MemberRow; receipt: Receipt }> {
    if (actor) authorize(actor, 'member.add');
    const key = Buffer.from(input.signingKey, 'base64');
    check(
      key.length === 32 && key.toString('base64') === input.signingKey,
      'REQUEST_INVALID',
      'signingKey is a base64 Ed25519 key',
    );
    const recipient = X25519Recipient.parse(input.recipient); // KEY_INVALID when malformed
    const id = keyFingerprint(key);
    if (this.#m.member(id) || this.#m.memberByName(input.name)) fail('MEMBER_EXISTS', input.name);
    const at = this.#now();
    const receipt = await this.#anchor({
      type: 'member.added',
      at,
      member: id,
      role: input.role,
      by: actor?.id ?? this.#node.id,
    });
    const member: MemberRow = {
      id,
      name: input.name,
      role: input.role,
      signingKey: input.signingKey,
      recipient: recipient.toString(),
      addedAt: at,
      removedAt: null,
    };
    this.#m.transaction(() => {
      this.#m.addMember(member);
      this.#index(id, receipt);
    });
    return { member, receipt };
  }

  async removeMember(actor: MemberRow, id: string): Promise<{ receipt: Receipt }> {
    authorize(actor, 'member.remove');
    const member = this.member(id);
    if (!member) fail('MEMBER_NOT_FOUND', id);
    const admins = this.#m.members().filter((m) => m.role === 'admin' && m.removedAt === null);
    if (member.role === 'admin' && admins.length === 1) fail('FORBIDDEN', 'the last admin cannot be removed');
    const at = this.#now();
    const receipt = await this.#anchor({ type: 'member.removed', at, member: id, by: actor.id });
    this.#m.transaction(() => {
      this.#m.removeMember(id, at);
      this.#index(id, receipt);
    });
    return { receipt };
  }

  // Upload.

  /** The subject's custodian recipient, for uploaders to encrypt to (made on first use). */
  async custodian(actor: MemberRow, subject: string): Promise<{ recipient: string; keyId: string }> {
    authorize(actor, 'custodian');
    checkSubject(subject);
    const { recipient, keyId } = await this.#kms.custodian(subject);
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
  ): Promise<{ record: RecordView; receipt: Receipt }> {
    authorize(actor, 'upload');
    checkSubject(input.subject);
    checkGrantTerms(input.purpose, input.expiresAt, this.#now());
    check(
      input.readers.length > 0 && input.readers.length <= MAX_READERS,
      'REQUEST_INVALID',
      `name 1 to ${MAX_READERS} readers`,
    );
    const readers = [...new Set(input.readers)].map((id) => this.#reader(id));
    const { header: clientHeader, rest } = await readHeader(body);
    let header: Uint8Array;
    try {
      header = await this.#kms.rewrap(input.subject, clientHeader, readers.map(recipientOf));
    } catch (err) {
      if (isMedvaultError(err) && err.code === 'AGE_NO_IDENTITY') {
        fail('REQUEST_INVALID', "the header has no stanza for the subject's custodian key (encrypt to it)");
      }
      throw err;
    }
    // Read the ledger head first: with the ledger down, the upload is refused before any byte is stored.
    const ledgerFrom = ((await this.#ledger.head())?.height ?? -1) + 1;
    const put = await this.#store.put(checkPayload(rest));
    const id = newId();
    const at = this.#now();
    let receipts: Receipt[];
    try {
      this.#m.insertRecord({
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
      });
      receipts = await Promise.all([
        this.#anchor({
          type: 'record.created',
          at,
          recordId: id,
          ciphertextHash: put.sha256,
          headerHash: sha256(header),
          size: put.size,
          uploader: actor.id,
          subject: input.subject,
          node: this.#node.id,
        }),
        ...readers.map((r) => this.#anchor(grantEvent(id, r.id, actor.id, input, at))),
      ]);
    } catch (err) {
      // Nothing acknowledged: drop the row and the blob (start-up recovery does it if this process dies first).
      this.#m.deleteRecord(id);
      await this.#deleteBlobIfUnused(put.ref, id).catch((e) =>
        logger.error({ err: e, recordId: id }, 'could not delete the blob of a failed upload; start-up GC will'),
      );
      throw err;
    }
    this.#m.transaction(() => {
      this.#m.activate(id);
      for (const r of readers) {
        this.#m.upsertGrant({
          recordId: id,
          reader: r.id,
          purpose: input.purpose,
          grantedBy: actor.id,
          grantedAt: at,
          expiresAt: input.expiresAt,
        });
      }
      for (const receipt of receipts) this.#index(id, receipt);
    });
    const created = receipts[0] as Receipt;
    return { record: this.#view(this.#m.record(id) as RecordRow, true, created), receipt: created };
  }

  // Reading.

  /** A record's metadata and the receipt that fixes its ciphertext hash. */
  async record(actor: MemberRow, id: string): Promise<RecordView> {
    const record = this.#record(id, { allowErased: true });
    authorize(actor, 'record.read', this.#facts(record, actor));
    if (record.state === 'erased') fail('RECORD_ERASED', `erased at ${new Date(record.erasedAt ?? 0).toISOString()}`);
    const manager = record.uploader === actor.id || actor.role === 'dpo';
    return this.#view(record, manager, await this.#contentReceipt(record));
  }

  /** Fetch: a live grantee gets the header and a stream of the blob; the access is anchored first. */
  async open(actor: MemberRow, id: string): Promise<Opened> {
    await this.#dropExpiredStanzas(id);
    const record = this.#record(id);
    authorize(actor, 'fetch', this.#facts(record, actor));
    const content = await this.#contentReceipt(record);
    const blob = await this.#store.get(record.blobRef as string);
    try {
      const receipt = await this.#anchor({
        type: 'record.accessed',
        at: this.#now(),
        recordId: id,
        reader: actor.id,
        node: this.#node.id,
      });
      this.#m.transaction(() => this.#index(id, receipt));
      return { record, header: record.header as Uint8Array, blob, receipt, content };
    } catch (err) {
      blob.destroy();
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
    return this.#locked(id, async () => {
      const record = this.#record(id);
      const readers = this.#m.liveGrants(id, this.#now()).map((g) => this.#reader(g.reader));
      const header = await this.#kms.rewrap(record.subject, record.header as Uint8Array, [
        ...readers.map(recipientOf),
        X25519Recipient.parse(actor.recipient),
      ]);
      const content = await this.#contentReceipt(record);
      const blob = await this.#store.get(record.blobRef as string);
      const salt = randomBytes(32).toString('hex');
      const reviewId = newId();
      try {
        const at = this.#now();
        const receipt = await this.#anchor({
          type: 'access.emergency',
          at,
          recordId: id,
          reader: actor.id,
          reasonDigest: createHmac('sha256', Buffer.from(salt, 'hex')).update(reason, 'utf8').digest('hex'),
        });
        this.#m.transaction(() => {
          this.#index(id, receipt);
          this.#m.addReview({ id: reviewId, recordId: id, reader: actor.id, reason, salt, at });
        });
        return { record, header, blob, receipt, content, reviewId };
      } catch (err) {
        blob.destroy();
        throw err;
      }
    });
  }

  // Grants.

  async grant(actor: MemberRow, id: string, input: GrantInput): Promise<{ receipt: Receipt }> {
    checkGrantTerms(input.purpose, input.expiresAt, this.#now());
    return this.#locked(id, async () => {
      const record = this.#record(id);
      authorize(actor, 'grant', this.#facts(record, actor));
      const reader = this.#reader(input.reader);
      const now = this.#now();
      const readers = this.#m
        .liveGrants(id, now)
        .filter((g) => g.reader !== reader.id)
        .map((g) => this.#reader(g.reader));
      const header = await this.#kms.rewrap(record.subject, record.header as Uint8Array, [
        ...readers.map(recipientOf),
        recipientOf(reader),
      ]);
      const receipt = await this.#anchor(grantEvent(id, reader.id, actor.id, input, now));
      this.#m.transaction(() => {
        this.#m.setHeader(id, header);
        this.#m.upsertGrant({
          recordId: id,
          reader: reader.id,
          purpose: input.purpose,
          expiresAt: input.expiresAt,
          grantedBy: actor.id,
          grantedAt: now,
        });
        this.#index(id, receipt);
      });
      return { receipt };
    });
  }

  /**
   * Revokes a reader: its stanza leaves the header. A reader who already
   * decrypted the record keeps what it read; `reencrypt` (for a suspected key
   * compromise) also makes a new file key and blob and deletes the old blob,
   * so a copy of the old header no longer opens anything the vault serves.
   */
  async revoke(actor: MemberRow, id: string, readerId: string, options: { reencrypt?: boolean } = {}) {
    return this.#locked(id, async () => {
      const record = this.#record(id);
      authorize(actor, 'revoke', this.#facts(record, actor));
      const now = this.#now();
      const grant = this.#m.grant(id, readerId);
      if (!grant || grant.revokedAt !== null) fail('NO_GRANT', `member ${readerId} holds no grant on this record`);
      const readers = this.#m
        .liveGrants(id, now)
        .filter((g) => g.reader !== readerId)
        .map((g) => this.#reader(g.reader, { allowRemoved: true }));
      const recipients = readers.map(recipientOf);
      if (!options.reencrypt) {
        const header = await this.#kms.rewrap(record.subject, record.header as Uint8Array, recipients);
        const receipt = await this.#anchor(revokeEvent(id, readerId, actor.id, false, now));
        this.#m.transaction(() => {
          this.#m.setHeader(id, header);
          this.#m.revokeGrant(id, readerId, now);
          this.#index(id, receipt);
        });
        return { receipt };
      }
      const { header, core } = await this.#kms.reencrypt(record.subject, record.header as Uint8Array, recipients);
      const old = await this.#store.get(record.blobRef as string);
      const put = await this.#store.put(old.pipe(coreTransform(core)));
      let receipts: Receipt[];
      try {
        receipts = await Promise.all([
          this.#anchor(revokeEvent(id, readerId, actor.id, true, now)),
          this.#anchor({
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
        await this.#deleteBlobIfUnused(put.ref, id).catch(() => {});
        throw err;
      }
      this.#m.transaction(() => {
        this.#m.setHeader(id, header);
        this.#m.setBlob(id, put.ref, put.sha256, put.size);
        this.#m.revokeGrant(id, readerId, now);
        for (const r of receipts) this.#index(id, r);
      });
      await this.#deleteBlobIfUnused(record.blobRef as string, id);
      return { receipt: receipts[0] as Receipt, reencrypted: receipts[1] as Receipt };
    });
  }

  /** Drops the stanzas of every grant that has expired (run on a timer by the server). */
  async expireGrants(): Promise<number> {
    const ids = this.#m.recordsWithExpiredStanzas(this.#now());
    for (const id of ids) await this.#dropExpiredStanzas(id);
    return ids.length;
  }

  async #dropExpiredStanzas(id: string): Promise<void> {
    const now = this.#now();
    if (!this.#m.recordsWithExpiredStanzas(now).includes(id)) return;
    await this.#locked(id, async () => {
      const record = this.#m.record(id);
      if (record?.state !== 'active') return;
      const readers = this.#m.liveGrants(id, now).map((g) => this.#reader(g.reader, { allowRemoved: true }));
      const header = await this.#kms.rewrap(record.subject, record.header as Uint8Array, readers.map(recipientOf));
      this.#m.transaction(() => {
        this.#m.setHeader(id, header);
        this.#m.markDropped(id, now);
      });
    });
  }

  // Audit and review.

  /** A record's trail, read from the ledger: every event anchored for it, each with its receipt. */
  async audit(actor: MemberRow, id: string): Promise<{ recordId: string; events: Receipt[] }> {
    const record = this.#record(id, { allowErased: true });
    authorize(actor, 'audit', this.#facts(record, actor));
    const trees = new Map<number, { block: Awaited<ReturnType<Ledger['get']>>; tree: MerkleTree }>();
    const events: Receipt[] = [];
    for (const anchor of this.#m.anchors(id)) events.push(await this.#receiptAt(anchor.height, anchor.leaf, trees));
    return { recordId: id, events };
  }

  reviews(actor: MemberRow, open = true) {
    authorize(actor, 'review');
    return this.#m.reviews(open);
  }

  closeReview(actor: MemberRow, id: string, outcome: 'justified' | 'unjustified'): void {
    authorize(actor, 'review');
    const review = this.#m.review(id);
    if (!review) fail('REVIEW_NOT_FOUND', id);
    this.#m.closeReview(id, actor.id, this.#now(), outcome);
  }

  // Erasure.

  /**
   * Erases a subject (every record, and its custodian key) or one record (the
   * subject's key stays for its other records). Steps, each resumable after a
   * crash or an outage: (1) in one transaction the records turn 410 and lose
   * their headers, grants and break-glass reasons; (2) the custodian key is
   * destroyed; (3) each blob is deleted from every store; (4) a tombstone is
   * anchored per record; (5) the signed certificate is kept and returned.
   */
  async erase(actor: MemberRow, target: ErasureTarget): Promise<ErasureCertificate> {
    const { requestId } = await this.fileErasure(actor, target, 0);
    return this.#executeErasure(requestId);
  }

  /**
   * Files an erasure request, anchored as erasure.filed. With a delay it is
   * scheduled: a DPO may cancel it until `executeAt` (anchored as
   * erasure.cancelled); then the server's timer runs it. Without one it
   * starts at once (`erase` runs it to the certificate).
   */
  async fileErasure(
    actor: MemberRow,
    target: ErasureTarget,
    delayMs: number,
  ): Promise<{ requestId: string; state: 'scheduled' | 'executing'; executeAt: number; receipt: Receipt }> {
    authorize(actor, 'erase');
    check(
      Number.isSafeInteger(delayMs) && delayMs >= 0 && delayMs <= 90 * 86_400_000,
      'REQUEST_INVALID',
      'the cancel window is 0 to 90 days',
    );
    let scope: 'subject' | 'record';
    let value: string;
    if ('subject' in target) {
      checkSubject(target.subject);
      scope = 'subject';
      value = target.subject;
    } else {
      scope = 'record';
      value = target.recordId;
      this.#record(value); // RECORD_NOT_FOUND, RECORD_ERASED
    }
    const requestId = newId();
    const at = this.#now();
    const executeAt = at + delayMs;
    const receipt = await this.#anchor({
      type: 'erasure.filed',
      at,
      requestId,
      dpo: actor.id,
      scope,
      target: value,
      executeAt,
    });
    const state = delayMs > 0 ? 'scheduled' : 'executing';
    this.#m.transaction(() => {
      this.#m.addErasure({ id: requestId, scope, target: value, filedBy: actor.id, filedAt: at, executeAt, state });
      this.#index(requestId, receipt);
    });
    if (state === 'executing') this.#beginErasure(requestId);
    return { requestId, state, executeAt, receipt };
  }

  /** Cancels a scheduled erasure inside its window; anchored as erasure.cancelled. */
  async cancelErasure(actor: MemberRow, requestId: string): Promise<{ receipt: Receipt }> {
    authorize(actor, 'erase');
    check(ID.test(requestId), 'REQUEST_INVALID', 'a request id is 32 hex digits');
    return this.#locked(`erasure:${requestId}`, async () => {
      const row = this.#m.erasure(requestId);
      if (!row) fail('ERASURE_NOT_FOUND', requestId);
      if (row.state !== 'scheduled') fail('ERASURE_NOT_CANCELLABLE', `it is ${row.state}`);
      const receipt = await this.#anchor({ type: 'erasure.cancelled', at: this.#now(), requestId, by: actor.id });
      this.#m.transaction(() => {
        this.#m.cancelErasure(requestId, actor.id, this.#now());
        this.#index(requestId, receipt);
      });
      return { receipt };
    });
  }

  /** Runs every scheduled erasure whose window has passed (the server calls it on a timer). */
  async runDueErasures(): Promise<ErasureCertificate[]> {
    const done: ErasureCertificate[] = [];
    for (const row of this.#m.dueErasures(this.#now())) {
      const certificate = await this.#locked(`erasure:${row.id}`, async () => {
        if (this.#m.erasure(row.id)?.state !== 'scheduled') return null;
        this.#beginErasure(row.id);
        return this.#executeErasure(row.id);
      });
      if (certificate) done.push(certificate);
    }
    return done;
  }

  listErasures(actor: MemberRow) {
    authorize(actor, 'erase');
    return this.#m.erasures().map(({ certificate: _c, probes: _p, ...row }) => row);
  }

  /**
   * Step 1 of executing an erasure, in one transaction: the records (for a
   * subject: those it has now) turn 410 and lose headers, grants and reasons;
   * probes of the headers are kept for the sweep.
   */
  #beginErasure(requestId: string): void {
    const row = this.#m.erasure(requestId);
    if (!row) fail('ERASURE_NOT_FOUND', requestId);
    const records =
      row.scope === 'subject'
        ? this.#m.recordsOf(row.target, 'active')
        : [this.#m.record(row.target)].filter((r): r is RecordRow => r?.state === 'active');
    const probes = makeProbes(records.map((r) => r.header).filter((h): h is Uint8Array => h !== null));
    this.#m.transaction(() => {
      this.#m.setProbes(requestId, JSON.stringify(probes));
      this.#m.setErasureState(requestId, 'executing');
      this.#m.beginErasure(
        records.map((r) => r.id),
        requestId,
        this.#now(),
      );
    });
    this.#m.checkpoint();
  }

  /**
   * The post-erasure sweep: every store for the erased blobs, the KMS for the
   * custodian key, the metadata for headers, grants and reasons, and the
   * node's files and logs for any byte of the erased headers (see sweep.ts).
   */
  async sweep(actor: MemberRow, requestId: string): Promise<SweepReport> {
    authorize(actor, 'erase');
    const row = this.#m.erasure(requestId);
    if (!row) fail('ERASURE_NOT_FOUND', requestId);
    if (row.state !== 'done') fail('ERASURE_NOT_CANCELLABLE', `the erasure is ${row.state}: sweep it once it is done`);
    const records = this.#m.recordsOfErasure(requestId);
    const checked: string[] = [];
    const findings: SweepReport['findings'] = [];
    for (const record of records) {
      for (const blob of this.#m.erasedBlobs(requestId, record.id)) {
        checked.push(`store ${this.#store.kind}: ${blob.ref}`);
        if (await this.#store.has(blob.ref))
          findings.push({ where: `store ${this.#store.kind}`, what: blob.ref, count: 1 });
      }
      if (record.header !== null || record.blobRef !== null) {
        findings.push({ where: 'metadata', what: `record ${record.id} still has its header or blob ref`, count: 1 });
      }
      const grants = this.#m.liveGrants(record.id, 0).length;
      if (grants > 0) findings.push({ where: 'metadata', what: `record ${record.id} grants`, count: grants });
    }
    checked.push('metadata: headers, blob refs, grants');
    if (row.scope === 'subject') {
      checked.push(`kms ${this.#kms.backend}: custodian of the subject`);
      for (const what of (await this.#kms.holds?.(row.target)) ?? []) {
        findings.push({ where: `kms ${this.#kms.backend}`, what, count: 1 });
      }
    }
    const probes = row.probes ? (JSON.parse(row.probes) as Probes) : { salt: '', hashes: [] };
    const files = await this.#sweepFiles();
    const data = await scanFiles(files.data, probes, []);
    const keyId = row.certificate ? (JSON.parse(row.certificate) as ErasureCertificate).kms?.keyId : undefined;
    const logs = await scanFiles(files.logs, probes, [
      ...records.map((r) => r.ciphertextHash),
      ...(keyId ? [keyId] : []),
    ]);
    return {
      requestId,
      records: records.length,
      checked: [...checked, ...data.checked, ...logs.checked],
      findings: [...findings, ...data.findings, ...logs.findings],
    };
  }

  erasureCertificate(actor: MemberRow, requestId: string): ErasureCertificate {
    authorize(actor, 'erase');
    const row = this.#m.erasure(requestId);
    if (!row?.certificate) fail('ERASURE_NOT_FOUND', requestId);
    return JSON.parse(row.certificate) as ErasureCertificate;
  }

  /** Runs (or resumes) an erasure's remaining steps; see `erase`. */
  async #executeErasure(requestId: string): Promise<ErasureCertificate> {
    const request = this.#m.erasure(requestId);
    if (!request) fail('ERASURE_NOT_FOUND', requestId);
    if (request.certificate) return JSON.parse(request.certificate) as ErasureCertificate;
    const records = this.#m.recordsOfErasure(requestId);
    const kms = request.scope === 'subject' ? await this.#kms.destroy(request.target) : null;
    for (const record of records) {
      if (record.blobRef === null) continue;
      const result = await this.#deleteBlobIfUnused(record.blobRef, record.id);
      this.#m.blobErased(requestId, record.id, record.blobRef, result.removed, result.confirmed);
    }
    const anchored = new Set(
      records.filter((r) => this.#m.anchors(r.id).some((a) => a.type === 'record.erased')).map((r) => r.id),
    );
    const receipts = await Promise.all(
      records.map(async (record) => {
        if (anchored.has(record.id)) {
          const row = this.#m.anchors(record.id).find((a) => a.type === 'record.erased');
          return this.#receiptAt(row?.height ?? 0, row?.leaf ?? 0, new Map());
        }
        const receipt = await this.#anchor({
          type: 'record.erased',
          at: this.#now(),
          recordId: record.id,
          ciphertextHash: record.ciphertextHash,
          dpo: request.filedBy,
          requestId,
        });
        this.#m.transaction(() => this.#index(record.id, receipt));
        return receipt;
      }),
    );
    const filedRow = this.#m.anchors(requestId).find((a) => a.type === 'erasure.filed');
    if (!filedRow) fail('LEDGER_CORRUPT', `erasure ${requestId} has no erasure.filed indexed`);
    const filed = await this.#receiptAt(filedRow.height, filedRow.leaf, new Map());
    const certificate = signCertificate(
      {
        requestId,
        filed,
        scope: request.scope === 'subject' ? { subject: request.target } : { recordId: request.target },
        dpo: request.filedBy,
        executedAt: this.#now(),
        kms: kms && { backend: kms.backend, keyId: kms.keyId, confirmed: kms.confirmed },
        records: records.map((record, i) => ({
          recordId: record.id,
          ciphertextHash: record.ciphertextHash,
          stores: this.#m.erasedBlobs(requestId, record.id),
          tombstone: receipts[i] as Receipt,
        })),
      },
      this.#node,
    );
    this.#m.finishErasure(requestId, JSON.stringify(certificate));
    this.#m.checkpoint();
    logger.info({ requestId, records: records.length, scope: request.scope }, 'erasure executed');
    return this.#gatherCosignatures(certificate);
  }

  /** The consortium's other nodes, for cosigning (configuration, or a test wiring nodes up). */
  setPeers(peers: Peer[]): void {
    this.#peers = [...peers];
  }

  /**
   * Asks every peer to confirm the certificate and keeps the cosignatures
   * that verify. A peer that is down or refuses is logged and left out; the
   * DPO can ask again (POST /v1/erasures/:id/cosign).
   */
  async #gatherCosignatures(certificate: ErasureCertificate): Promise<ErasureCertificate> {
    if (this.#peers.length === 0) return certificate;
    const cosignatures = [...(certificate.cosignatures ?? [])];
    for (const peer of this.#peers) {
      if (cosignatures.some((c) => c.signer === peer.id)) continue;
      try {
        const response = await fetch(`${peer.url.replace(/\/$/, '')}/v1/cosign`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ certificate }),
          signal: AbortSignal.timeout(10_000),
        });
        const body = (await response.json()) as Cosignature & { code?: string; message?: string };
        if (!response.ok) {
          logger.warn({ peer: peer.id, code: body.code, requestId: certificate.requestId }, 'peer refused to cosign');
          continue;
        }
        const withIt = { ...certificate, cosignatures: [...cosignatures, body] };
        const { cosigners } = verifyCertificate(withIt);
        if (!cosigners.includes(peer.id)) throw new Error('the cosignature is not by that peer');
        cosignatures.push(body);
      } catch (err) {
        logger.warn({ peer: peer.id, err: (err as Error).message, requestId: certificate.requestId }, 'no cosignature');
      }
    }
    const cosigned = { ...certificate, cosignatures };
    this.#m.finishErasure(certificate.requestId, JSON.stringify(cosigned));
    return cosigned;
  }

  /** Asks the peers again for the cosignatures a certificate lacks (DPO). */
  async recollectCosignatures(actor: MemberRow, requestId: string): Promise<ErasureCertificate> {
    return this.#gatherCosignatures(this.erasureCertificate(actor, requestId));
  }

  /**
   * Confirms another node's erasure: the certificate verifies (signed by a
   * known peer), its filing and every tombstone are on this node's view of
   * the shared ledger, and this node holds none of the records nor, for a
   * subject, a custodian key of its own. Then it cosigns with its node key.
   */
  async cosign(value: unknown): Promise<Cosignature> {
    const certificate = value as ErasureCertificate;
    const peerIds = this.#peers.map((p) => p.id);
    const verified = verifyCertificate(value, { trusted: [...peerIds, this.#node.id] });
    if (!peerIds.includes(verified.signer)) fail('COSIGN_REFUSED', `${verified.signer} is not a peer of this node`);
    let head = 0;
    try {
      for (const receipt of [certificate.filed, ...certificate.records.map((r) => r.tombstone)]) {
        ({ headHeight: head } = await checkReceiptOnLedger(this.#ledger, receipt));
      }
    } catch (err) {
      if (isMedvaultError(err) && err.code === 'RECEIPT_INVALID')
        fail('COSIGN_REFUSED', `not on this ledger: ${err.message}`);
      throw err;
    }
    for (const { recordId } of certificate.records) {
      const held = this.#m.record(recordId);
      if (held && (held.state !== 'erased' || held.header !== null || held.blobRef !== null)) {
        fail('COSIGN_REFUSED', `this node still holds record ${recordId}`);
      }
    }
    if ('subject' in certificate.scope) {
      const active = this.#m.recordsOf(certificate.scope.subject, 'active').length;
      if (active > 0) fail('COSIGN_REFUSED', `this node holds ${active} record(s) of the subject: erase them here too`);
      const holds = (await this.#kms.holds?.(certificate.scope.subject)) ?? [];
      if (holds.length > 0) fail('COSIGN_REFUSED', `this node's KMS still holds ${holds.join('; ')}`);
    }
    return cosignCertificate(
      certificate,
      this.#node,
      `verified the certificate and its ${certificate.records.length} tombstone(s) on the ledger (head ${head}); ` +
        `this node holds none of the records${'subject' in certificate.scope ? ' and no custodian key for the subject' : ''}`,
    );
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
      probe('metadata', async () => this.#m.ping()),
      probe('ledger', () => this.#ledger.head()),
      probe('store', async () => {
        // The first entry of a listing: one cheap round trip on every backend.
        for await (const _ref of this.#store.list()) break;
      }),
    ]);
    return checks;
  }

  async close(): Promise<void> {
    await this.#batcher.flush();
    await this.#ledger.close();
    await this.#store.close();
    await this.#kms.close?.();
    this.#m.close();
  }

  // Internals.

  #locked<T>(key: string, step: () => Promise<T>): Promise<T> {
    const previous = this.#locks.get(key) ?? Promise.resolve();
    const run = previous.then(step, step);
    const tail = run.catch(() => {});
    this.#locks.set(key, tail);
    void tail.then(() => {
      if (this.#locks.get(key) === tail) this.#locks.delete(key);
    });
    return run;
  }

  #anchor(event: LedgerEvent): Promise<Receipt> {
    return this.#batcher.submit(event);
  }

  #index(recordId: string, receipt: Receipt): void {
    this.#m.addAnchor({
      recordId,
      type: receipt.event.type,
      height: receipt.block.height,
      leaf: receipt.leafIndex,
      at: receipt.event.at,
    });
  }

  async #receiptAt(
    height: number,
    leaf: number,
    cache: Map<number, { block: Awaited<ReturnType<Ledger['get']>>; tree: MerkleTree }>,
  ): Promise<Receipt> {
    let entry = cache.get(height);
    if (!entry) {
      const block = await this.#ledger.get(height);
      if (!block) fail('LEDGER_CORRUPT', `block ${height}, indexed by the metadata store, is not on the ledger`);
      entry = { block, tree: new MerkleTree(block.events.map(eventLeaf)) };
      cache.set(height, entry);
    }
    return makeReceipt(entry.block as NonNullable<typeof entry.block>, entry.tree, leaf);
  }

  async #contentReceipt(record: RecordRow): Promise<Receipt> {
    const rows = this.#m
      .anchors(record.id)
      .filter((a) => a.type === 'record.created' || a.type === 'record.reencrypted');
    const last = rows[rows.length - 1];
    if (!last) fail('LEDGER_CORRUPT', `record ${record.id} has no creation event indexed`);
    return this.#receiptAt(last.height, last.leaf, new Map());
  }

  #record(id: string, options: { allowErased?: boolean } = {}): RecordRow {
    check(typeof id === 'string' && ID.test(id), 'REQUEST_INVALID', 'a record id is 32 hex digits');
    const record = this.#m.record(id);
    if (!record || record.state === 'pending') fail('RECORD_NOT_FOUND', id);
    if (record.state === 'erased' && !options.allowErased) {
      fail('RECORD_ERASED', `erased at ${new Date(record.erasedAt ?? 0).toISOString()}`);
    }
    return record;
  }

  #reader(id: string, options: { allowRemoved?: boolean } = {}): MemberRow {
    check(typeof id === 'string' && ID.test(id), 'REQUEST_INVALID', 'a member id is 32 hex digits');
    const member = this.#m.member(id);
    if (!member || (member.removedAt !== null && !options.allowRemoved)) fail('MEMBER_NOT_FOUND', id);
    return member;
  }

  #facts(record: RecordRow, actor: MemberRow) {
    const grant = this.#m.grant(record.id, actor.id);
    return { record, liveGrant: isLive(grant, this.#now()) };
  }

  #view(record: RecordRow, manager: boolean, receipt: Receipt): RecordView {
    const view: RecordView = {
      id: record.id,
      subject: record.subject,
      uploader: record.uploader,
      state: record.state === 'erased' ? 'erased' : 'active',
      ciphertextHash: record.ciphertextHash,
      size: record.size,
      createdAt: record.createdAt,
      erasedAt: record.erasedAt,
      receipt,
    };
    if (manager) {
      view.grants = this.#m
        .liveGrants(record.id, this.#now())
        .map((g) => ({ reader: g.reader, purpose: g.purpose, expiresAt: g.expiresAt }));
    }
    return view;
  }

  async #deleteBlobIfUnused(ref: string, recordId: string): Promise<{ removed: boolean; confirmed: string }> {
    if (this.#m.blobUsers(ref, recordId) > 0) return { removed: false, confirmed: 'kept: another record uses it' };
    return this.#store.delete(ref);
  }

  /**
   * Uploads a crash interrupted: if record.created reached the ledger the
   * record becomes active (with the grants anchored with it); otherwise the
   * row and its blob go.
   */
  async #recoverPending(): Promise<void> {
    const pending = this.#m.pendingRecords();
    if (pending.length === 0) return;
    const from = Math.min(...pending.map((r) => r.ledgerFrom));
    const found = new Map<string, Receipt[]>();
    const ids = new Set(pending.map((r) => r.id));
    for await (const block of this.#ledger.blocks(from)) {
      const tree = new MerkleTree(block.events.map(eventLeaf));
      block.events.forEach((event, i) => {
        const recordId = event.recordId;
        if (typeof recordId === 'string' && ids.has(recordId)) {
          found.set(recordId, [...(found.get(recordId) ?? []), makeReceipt(block, tree, i)]);
        }
      });
    }
    for (const record of pending) {
      const receipts = found.get(record.id) ?? [];
      if (!receipts.some((r) => r.event.type === 'record.created')) {
        this.#m.deleteRecord(record.id);
        if (record.blobRef) await this.#deleteBlobIfUnused(record.blobRef, record.id);
        logger.warn({ recordId: record.id }, 'interrupted upload rolled back: it was never anchored');
        continue;
      }
      this.#m.transaction(() => {
        this.#m.activate(record.id);
        for (const r of receipts) {
          this.#index(record.id, r);
          const e = r.event;
          if (e.type === 'acl.granted') {
            this.#m.upsertGrant({
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
      logger.warn({ recordId: record.id }, 'interrupted upload completed: it was anchored before the crash');
    }
  }

  /** Deletes blobs no record points at (uploads cut off before their row was written). */
  async #collectGarbage(): Promise<void> {
    const used = this.#m.blobRefs();
    let removed = 0;
    for await (const ref of this.#store.list()) {
      if (used.has(ref)) continue;
      await this.#store.delete(ref);
      removed++;
    }
    if (removed > 0) logger.warn({ removed }, 'unreferenced blobs collected at start-up');
  }
}

function isLive(grant: GrantRow | undefined, now: number): boolean {
  return !!grant && grant.revokedAt === null && grant.expiresAt > now;
}

function recipientOf(member: MemberRow): Recipient {
  return X25519Recipient.parse(member.recipient);
}

function checkSubject(subject: unknown): asserts subject is string {
  check(
    typeof subject === 'string' && SUBJECT.test(subject),
    'REQUEST_INVALID',
    'a subject is a 64-hex-digit keyed pseudonym, never a name or patient number',
  );
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
async function readHeader(
  body: AsyncIterable<Uint8Array>,
): Promise<{ header: Uint8Array; rest: AsyncIterable<Uint8Array> }> {
  const iterator = body[Symbol.asyncIterator]();
  let buffered = Buffer.alloc(0);
  for (;;) {
    const { value, done } = await iterator.next();
    if (done) fail('AGE_HEADER_MALFORMED', 'the upload ends inside the age header');
    buffered = Buffer.concat([buffered, value]);
    const end = findHeaderEnd(buffered, DEFAULT_LIMITS);
    if (end < 0) continue;
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

/** Passes the payload through, refusing one too short to be an age payload (nonce + one sealed chunk). */
async function* checkPayload(payload: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  let size = 0;
  for await (const chunk of payload) {
    size += chunk.length;
    noteChunkBytes(chunk.length);
    yield chunk;
  }
  if (size < PAYLOAD_NONCE_LENGTH + TAG_LENGTH) fail('AGE_PAYLOAD_TRUNCATED', 'the upload has no age payload');
}
