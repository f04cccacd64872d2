/**
 * The medvault SDK (`medvault/client`): a member's side of the vault. It
 * encrypts before upload (the node never sees plaintext), signs every
 * request with the member's Ed25519 key, decrypts fetched records locally
 * with the member's age identity, and verifies what the node sends back:
 * receipts (offline, against the node key), the fetched ciphertext against
 * the hash anchored for it, and erasure certificates.
 *
 * A member key file is a valid age identity file (the stock `age -i` reads
 * it) whose Ed25519 signing seed rides in a comment line age ignores.
 */

import { createHash, randomUUID } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { Readable } from 'node:stream';
import { LRUCache } from 'lru-cache';
import { type Dispatcher, request as undiciRequest } from 'undici';
import { type Checkpoint, verifyCheckpoint } from '../../anchor/checkpoint.ts';
import { followHistory } from '../../anchor/key-history.ts';
import { type Receipt, verifyReceipt } from '../../anchor/receipt.ts';
import type { TrustedKeys } from '../../anchor/trusted-keys.ts';
import { AgeEncryptor, encrypt, type StreamCore } from '../../crypto/age.ts';
import { X25519Recipient } from '../../crypto/x25519.ts';
import { answerError, check, fail, MedvaultError } from '../../errors.ts';
import { type ErasureCertificate, verifyCertificate } from '../protocol/certificate.ts';
import { checkJoinRequest, type JoinRequest, openSecret } from '../protocol/invites.ts';
import {
  generateMemberKeys,
  type MemberCredentials,
  memberIdOf,
  memberKeyFileText,
  memberPublic,
  parseMemberKeyFile,
  rotationRequest,
} from '../protocol/member-keys.ts';
import { BODY_TRAILER, bodyMessage, HEADER, signRequest, UNSIGNED_PAYLOAD } from '../protocol/signing.ts';
import { type SubjectReport, verifySubjectReport } from '../protocol/subject-report.ts';
import { caAgent } from '../protocol/tls.ts';
import type {
  BackupKey,
  BackupManifest,
  ConsortiumNode,
  ErasureRow,
  MemberRow,
  NodeInfo,
  RecordPage,
  RecordSummary,
  RecordView,
  ReviewRow,
  Role,
  SweepReport,
} from '../protocol/views.ts';
import { CheckedDecryptor, servedReceipt } from './checked-decryptor.ts';
import { coreReadable, ioError, pump, type Sink } from './pump.ts';

export type {
  ErasureCertificate,
  JoinRequest,
  MemberCredentials,
  NodeInfo,
  Receipt,
  RecordPage,
  RecordSummary,
  RecordView,
  Role,
  SubjectReport,
  SweepReport,
};
export { generateMemberKeys, memberKeyFileText, memberPublic, parseMemberKeyFile };

export interface UploadOptions {
  subject: string;
  /** Member ids of the readers (the uploader is added unless `includeSelf` is false). */
  readers: readonly string[];
  purpose: string;
  expiresAt: number;
  includeSelf?: boolean;
  /** Called as plaintext bytes are read. */
  onProgress?: (bytes: number) => void;
  /**
   * This upload's key (8-64 of A-Z a-z 0-9 _ -; a random one when absent): upload again with
   * the same key after an error (OUTCOME_PENDING, a lost connection) and the node returns the
   * first upload's record (`repeated`) instead of making a second one.
   */
  idempotencyKey?: string;
}

export interface FetchResult {
  recordId: string;
  /** The SHA-256 of the ciphertext served, as anchored for the record. */
  ciphertextHash: string;
  /** The receipt of this access (record.accessed or access.emergency). */
  access: Receipt;
  /** The receipt that fixes the ciphertext hash (record.created or record.reencrypted). */
  content: Receipt;
  /** Plaintext bytes written. */
  bytes: number;
  reviewId?: string;
}

/** Options of a fetch: `onProgress` is called with the ciphertext bytes received and the total (0: unknown). */
export interface FetchOptions {
  onProgress?: (received: number, total: number) => void;
}

type Body = Uint8Array | string | Readable;

/** The filters of a record search (GET /v1/records); times in ms since the epoch. */
export interface RecordFilters {
  subject?: string;
  uploader?: string;
  reader?: string;
  purpose?: string;
  since?: number;
  until?: number;
  state?: 'active' | 'erased' | 'pending-erasure';
  cursor?: string;
  limit?: number;
}

export class VaultClient {
  readonly #base: string;
  #keys: MemberCredentials;
  #trusted: TrustedKeys | undefined;
  readonly #trustRoots: string[] | undefined;
  #subjectKey: Promise<Uint8Array> | undefined;
  #members: { at: number; rows: MemberRow[] } | undefined;
  /** Custodian recipients by subject: one per subject for the node's lifetime, until erasure. */
  readonly #custodians = new Map<string, { recipient: string; keyId: string }>();
  /**
   * Block headers this client has checked the signature of, byte for byte: concurrent fetches'
   * receipts share a few blocks (a record's creation, a batch of accesses), so each header's
   * Ed25519 check is done once. Every receipt's own audit path is still checked.
   */
  readonly #verifiedHeaders = ((cache) => ({
    has: (header: string) => cache.has(header),
    add: (header: string) => cache.set(header, true),
  }))(new LRUCache<string, true>({ max: 1024 }));

  readonly #dispatcher: Dispatcher | undefined;
  readonly #uploadAgent: HttpAgent;

  /**
   * `trusted`: the node key ids whose receipts to accept; default: the node answering and its
   * peers, as it says; either followed through the node key hand-overs the node names. `ca`: the CA (PEM) that signed the node's TLS certificate, for a node
   * at https:// whose certificate a public CA did not sign.
   */
  constructor(baseUrl: string, keys: MemberCredentials, options: { trusted?: string[]; ca?: Buffer } = {}) {
    this.#base = baseUrl.replace(/\/$/, '');
    this.#keys = keys;
    this.#trustRoots = options.trusted;
    this.#dispatcher = options.ca ? caAgent(options.ca) : undefined;
    this.#uploadAgent = this.#base.startsWith('https:')
      ? new HttpsAgent({ keepAlive: true, ...(options.ca ? { ca: options.ca } : {}) })
      : uploadAgent;
  }

  get memberId(): string {
    return memberIdOf(this.#keys);
  }

  async #request(method: string, path: string, body?: Body, headers: Record<string, string> = {}): Promise<Answer> {
    const url = new URL(this.#base + path);
    const signedPath = url.pathname + url.search;
    const json = typeof body === 'string' ? body : undefined;
    const stream = body instanceof Readable ? body : undefined;
    // A binary body held whole (a small upload) signs its SHA-256 in the request itself, as the
    // web console does: no trailer, so the node checks one signature instead of two.
    const bytes = body instanceof Uint8Array ? body : undefined;
    const signed: Record<string, string> = {
      ...headers,
      ...signRequest(this.#keys.signing, method, signedPath, stream ? UNSIGNED_PAYLOAD : (json ?? bytes)),
      ...(json !== undefined ? { 'content-type': 'application/json' } : {}),
      ...(stream || bytes ? { 'content-type': 'application/octet-stream' } : {}),
    };
    let response: Answer;
    try {
      response = stream
        ? await streamUpload(url, signed, stream, this.#uploadAgent, (sha256) =>
            Buffer.from(this.#keys.signing.sign(bodyMessage(signed[HEADER.signature] as string, sha256))).toString(
              'base64',
            ),
          )
        : await send(url, method, signed, json ?? bytes, this.#dispatcher);
    } catch (err) {
      throw unavailable(url, err);
    }
    if (response.status < 200 || response.status > 299) {
      const text = await response.text();
      let parsed: { code?: string; message?: string; recordId?: string } = {};
      try {
        parsed = JSON.parse(text);
      } catch {}
      throw answerError(response.status, parsed);
    }
    return response;
  }

  async #json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await this.#request(method, path, body === undefined ? undefined : JSON.stringify(body));
    if (response.status === 204) {
      response.body.resume(); // nothing to read: the connection goes back to the pool
      return undefined as T;
    }
    return (await response.json()) as T;
  }

  async #trust(): Promise<TrustedKeys> {
    if (!this.#trusted) {
      // The node and the peers it names: a record held by a peer comes with that peer's receipts;
      // followed through the node key hand-overs the node names, each checked here.
      const node = await this.node();
      const roots = this.#trustRoots ?? [node.id, ...(node.peers ?? [])];
      this.#trusted = followHistory(roots, node.keyHistory ?? []);
    }
    return this.#trusted;
  }

  /** Verifies a receipt offline against the trusted node keys and returns it. */
  async verify(receipt: Receipt): Promise<Receipt> {
    verifyReceipt(receipt, { trusted: await this.#trust(), verifiedHeaders: this.#verifiedHeaders });
    return receipt;
  }

  async node(): Promise<NodeInfo> {
    const url = new URL(`${this.#base}/v1/node`);
    const response = await send(url, 'GET', {}, undefined, this.#dispatcher).catch((err: unknown) => {
      throw unavailable(url, err);
    });
    return (await response.json()) as NodeInfo;
  }

  // Members.

  /**
   * The directory as of at most 30 s ago, for choosing recipients: the node
   * checks every named reader again, so a stale entry cannot grant anything.
   */
  async #directory(fresh = false): Promise<MemberRow[]> {
    if (fresh || !this.#members || this.#members.at < Date.now() - 30_000) {
      this.#members = { at: Date.now(), rows: await this.members() };
    }
    return this.#members.rows;
  }

  async members(): Promise<MemberRow[]> {
    return (await this.#json<{ members: MemberRow[] }>('GET', '/v1/members')).members;
  }

  /** Adds a member (admin); with `node`, a reader of that other node, whose fetches it forwards here. */
  async addMember(input: { name: string; role: Role; signingKey: string; recipient: string; node?: string }) {
    const result = await this.#json<{ member: MemberRow; receipt: Receipt }>('POST', '/v1/members', input);
    await this.verify(result.receipt);
    return result;
  }

  async removeMember(id: string): Promise<{ receipt: Receipt }> {
    const result = await this.#json<{ receipt: Receipt }>('DELETE', `/v1/members/${id}`);
    await this.verify(result.receipt);
    return result;
  }

  /**
   * Gives (`granted` true) or withdraws a member's break-glass capability (admin); anchored as
   * member.capability. Only this node's uploaders and readers may hold it.
   */
  async setEmergencyAccess(id: string, granted: boolean): Promise<{ member: MemberRow; receipt?: Receipt }> {
    const result = await this.#json<{ member: MemberRow; receipt?: Receipt }>(
      granted ? 'PUT' : 'DELETE',
      `/v1/members/${id}/emergency-access`,
    );
    if (result.receipt) await this.verify(result.receipt);
    return result;
  }

  /**
   * Replaces member `id`'s keys with `next` (generateMemberKeys()): this client's own member's
   * by default, or, an admin, another member's of its node whose key was lost. Anchored as
   * key.rotated; the member keeps its id and grants, the previous key signs nothing again.
   * Returns `next` with the member's id: write it to the member's key file
   * (memberKeyFileText). A client rotating its own keys signs with the new ones from then
   * on, also when the answer is OUTCOME_PENDING (the node applied the rotation while the
   * ledger settles it): keep `next` whatever the answer but a refusal.
   */
  async rotateKeys(
    next: MemberCredentials,
    id: string = this.memberId,
  ): Promise<{
    member: MemberRow;
    receipt: Receipt;
    rewrapped: number;
    rewrapsPending: boolean;
    keys: MemberCredentials;
  }> {
    const keys: MemberCredentials = { signing: next.signing, identity: next.identity, member: id };
    const self = id === this.memberId;
    let result: { member: MemberRow; receipt: Receipt; rewrapped: number; rewrapsPending: boolean };
    try {
      result = await this.#json('PUT', `/v1/members/${id}/keys`, rotationRequest(id, next));
    } catch (err) {
      if (self && (err as MedvaultError).code === 'OUTCOME_PENDING') this.#keys = keys;
      throw err;
    }
    if (self) this.#keys = keys;
    await this.verify(result.receipt);
    return { ...result, keys };
  }

  /** A member's id from its id, name or age recipient. */
  async resolveMember(ref: string): Promise<MemberRow> {
    const found = (await this.members()).find((m) => m.removedAt === null && [m.id, m.name, m.recipient].includes(ref));
    if (!found) fail('MEMBER_NOT_FOUND', ref);
    return found;
  }

  // Records.

  async custodian(subject: string): Promise<{ recipient: string; keyId: string }> {
    return this.#json('GET', `/v1/subjects/${subject}/custodian`);
  }

  /**
   * Encrypts `source` here, to the subject's custodian (the node's KMS wraps its key to the
   * readers), and streams the ciphertext to the node. Resolves with the record and the
   * verified receipt of record.created.
   */
  async upload(
    source: Readable | Uint8Array | FileSource,
    options: UploadOptions,
  ): Promise<{ record: RecordView; receipt: Receipt; repeated?: boolean }> {
    const ids = [...new Set([...options.readers, ...(options.includeSelf === false ? [] : [this.memberId])])];
    const known = (rows: MemberRow[]) => ids.every((id) => rows.some((m) => m.id === id && m.removedAt === null));
    let members = await this.#directory();
    if (!known(members)) members = await this.#directory(true); // a reader published since the last look
    for (const id of ids) if (!members.some((x) => x.id === id && x.removedAt === null)) fail('MEMBER_NOT_FOUND', id);
    let custodian = this.#custodians.get(options.subject);
    if (!custodian) {
      custodian = await this.custodian(options.subject);
      this.#custodians.set(options.subject, custodian);
    }
    // Encrypted to the custodian alone: the node's KMS opens the header with that key and wraps
    // the file key to each reader itself (it cannot check a stanza the client made for a reader,
    // so it never keeps one), keeping this stanza as it is.
    const to = [X25519Recipient.parse(custodian.recipient)];
    // A small file (a bulk ingest's letters and lab results) is read whole and sent as one;
    // anything else, or a path that cannot be read, takes the streaming path and its errors.
    if (!(source instanceof Readable || source instanceof Uint8Array)) {
      const { path } = source;
      const small = await stat(path).then(
        (info) => info.isFile() && info.size <= WHOLE_UPLOAD,
        () => false,
      );
      if (small)
        source = await readFile(path).catch((err: unknown) => Promise.reject(ioError(err, `cannot read ${path}`)));
    }
    let sealed: Uint8Array | Readable;
    if (source instanceof Uint8Array && source.length <= WHOLE_UPLOAD) {
      // A small document is encrypted whole and sent with its hash signed up front.
      sealed = encrypt(to, source);
      options.onProgress?.(source.length);
    } else {
      sealed = coreReadable(
        new AgeEncryptor(to),
        source instanceof Readable
          ? { stream: source }
          : source instanceof Uint8Array
            ? { stream: Readable.from([Buffer.from(source)]) }
            : source,
        options.onProgress,
      );
    }
    const query = new URLSearchParams({
      subject: options.subject,
      readers: ids.join(','),
      purpose: options.purpose,
      expiresAt: String(options.expiresAt),
      idempotencyKey: options.idempotencyKey ?? randomUUID(),
    });
    const result = (await (await this.#request('POST', `/v1/records?${query}`, sealed)).json()) as {
      record: RecordView;
      receipt: Receipt;
      repeated?: boolean;
    };
    await this.verify(result.receipt);
    return result;
  }

  /**
   * Which of `keys` (idempotency keys of this member's uploads) name an upload the node has
   * completed, with its record: asked before encrypting anything, a re-run sends only the rest.
   */
  async knownUploads(keys: string[]): Promise<Map<string, { recordId: string; size: number }>> {
    const known = new Map<string, { recordId: string; size: number }>();
    for (let i = 0; i < keys.length; i += 1000) {
      const answer = await this.#json<{ known: Record<string, { recordId: string; size: number }> }>(
        'POST',
        '/v1/uploads/known',
        { keys: keys.slice(i, i + 1000) },
      );
      for (const [key, record] of Object.entries(answer.known)) known.set(key, record);
    }
    return known;
  }

  /**
   * Uploads many documents, `concurrency` at a time (default 8), each as `upload` does; one
   * failing does not stop the others. Give each item an idempotency key (medvault upload
   * --recursive derives one from the file, subject and readers) and a re-run after an
   * interruption makes nothing twice: the node answers the first upload's record (`repeated`).
   * `onResult` sees each outcome as it comes; the results come back in the items' order.
   */
  async uploadMany(
    items: Iterable<BulkItem> | AsyncIterable<BulkItem>,
    options: { concurrency?: number; onResult?: (result: BulkResult) => void } = {},
  ): Promise<BulkResult[]> {
    const concurrency = options.concurrency ?? 8;
    check(
      Number.isSafeInteger(concurrency) && concurrency >= 1 && concurrency <= 256,
      'INVALID_ARGUMENT',
      'concurrency is 1 to 256',
    );
    const source = (
      Symbol.asyncIterator in items
        ? items
        : (async function* () {
            yield* items;
          })()
    )[Symbol.asyncIterator]();
    const results: BulkResult[] = [];
    let next = 0;
    const worker = async () => {
      for (;;) {
        const step = await source.next();
        if (step.done) return;
        const at = next++;
        const { name, source: document, options: terms } = step.value;
        let result: BulkResult;
        try {
          const { record, repeated } = await this.#uploadPaced(document, terms);
          result = { name, recordId: record.id, repeated: repeated === true, bytes: record.size };
        } catch (err) {
          const e = err as MedvaultError;
          result = { name, bytes: 0, error: { code: e.code ?? 'INTERNAL', message: e.message } };
        }
        results[at] = result;
        options.onResult?.(result);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    return results;
  }

  /**
   * An upload that, refused for the member's rate limit (RATE_LIMITED), waits as long as the
   * node says and tries again (its idempotency key makes that safe), up to five times.
   */
  async #uploadPaced(document: BulkItem['source'], terms: UploadOptions) {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.upload(document, terms);
      } catch (err) {
        const wait = /retry in (\d+) s/.exec((err as Error).message)?.[1];
        // A stream cannot be read twice: only a file or bytes are sent again.
        const again = err instanceof MedvaultError && err.code === 'RATE_LIMITED' && !(document instanceof Readable);
        if (!again || attempt >= 5 || wait === undefined) throw err;
        await new Promise((r) => setTimeout(r, Number(wait) * 1000));
      }
    }
  }

  /**
   * One page of records matching `filters`, newest first (an uploader sees its own records,
   * a reader those granted to it now, a DPO all). `subject` is a pseudonym (subjectOf).
   */
  async records(filters: RecordFilters = {}): Promise<RecordPage> {
    const query = new URLSearchParams(
      Object.entries(filters)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]): [string, string] => [k, String(v)]),
    ).toString();
    return this.#json<RecordPage>('GET', `/v1/records${query ? `?${query}` : ''}`);
  }

  /** Every record matching `filters`, page after page. */
  async *allRecords(filters: Omit<RecordFilters, 'cursor'> = {}): AsyncIterable<RecordSummary> {
    let cursor: string | undefined;
    do {
      const page = await this.records({ ...filters, ...(cursor ? { cursor } : {}) });
      yield* page.records;
      cursor = page.next ?? undefined;
    } while (cursor);
  }

  /** A record's metadata; its receipt (which fixes the ciphertext hash) is verified. */
  async record(id: string): Promise<RecordView> {
    const view = await this.#json<RecordView>('GET', `/v1/records/${id}`);
    await this.verify(view.receipt);
    if (view.receipt.event.recordId !== id || view.receipt.event.ciphertextHash !== view.ciphertextHash) {
      fail('RECEIPT_INVALID', 'the receipt is not for this record and ciphertext');
    }
    return view;
  }

  /**
   * Fetches a record and decrypts it locally into `sink` (a file is written
   * atomically: nothing under that name unless the whole record decrypted
   * and its ciphertext matched the hash anchored for it).
   */
  async fetch(id: string, sink: Sink, options: FetchOptions = {}): Promise<FetchResult> {
    return this.#decryptInto(id, await this.#request('GET', `/v1/records/${id}/content`), sink, options);
  }

  /** Break-glass: fetch without a grant, with a reason the DPO will review. */
  async emergency(id: string, reason: string, sink: Sink, options: FetchOptions = {}): Promise<FetchResult> {
    const response = await this.#request('POST', `/v1/records/${id}/emergency`, JSON.stringify({ reason }));
    const result = await this.#decryptInto(id, response, sink, options);
    return { ...result, reviewId: response.headers.get('medvault-review-id') ?? '' };
  }

  /** The raw age file (header + payload) as the node serves it, for tools such as `age`. */
  async fetchEncrypted(id: string): Promise<{ stream: Readable; access: Receipt; content: Receipt }> {
    const response = await this.#request('GET', `/v1/records/${id}/content`);
    const { access, content } = await this.#servedReceipts(id, response);
    return { stream: response.body, access, content };
  }

  /** The access and content receipts a fetch is served with, verified and checked to be for `id`. */
  async #servedReceipts(id: string, response: Answer): Promise<{ access: Receipt; content: Receipt }> {
    try {
      const access = await this.verify(servedReceipt(response.headers, 'medvault-receipt', id));
      const content = await this.verify(servedReceipt(response.headers, 'medvault-content-receipt', id));
      return { access, content };
    } catch (err) {
      response.body.destroy(); // refused unread: its connection is not left waiting on it
      throw err;
    }
  }

  async #decryptInto(id: string, response: Answer, sink: Sink, options: FetchOptions): Promise<FetchResult> {
    const { access, content } = await this.#servedReceipts(id, response);
    const ciphertextHash = content.event.ciphertextHash as string;
    const headerLength = Number(response.headers.get('medvault-header-length'));
    const checked = new CheckedDecryptor(this.#keys.identity, headerLength, ciphertextHash);
    const total = Number(response.headers.get('content-length') ?? 0);
    let received = 0;
    const { onProgress } = options;
    const core: StreamCore = onProgress
      ? {
          update(data, out) {
            received += data.length;
            onProgress(received, total);
            checked.update(data, out);
          },
          final: (out) => checked.final(out),
        }
      : checked;
    const body = response.body;
    const bytes = await pump(core, { stream: body }, sink).catch((err: unknown) => {
      // The connection cut mid-body surfaces as an untyped socket error: say what it is.
      // (The sink's own failures, and the decryptor's, keep their codes.)
      if (err instanceof MedvaultError || !body.errored) throw err;
      throw new MedvaultError('NODE_UNAVAILABLE', `${this.#base}: the answer was cut off mid-body`, { cause: err });
    });
    return { recordId: id, ciphertextHash, access, content, bytes };
  }

  async grant(
    id: string,
    reader: string,
    terms: { purpose: string; expiresAt: number },
  ): Promise<{ receipt: Receipt }> {
    const result = await this.#json<{ receipt: Receipt }>('POST', `/v1/records/${id}/grants`, { reader, ...terms });
    await this.verify(result.receipt);
    return result;
  }

  async revoke(id: string, reader: string, options: { reencrypt?: boolean } = {}) {
    const query = options.reencrypt ? '?reencrypt=true' : '';
    const result = await this.#json<{ receipt: Receipt; reencrypted?: Receipt }>(
      'DELETE',
      `/v1/records/${id}/grants/${reader}${query}`,
    );
    await this.verify(result.receipt);
    if (result.reencrypted) await this.verify(result.reencrypted);
    return result;
  }

  /** A record's trail; every receipt verified. */
  async audit(id: string): Promise<Receipt[]> {
    const { events } = await this.#json<{ events: Receipt[] }>('GET', `/v1/records/${id}/audit`);
    for (const receipt of events) await this.verify(receipt);
    return events;
  }

  /** Executes an erasure (DPO); the certificate is verified before it is returned. */
  async erase(target: { subject: string } | { recordId: string }): Promise<ErasureCertificate> {
    const certificate = await this.#json<ErasureCertificate>('POST', '/v1/erasures', target);
    verifyCertificate(certificate, { trusted: await this.#trust() });
    return certificate;
  }

  /**
   * Asks the consortium's other nodes again for what an erasure's certificate lacks: the
   * parts of nodes that were down, cosignatures (DPO). The node also does this every minute.
   */
  async completeErasure(requestId: string): Promise<ErasureCertificate> {
    const certificate = await this.#json<ErasureCertificate>('POST', `/v1/erasures/${requestId}/cosign`);
    verifyCertificate(certificate, { trusted: await this.#trust() });
    return certificate;
  }

  /** Files an erasure that runs after `delaySeconds` unless cancelled; resolves with its verified filing receipt. */
  async scheduleErasure(
    target: { subject: string } | { recordId: string },
    delaySeconds: number,
  ): Promise<{ requestId: string; state: string; executeAt: number; receipt: Receipt }> {
    const result = await this.#json<{ requestId: string; state: string; executeAt: number; receipt: Receipt }>(
      'POST',
      '/v1/erasures',
      { ...target, delaySeconds },
    );
    await this.verify(result.receipt);
    return result;
  }

  async cancelErasure(requestId: string): Promise<{ receipt: Receipt }> {
    const result = await this.#json<{ receipt: Receipt }>('POST', `/v1/erasures/${requestId}/cancel`);
    await this.verify(result.receipt);
    return result;
  }

  async erasures(): Promise<Array<Omit<ErasureRow, 'certificate' | 'probes'>>> {
    return (await this.#json<{ erasures: Array<Omit<ErasureRow, 'certificate' | 'probes'>> }>('GET', '/v1/erasures'))
      .erasures;
  }

  /** The node's post-erasure sweep: where it looked and what it found (nothing, after a good erasure). */
  async sweep(requestId: string): Promise<SweepReport> {
    return this.#json<SweepReport>('GET', `/v1/erasures/${requestId}/sweep`);
  }

  /**
   * Checkpoints the ledger's head (admin, DPO): signed by the node and cosigned
   * by the peers that confirmed it on their own view; every signature verified.
   */
  async checkpoint(): Promise<Checkpoint> {
    const checkpoint = await this.#json<Checkpoint>('POST', '/v1/checkpoints');
    verifyCheckpoint(checkpoint);
    return checkpoint;
  }

  /** The newest checkpoint the node confirmed, every signature verified. */
  async latestCheckpoint(): Promise<Checkpoint> {
    const checkpoint = await this.#json<Checkpoint>('GET', '/v1/checkpoints/latest');
    verifyCheckpoint(checkpoint);
    return checkpoint;
  }

  async erasure(requestId: string): Promise<ErasureCertificate> {
    const certificate = await this.#json<ErasureCertificate>('GET', `/v1/erasures/${requestId}`);
    verifyCertificate(certificate, { trusted: await this.#trust() });
    return certificate;
  }

  // The consortium.

  /** The consortium's nodes as the ledger says (invited, joined, left). */
  async consortiumNodes(): Promise<ConsortiumNode[]> {
    return (await this.#json<{ nodes: ConsortiumNode[] }>('GET', '/v1/consortium/nodes')).nodes;
  }

  /** Invites the node that made `request` (admin): the invite, sealed to that node, to hand over. */
  async invite(
    request: JoinRequest,
    options: { expiresInDays?: number } = {},
  ): Promise<{ invite: string; node: string; expiresAt: number; receipt: Receipt }> {
    const result = await this.#json<{ invite: string; node: string; expiresAt: number; receipt: Receipt }>(
      'POST',
      '/v1/consortium/invites',
      { ...checkJoinRequest(request), ...options },
    );
    await this.verify(result.receipt);
    return result;
  }

  /** The node this client talks to leaves the consortium (admin); the verified receipt of node.left. */
  async leaveConsortium(): Promise<{ receipt: Receipt }> {
    const result = await this.#json<{ receipt: Receipt }>('POST', '/v1/consortium/leave');
    await this.verify(result.receipt);
    return result;
  }

  /**
   * The node this client talks to votes (admin) to remove node `id` from the consortium; the
   * verified receipt of node.removal, and where the removal stands (state, votes, needed).
   */
  async voteNodeRemoval(
    id: string,
  ): Promise<{ receipt: Receipt; state: ConsortiumNode['state']; votes: number; needed: number }> {
    const result = await this.#json<{
      receipt: Receipt;
      state: ConsortiumNode['state'];
      votes: number;
      needed: number;
    }>('POST', `/v1/consortium/nodes/${id}/removal`);
    await this.verify(result.receipt);
    return result;
  }

  /**
   * The consortium's subject key, which turns patient identifiers into subjects on this
   * machine: sealed by the node to this member's own key, opened here, kept in memory.
   */
  async subjectKey(): Promise<Uint8Array> {
    this.#subjectKey ??= this.#json<{ sealed: string }>('GET', '/v1/consortium/subject-key').then(({ sealed }) =>
      openSecret(sealed, this.#keys.identity),
    );
    this.#subjectKey.catch(() => {
      this.#subjectKey = undefined;
    });
    return this.#subjectKey;
  }

  /**
   * A subject access report (DPO): every record of `subject` (a pseudonym) on every node of
   * the consortium, with its trail; every receipt verified, each by the node that holds it.
   */
  async subjectReport(subject: string): Promise<SubjectReport> {
    const report = await this.#json<SubjectReport>('POST', '/v1/subject-reports', { subject });
    this.#trusted = undefined; // the node asked its peers just now: ask it again
    verifySubjectReport(report, { trusted: await this.#trust() });
    return report;
  }

  /** Takes a backup of the node (admin): where it was written and its manifest. */
  async backup(): Promise<{ path: string; manifest: BackupManifest }> {
    return this.#json('POST', '/v1/backups');
  }

  /** The node's backup keys (admin): ids and lifetimes, never secrets. */
  async backupKeys(): Promise<{ keys: BackupKey[]; directory: string }> {
    return this.#json('GET', '/v1/backups/keys');
  }

  async reviews(all = false): Promise<ReviewRow[]> {
    return (await this.#json<{ reviews: ReviewRow[] }>('GET', `/v1/reviews${all ? '?all=true' : ''}`)).reviews;
  }

  /** Closes a break-glass review (DPO); anchored as review.closed. */
  async closeReview(id: string, outcome: 'justified' | 'unjustified'): Promise<{ receipt: Receipt }> {
    const result = await this.#json<{ receipt: Receipt }>('POST', `/v1/reviews/${id}`, { outcome });
    await this.verify(result.receipt);
    return result;
  }
}

/** One document of uploadMany. */
export interface BulkItem {
  /** What the results call it (a path, say). */
  name: string;
  source: Readable | Uint8Array | FileSource;
  options: UploadOptions;
}

/** The outcome of one document of uploadMany: its record, or the error that stopped it. */
export interface BulkResult {
  name: string;
  recordId?: string;
  /** Uploaded before (the same idempotency key): nothing was made again. */
  repeated?: boolean;
  /** Ciphertext bytes stored. */
  bytes: number;
  error?: { code: string; message: string };
}

/** A file to upload by its path: read through reused buffers (see coreReadable). */
export interface FileSource {
  path: string;
}

/** What the node answered: its status, headers and body (a stream, read once). */
interface Answer {
  status: number;
  headers: { get(name: string): string | null };
  body: Readable;
  json(): Promise<unknown>;
  text(): Promise<string>;
}

function answerOf(status: number, headers: Record<string, string | string[] | undefined>, body: Readable): Answer {
  const text = async () => {
    const parts: Buffer[] = [];
    for await (const part of body) parts.push(part as Buffer);
    return Buffer.concat(parts).toString('utf8');
  };
  return {
    status,
    headers: {
      get(name) {
        const value = headers[name.toLowerCase()];
        return value === undefined ? null : Array.isArray(value) ? value.join(', ') : value;
      },
    },
    body,
    text,
    json: async () => JSON.parse(await text()),
  };
}

/**
 * One request through undici's `request` rather than `fetch`: fetch's WHATWG layers cost the
 * client ~0.25 ms of CPU per request here (a fetch of a small record spent a third of its CPU
 * in them; docs/benchmarks.md, session 18).
 */
async function send(
  url: URL,
  method: string,
  headers: Record<string, string>,
  body: string | Uint8Array | undefined,
  dispatcher: Dispatcher | undefined,
): Promise<Answer> {
  const answer = await undiciRequest(url, {
    method: method as Dispatcher.HttpMethod,
    headers,
    body: body ?? null,
    ...(dispatcher ? { dispatcher } : {}),
  });
  return answerOf(answer.statusCode, answer.headers, answer.body);
}

/** A request that got no answer: NODE_UNAVAILABLE (a client may retry), naming the node and why. */
function unavailable(url: URL, err: unknown): MedvaultError {
  if (err instanceof MedvaultError) return err; // the upload source failing (a file unreadable) keeps its code
  const { code, message } = err as { code?: string; message?: string };
  return new MedvaultError('NODE_UNAVAILABLE', `${url.origin}: ${code ?? message ?? String(err)}`, { cause: err });
}

/**
 * POSTs a streamed body (chunked) through node:http, hashing every byte as it goes, and after
 * the last one sends the trailer that signs them (`signBody` of their SHA-256:
 * services/protocol/signing.ts). The (small, JSON) answer is read whole.
 */
function streamUpload(
  url: URL,
  headers: Record<string, string>,
  body: Readable,
  agent: HttpAgent,
  signBody: (sha256: string) => string,
): Promise<Answer> {
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  const hash = createHash('sha256');
  return new Promise((resolve, reject) => {
    const req = send(url, { method: 'POST', headers: { ...headers, trailer: BODY_TRAILER }, agent }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('error', reject);
      res.on('end', () => {
        resolve(answerOf(res.statusCode ?? 500, res.headers, Readable.from([Buffer.concat(parts)])));
        body.destroy();
      });
    });
    req.on('error', (err) =>
      reject(new MedvaultError('NODE_UNAVAILABLE', `${url.origin}: ${err.message}`, { cause: err })),
    );
    body.on('error', (err) => {
      req.destroy(err);
      reject(err);
    });
    body.on('data', (chunk: Buffer) => hash.update(chunk));
    body.on('end', () => {
      req.addTrailers({ [BODY_TRAILER]: signBody(hash.digest('hex')) });
      req.end();
    });
    body.pipe(req, { end: false });
  });
}

const uploadAgent = new HttpAgent({ keepAlive: true });

/** A document given in memory up to this size is encrypted whole and its hash signed up front. */
const WHOLE_UPLOAD = 64 * 1024;
