/**
 * The DPO's flows: filing an erasure (now, or after a cancel window),
 * cancelling it, executing it step by step (resumable), the signed
 * certificate and the consortium's cosignatures, and the post-erasure sweep.
 */
import { type LedgerEvent, subjectCommitment } from '../../anchor/events.ts';
import { checkReceiptOnLedger, checkReceiptsOnLedger } from '../../anchor/ledger.ts';
import type { Receipt } from '../../anchor/receipt.ts';
import { check, fail, isMedvaultError } from '../../errors.ts';
import { logger } from '../../log.ts';
import {
  type Cosignature,
  cosignCertificate,
  type ErasureCertificate,
  missingNodes,
  signCertificate,
  verifyCertificate,
} from '../protocol/certificate.ts';
import { type ErasureOrder, signErasureOrder, verifyErasureOrder } from '../protocol/node-orders.ts';
import { checkSubject, ID, newId, type TreeCache, type VaultCore } from './core.ts';
import type { MemberRow, RecordRow } from './metadata.ts';
import { anchorAgain, anchorChange, type ChangeHandlers, type ChangeKind } from './outcomes.ts';
import { Peers } from './peers.ts';
import { authorize } from './policy.ts';
import { makeProbes, type Probes, type SweepReport, scanFiles } from './sweep.ts';

export type ErasureTarget = { subject: string } | { recordId: string };

export interface ErasureOptions {
  /** The consortium's other nodes: they cosign this node's certificates, and it theirs. */
  peers?: Peers;
  /** The node's files to sweep for traces after an erasure: data files and log files. */
  sweepFiles?: () => Promise<{ data: string[]; logs: string[] }>;
  /**
   * When the last backup that may still hold a key destroyed now expires (its backup key's
   * expiry, services/vault/backup.ts); null when the node keeps no backup key.
   */
  backupsUntil?: () => number | null;
}

export class Erasures {
  readonly #c: VaultCore;
  readonly #sweepFiles: () => Promise<{ data: string[]; logs: string[] }>;
  readonly #peers: Peers;
  readonly #backupsUntil: () => number | null;

  constructor(core: VaultCore, options: ErasureOptions = {}) {
    this.#c = core;
    this.#backupsUntil = options.backupsUntil ?? (() => null);
    this.#sweepFiles = options.sweepFiles ?? (async () => ({ data: [], logs: [] }));
    this.#peers = options.peers ?? new Peers();
  }

  /** At start-up: finishes what a crash interrupted and runs what fell due meanwhile. */
  async resume(): Promise<void> {
    await this.runDue();
  }

  /**
   * Erases a subject (every record, and its custodian key) or one record (the
   * subject's key stays for its other records). Steps, each resumable after a
   * crash or an outage: (1) in one transaction the records turn 410 and lose
   * their headers, grants and break-glass reasons; (2) the custodian key is
   * destroyed; (3) each blob is deleted from every store; (4) a tombstone is
   * anchored per record; (5) the signed certificate is kept and returned.
   */
  async erase(actor: MemberRow, target: ErasureTarget): Promise<ErasureCertificate> {
    const { requestId } = await this.file(actor, target, 0);
    return this.#c.locked(`erasure:${requestId}`, () => this.#execute(requestId));
  }

  /**
   * Files an erasure request, anchored as erasure.filed. With a delay it is
   * scheduled: a DPO may cancel it until `executeAt` (anchored as
   * erasure.cancelled); then the server's timer runs it. Without one it
   * starts at once (`erase` runs it to the certificate). If the filing's outcome is
   * unknown, the request is kept as `filing` and the DPO gets OUTCOME_PENDING naming it:
   * the ledger settles it (services/vault/outcomes.ts), and once filed it runs when due.
   */
  async file(
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
      // A subject this node knows nothing of, in a node alone: nothing to erase, no certificate.
      // In a consortium the erasure goes on to the other nodes, which may hold records of it.
      await this.#peers.refresh();
      if (this.#peers.list.length === 0 && !(await this.#knows(value))) fail('SUBJECT_NOT_FOUND');
    } else {
      scope = 'record';
      value = target.recordId;
      this.#c.record(value); // RECORD_NOT_FOUND, RECORD_ERASED
    }
    const requestId = newId();
    const at = this.#c.now();
    const executeAt = at + delayMs;
    const state = delayMs > 0 ? 'scheduled' : 'executing';
    const row = { id: requestId, scope, target: value, filedBy: actor.id, filedAt: at, executeAt };
    const receipt = await anchorChange(
      this.#c,
      'erasure',
      {
        type: 'erasure.filed',
        at,
        requestId,
        dpo: actor.id,
        scope,
        // Never the pseudonym: a commitment to it under this request (anchor/events.ts).
        target: scope === 'subject' ? subjectCommitment(requestId, value) : value,
        executeAt,
      },
      () => this.#c.m.addErasure({ ...row, state: 'filing' }),
      requestId,
    );
    this.#c.m.transaction(() => {
      this.#c.m.addErasure({ ...row, state });
      this.#c.index(requestId, receipt);
    });
    if (state === 'executing') this.#begin(requestId);
    return { requestId, state, executeAt, receipt };
  }

  /**
   * Cancels a scheduled erasure inside its window; anchored as erasure.cancelled. An unknown
   * outcome cancels it here at once (fail closed: nothing is erased while unsure) and the
   * ledger must come to say it (anchored again if lost).
   */
  async cancel(actor: MemberRow, requestId: string): Promise<{ receipt: Receipt }> {
    authorize(actor, 'erase');
    check(ID.test(requestId), 'REQUEST_INVALID', 'a request id is 32 hex digits');
    return this.#c.locked(`erasure:${requestId}`, async () => {
      const row = this.#c.m.erasure(requestId);
      if (!row) fail('ERASURE_NOT_FOUND', requestId);
      if (row.state !== 'scheduled') fail('ERASURE_NOT_CANCELLABLE', `it is ${row.state}`);
      const cancel = () => this.#c.m.cancelErasure(requestId, actor.id, this.#c.now());
      const receipt = await anchorChange(
        this.#c,
        'cancel',
        { type: 'erasure.cancelled', at: this.#c.now(), requestId, by: actor.id },
        cancel,
        requestId,
      );
      this.#c.m.transaction(() => {
        cancel();
        this.#c.index(requestId, receipt);
      });
      return { receipt };
    });
  }

  /**
   * Runs every scheduled erasure whose window has passed, and resumes every one that an
   * outage or an unknown outcome stopped part way (the server calls it on a timer).
   */
  async runDue(): Promise<ErasureCertificate[]> {
    const done: ErasureCertificate[] = [];
    for (const row of this.#c.m.unfinishedErasures()) {
      // One that cannot finish yet (a tombstone waiting for the ledger's answer, a store or the
      // ledger down) is left for the next round: it never holds back the others.
      const certificate = await this.#c
        .locked(`erasure:${row.id}`, async () =>
          this.#c.m.erasure(row.id)?.state === 'executing' ? this.#execute(row.id) : null,
        )
        .catch((err) => {
          if (!isMedvaultError(err, 'OUTCOME_PENDING')) {
            logger.warn(
              { requestId: row.id, code: isMedvaultError(err) ? err.code : 'INTERNAL' },
              'an erasure could not finish yet; resumed at the next round',
            );
          }
          return null;
        });
      if (certificate) done.push(certificate);
    }
    for (const row of this.#c.m.dueErasures(this.#c.now())) {
      const certificate = await this.#c.locked(`erasure:${row.id}`, async () => {
        if (this.#c.m.erasure(row.id)?.state !== 'scheduled') return null;
        this.#begin(row.id);
        return this.#execute(row.id);
      });
      if (certificate) done.push(certificate);
    }
    return done;
  }

  list(actor: MemberRow) {
    authorize(actor, 'erase');
    return this.#c.m.erasures().map(({ certificate: _c, probes: _p, ...row }) => row);
  }

  /**
   * Step 1 of executing an erasure, in one transaction: the records (for a
   * subject: those it has now) turn 410 and lose headers, grants and reasons;
   * probes of the headers are kept for the sweep.
   */
  #begin(requestId: string): void {
    const row = this.#c.m.erasure(requestId);
    if (!row) fail('ERASURE_NOT_FOUND', requestId);
    const records =
      row.scope === 'subject'
        ? this.#c.m.recordsOf(row.target, 'active')
        : [this.#c.m.record(row.target)].filter((r): r is RecordRow => r?.state === 'active');
    const probes = makeProbes(records.map((r) => r.header).filter((h): h is Uint8Array => h !== null));
    this.#c.m.transaction(() => {
      this.#c.m.setProbes(requestId, JSON.stringify(probes));
      this.#c.m.setErasureState(requestId, 'executing');
      this.#c.m.beginErasure(
        records.map((r) => r.id),
        requestId,
        this.#c.now(),
      );
    });
    this.#c.m.checkpoint();
  }

  /**
   * The post-erasure sweep: every store for the erased blobs, the KMS for the
   * custodian key, the metadata for headers, grants and reasons, and the
   * node's files and logs for any byte of the erased headers (see sweep.ts).
   */
  async sweep(actor: MemberRow, requestId: string): Promise<SweepReport> {
    authorize(actor, 'erase');
    const row = this.#c.m.erasure(requestId);
    if (!row) fail('ERASURE_NOT_FOUND', requestId);
    if (row.state !== 'done') fail('ERASURE_NOT_CANCELLABLE', `the erasure is ${row.state}: sweep it once it is done`);
    const records = this.#c.m.recordsOfErasure(requestId);
    const checked: string[] = [];
    const findings: SweepReport['findings'] = [];
    for (const record of records) {
      for (const blob of this.#c.m.erasedBlobs(requestId, record.id)) {
        checked.push(`store ${this.#c.store.kind}: ${blob.ref}`);
        if (await this.#c.store.has(blob.ref))
          findings.push({ where: `store ${this.#c.store.kind}`, what: blob.ref, count: 1 });
      }
      if (record.header !== null || record.blobRef !== null) {
        findings.push({ where: 'metadata', what: `record ${record.id} still has its header or blob ref`, count: 1 });
      }
      const grants = this.#c.m.liveGrants(record.id, 0).length;
      if (grants > 0) findings.push({ where: 'metadata', what: `record ${record.id} grants`, count: grants });
    }
    checked.push('metadata: headers, blob refs, grants');
    const destroyedKey = row.certificate ? (JSON.parse(row.certificate) as ErasureCertificate).kms?.keyId : undefined;
    if (row.scope === 'subject') {
      checked.push(`kms ${this.#c.kms.backend}: custodian of the subject`);
      // By the subject while this node still knows it, then by the destroyed key's id.
      const held =
        row.target !== ''
          ? await this.#c.kms.holds?.(row.target)
          : destroyedKey
            ? await this.#c.kms.holdsKey?.(destroyedKey)
            : [];
      for (const what of held ?? []) findings.push({ where: `kms ${this.#c.kms.backend}`, what, count: 1 });
    }
    const probes = row.probes ? (JSON.parse(row.probes) as Probes) : { salt: '', hashes: [] };
    const files = await this.#sweepFiles();
    const data = await scanFiles(files.data, probes, []);
    const logs = await scanFiles(files.logs, probes, [
      ...records.map((r) => r.ciphertextHash),
      ...(destroyedKey ? [destroyedKey] : []),
    ]);
    return {
      requestId,
      records: records.length,
      checked: [...checked, ...data.checked, ...logs.checked],
      findings: [...findings, ...data.findings, ...logs.findings],
    };
  }

  certificate(actor: MemberRow, requestId: string): ErasureCertificate {
    authorize(actor, 'erase');
    const row = this.#c.m.erasure(requestId);
    if (!row?.certificate) fail('ERASURE_NOT_FOUND', requestId);
    return JSON.parse(row.certificate) as ErasureCertificate;
  }

  /** Whether this node holds anything of `subject`: a record (in any state but erased) or a custodian key. */
  async #knows(subject: string): Promise<boolean> {
    if (this.#c.m.recordsOf(subject, 'active').length > 0 || this.#c.m.recordsOf(subject, 'pending').length > 0) {
      return true;
    }
    return ((await this.#c.kms.holds?.(subject)) ?? []).length > 0;
  }

  /** Runs (or resumes) an erasure's remaining steps; see `erase`. */
  async #execute(requestId: string): Promise<ErasureCertificate> {
    const request = this.#c.m.erasure(requestId);
    if (!request) fail('ERASURE_NOT_FOUND', requestId);
    if (request.certificate) return this.#complete(JSON.parse(request.certificate) as ErasureCertificate);
    await this.#peers.refresh(); // every node that joined up to now is part of the consortium asked
    const records = this.#c.m.recordsOfErasure(requestId);
    const destroyed = request.scope === 'subject' ? await this.#c.kms.destroy(request.target) : null;
    // A node that never held a key for the subject destroyed nothing: the certificate says so (null).
    const kms = destroyed && destroyed.keyId !== 'none' ? destroyed : null;
    // Blobs deleted 32 at a time: their directory syncs overlap (one journal commit serves many).
    const withBlobs = records.filter((r) => r.blobRef !== null);
    for (let i = 0; i < withBlobs.length; i += BLOB_DELETES_AT_ONCE) {
      const batch = withBlobs.slice(i, i + BLOB_DELETES_AT_ONCE);
      const results = await Promise.all(batch.map((r) => this.#c.deleteBlobIfUnused(r.blobRef as string, r.id)));
      this.#c.m.transaction(() =>
        batch.forEach((r, j) => {
          const result = results[j] as { removed: boolean; confirmed: string };
          this.#c.m.blobErased(requestId, r.id, r.blobRef as string, result.removed, result.confirmed);
        }),
      );
    }
    // Tombstones indexed as their block lands: one metadata commit per block, not per record.
    const index = batchedIndex(this.#c);
    const pending = this.#pendingTombstones();
    const settled = await Promise.allSettled(
      records.map(async (record) => {
        // A tombstone anchored before a crash is reused, not anchored twice.
        const anchored = this.#c.m.anchors(record.id, 'record.erased')[0];
        if (anchored) return this.#c.receiptAt(anchored.height, anchored.leaf);
        // One whose outcome is unknown is not tried again until the ledger settles it.
        if (pending.has(record.id))
          fail('OUTCOME_PENDING', `the tombstone of record ${record.id}`, { info: { requestId } });
        const receipt = await anchorChange(this.#c, 'tombstone', {
          type: 'record.erased',
          at: this.#c.now(),
          recordId: record.id,
          ciphertextHash: record.ciphertextHash,
          dpo: request.filedBy,
          requestId,
        });
        await index(record.id, receipt);
        return receipt;
      }),
    );
    const refused = settled.find((r) => r.status === 'rejected');
    if (refused) throw refused.reason;
    const receipts = settled.map((r) => (r as PromiseFulfilledResult<Receipt>).value);
    const filedRow = this.#c.m.anchors(requestId, 'erasure.filed')[0];
    if (!filedRow) fail('LEDGER_CORRUPT', `erasure ${requestId} has no erasure.filed indexed`);
    const filed = await this.#c.receiptAt(filedRow.height, filedRow.leaf);
    // One cache of the blocks' trees: a subject's records share a few blocks.
    const trees: TreeCache = new Map();
    const created: Array<Receipt | undefined> = [];
    for (const record of records) created.push(await this.#createdReceipt(record.id, trees));
    // Filed here for a subject: every other node of the consortium must erase its part and confirm.
    const consortium = request.scope === 'subject' && request.origin === null ? this.#peers.ids : [];
    const certificate = signCertificate(
      {
        requestId,
        filed,
        scope:
          request.scope === 'subject'
            ? { subjectCommitment: filed.event.target as string }
            : { recordId: request.target },
        dpo: request.filedBy,
        executedAt: this.#c.now(),
        kms: kms && { backend: kms.backend, keyId: kms.keyId, confirmed: kms.confirmed },
        records: records.map((record, i) => ({
          recordId: record.id,
          ciphertextHash: record.ciphertextHash,
          stores: this.#c.m.erasedBlobs(requestId, record.id),
          tombstone: receipts[i] as Receipt,
          ...(created[i] ? { created: created[i] } : {}),
        })),
        ...(consortium.length > 0 ? { consortium } : {}),
        ...backupsField(kms ? this.#backupsUntil() : null),
      },
      this.#c.node,
    );
    this.#c.m.finishErasure(requestId, JSON.stringify(certificate));
    this.#c.m.checkpoint();
    logger.info({ requestId, records: records.length, scope: request.scope }, 'erasure executed');
    // An order from another node: this node's part is done; that node gathers the confirmations.
    if (request.origin !== null) return certificate;
    return this.#complete(certificate);
  }

  /** The records whose tombstone's outcome is unknown (pending changes). */
  #pendingTombstones(): Set<string> {
    return new Set(
      this.#c.m
        .pendingChanges()
        .filter((c) => c.kind === 'tombstone')
        .map((c) => c.recordId),
    );
  }

  /** What settling does with an erasure's change the ledger answered for (services/vault/outcomes.ts). */
  readonly changes: ChangeHandlers = {
    landed: async (change, _event, receipt) => this.#settled(change.kind, change.recordId, receipt),
    lost: async (change, event) => {
      if (change.kind === 'tombstone') {
        // The erasure anchors it when it runs again (runDue), now that it is known lost.
        logger.warn({ recordId: change.recordId }, 'a tombstone was never anchored; the erasure anchors it again');
        return;
      }
      // A filing or a cancellation the DPO made: the ledger must come to hold it.
      await anchorAgain(this.#c, change, event, (receipt) => this.#settled(change.kind, change.recordId, receipt));
    },
  };

  /** A filing (scheduled: runDue runs it when due), a cancellation or a tombstone found anchored. */
  #settled(kind: ChangeKind, id: string, receipt: Receipt): void {
    this.#c.m.transaction(() => {
      if (kind === 'erasure' && this.#c.m.erasure(id)?.state === 'filing') this.#c.m.setErasureState(id, 'scheduled');
      this.#c.index(id, receipt);
    });
  }

  /** The receipt of a record's record.created, when this node indexed it. */
  async #createdReceipt(recordId: string, trees: TreeCache): Promise<Receipt | undefined> {
    const row = this.#c.m.anchors(recordId, 'record.created')[0];
    return row ? this.#c.receiptAt(row.height, row.leaf, trees) : undefined;
  }

  /**
   * Brings a certificate this node executed as far as the consortium lets it: each other
   * node that has not sent its part is ordered to erase its own records of the subject
   * (its part comes back), then every node that has not cosigned is asked to. Once every
   * node has, the subject's pseudonym leaves this node's erasure row. A node that is down
   * is left missing (the certificate says which) and asked again later (retryIncomplete).
   */
  async #complete(certificate: ErasureCertificate): Promise<ErasureCertificate> {
    let current = certificate;
    const request = this.#c.m.erasure(certificate.requestId);
    const consortium = certificate.consortium ?? [];
    if (request && request.origin === null && consortium.length > 0 && request.target !== '') {
      const have = (current.parts ?? []).map((p) => p.signer);
      if (consortium.some((n) => !have.includes(n))) {
        const order = signErasureOrder(
          { requestId: current.requestId, subject: request.target, filed: current.filed },
          this.#c.node,
        );
        const parts = await this.#peers.ask<ErasureCertificate>(
          '/v1/erasures/order',
          { order },
          { requestId: current.requestId },
          (peer, part) => this.#acceptPart(current, peer.id, part),
          have,
        );
        current = { ...current, parts: [...(current.parts ?? []), ...parts] };
        this.#c.m.finishErasure(current.requestId, JSON.stringify(current));
      }
    }
    current = await this.#gather(current);
    // Its own certificate, with parts and cosignatures each verified as it was accepted.
    const missing = missingNodes(
      consortium,
      (current.cosignatures ?? []).map((c) => c.signer),
      (current.parts ?? []).map((p) => p.signer),
    );
    if (missing.length === 0 && request?.origin === null && request.scope === 'subject' && request.target !== '') {
      this.#c.m.forgetErasureSubject(current.requestId);
      this.#c.m.checkpoint();
    }
    if (missing.length > 0) {
      logger.warn({ requestId: current.requestId, missing }, 'erasure not yet confirmed by every node');
    }
    return current;
  }

  /** A part a peer sent back: its own certificate for this very request, signed by that peer. */
  #acceptPart(certificate: ErasureCertificate, peer: string, part: ErasureCertificate): boolean {
    const verified = verifyCertificate(part);
    return (
      verified.signer === peer &&
      part.requestId === certificate.requestId &&
      JSON.stringify(part.filed) === JSON.stringify(certificate.filed)
    );
  }

  /** Asks again, for each erasure filed here that not every node has confirmed (the server's timer). */
  async retryIncomplete(): Promise<number> {
    let pending = 0;
    for (const row of this.#c.m.erasuresAwaitingNodes()) {
      const certificate = await this.#c.locked(`erasure:${row.id}`, async () => {
        const current = this.#c.m.erasure(row.id);
        return current?.certificate ? this.#complete(JSON.parse(current.certificate) as ErasureCertificate) : null;
      });
      if (certificate && !verifyCertificate(certificate).complete) pending++;
    }
    return pending;
  }

  /**
   * Another node's order to erase this node's records of a subject, for an erasure filed
   * there: checked (the peer's signature, the filing on this node's view of the shared
   * ledger, the pseudonym against the filing's commitment), then executed here like an
   * erasure filed here, under the same request id: this node's custodian key, headers,
   * blobs, its own tombstones. Returns this node's certificate for its part (idempotent).
   */
  async receive(value: unknown): Promise<ErasureCertificate> {
    await this.#peers.refresh();
    const order: ErasureOrder = verifyErasureOrder(value, (id) => this.#peers.get(id)?.signingKey);
    const { event } = await this.#onLedger(order.filed);
    if (
      event.type !== 'erasure.filed' ||
      event.requestId !== order.requestId ||
      event.scope !== 'subject' ||
      event.target !== subjectCommitment(order.requestId, order.subject)
    ) {
      fail('COSIGN_REFUSED', 'the order does not match the erasure filed on the ledger');
    }
    return this.#c.locked(`erasure:${order.requestId}`, async () => {
      const existing = this.#c.m.erasure(order.requestId);
      if (existing) {
        if (existing.origin !== order.signer) fail('COSIGN_REFUSED', 'that request is not one this node was ordered');
        return this.#execute(order.requestId);
      }
      const part = (await this.#adopt(
        { event, height: order.filed.block.height, leaf: order.filed.leafIndex },
        order.subject,
        order.signer,
        this.#c.now(),
      )) as ErasureCertificate;
      // This node's part is confirmed by the node that ordered it: the pseudonym can go.
      this.#c.m.forgetErasureSubject(order.requestId);
      this.#c.m.checkpoint();
      logger.info(
        { requestId: order.requestId, from: order.signer, records: part.records.length },
        'erasure ordered by a peer executed',
      );
      return part;
    });
  }

  /**
   * After a restore from a backup (services/vault/backup.ts), before the node serves: every
   * erasure anchored since block `from` that concerns records this node holds again is filed
   * here and executed (its custodian key destroyed again, its headers and blobs deleted); the
   * tombstones anchored then are indexed, not anchored twice. Cancelled requests are skipped;
   * one still in its cancel window is scheduled. Returns how many erasures it re-applied.
   */
  async reapply(from: number): Promise<number> {
    const filed: Array<{ event: LedgerEvent; height: number; leaf: number }> = [];
    const tombstones: Array<{ event: LedgerEvent; height: number; leaf: number }> = [];
    const cancelled = new Set<string>();
    for await (const block of this.#c.ledger.blocks(from)) {
      block.events.forEach((event, leaf) => {
        const at = { event, height: block.header.height, leaf };
        if (event.type === 'erasure.filed') filed.push(at);
        else if (event.type === 'record.erased') tombstones.push(at);
        else if (event.type === 'erasure.cancelled') cancelled.add(event.requestId as string);
      });
    }
    const subjects = this.#c.m.activeSubjects();
    let applied = 0;
    for (const { event, height, leaf } of filed) {
      const requestId = event.requestId as string;
      if (cancelled.has(requestId) || this.#c.m.erasure(requestId)) continue;
      const target =
        event.scope === 'record'
          ? this.#c.m.record(event.target as string)?.state === 'active'
            ? (event.target as string)
            : undefined
          : subjects.find((subject) => subjectCommitment(requestId, subject) === event.target);
      if (target === undefined) continue;
      // Its own origin: the certificate was made and cosigned when it first ran; this is its replay.
      // The tombstones anchored then are indexed with it, so it does not anchor them again.
      await this.#adopt({ event, height, leaf }, target, this.#c.node.id, event.executeAt as number, () => {
        for (const t of tombstones) {
          if (t.event.requestId !== requestId || !this.#c.m.record(t.event.recordId as string)) continue;
          this.#c.m.addAnchor({
            recordId: t.event.recordId as string,
            type: 'record.erased',
            height: t.height,
            leaf: t.leaf,
            at: t.event.at,
          });
        }
      });
      applied++;
    }
    return applied;
  }

  /**
   * Files here an erasure another node filed on the ledger (`filed`, found at `height`/`leaf`),
   * for this node's `target` (a subject's pseudonym or a record id), with `origin` the node it
   * answers to; runs it at once when `executeAt` has passed (its certificate), else schedules it.
   * `index` writes more of the anchor index in the same transaction.
   */
  async #adopt(
    filed: { event: LedgerEvent; height: number; leaf: number },
    target: string,
    origin: string,
    executeAt: number,
    index?: () => void,
  ): Promise<ErasureCertificate | null> {
    const { event, height, leaf } = filed;
    const requestId = event.requestId as string;
    const state = executeAt > this.#c.now() ? 'scheduled' : 'executing';
    this.#c.m.transaction(() => {
      this.#c.m.addErasure({
        id: requestId,
        scope: event.scope as 'subject' | 'record',
        target,
        filedBy: event.dpo as string,
        filedAt: event.at,
        executeAt,
        state,
        origin,
      });
      this.#c.m.addAnchor({ recordId: requestId, type: 'erasure.filed', height, leaf, at: event.at });
      index?.();
    });
    if (state === 'scheduled') return null;
    this.#begin(requestId);
    return this.#execute(requestId);
  }

  /** A receipt verified and found on this node's view of the ledger; COSIGN_REFUSED otherwise. */
  async #onLedger(receipt: Receipt): Promise<{ event: Receipt['event']; head: number }> {
    try {
      const { headHeight } = await checkReceiptOnLedger(this.#c.ledger, receipt);
      return { event: receipt.event, head: headHeight };
    } catch (err) {
      if (isMedvaultError(err) && err.code === 'RECEIPT_INVALID') {
        fail('COSIGN_REFUSED', `not on this ledger: ${err.message}`);
      }
      throw err;
    }
  }

  /**
   * Asks every peer to confirm the certificate and keeps the cosignatures
   * that verify. A peer that is down or refuses is left out; the DPO can ask
   * again (POST /v1/erasures/:id/cosign).
   */
  async #gather(certificate: ErasureCertificate): Promise<ErasureCertificate> {
    if (this.#peers.list.length === 0) return certificate;
    const cosignatures = [...(certificate.cosignatures ?? [])];
    const added = await this.#peers.ask<Cosignature>(
      '/v1/cosign',
      { certificate },
      { requestId: certificate.requestId },
      (peer, answer) =>
        verifyCertificate({ ...certificate, cosignatures: [...cosignatures, answer] }).cosigners.includes(peer.id),
      cosignatures.map((c) => c.signer),
    );
    const cosigned = { ...certificate, cosignatures: [...cosignatures, ...added] };
    this.#c.m.finishErasure(certificate.requestId, JSON.stringify(cosigned));
    return cosigned;
  }

  /** Asks the peers again for the cosignatures a certificate lacks (DPO). */
  async recollect(actor: MemberRow, requestId: string): Promise<ErasureCertificate> {
    const certificate = this.certificate(actor, requestId);
    return this.#c.locked(`erasure:${requestId}`, () => this.#complete(certificate));
  }

  /**
   * Confirms another node's erasure: the certificate verifies (signed by a
   * known peer), its filing and every tombstone are on this node's view of
   * the shared ledger, and this node holds none of the records nor, for a
   * subject, a custodian key of its own. Then it cosigns with its node key.
   */
  async cosign(value: unknown): Promise<Cosignature> {
    await this.#peers.refresh();
    const certificate = value as ErasureCertificate;
    const peerIds = this.#peers.ids;
    const verified = verifyCertificate(value, { trusted: [...peerIds, this.#c.node.id] });
    if (!peerIds.includes(verified.signer)) fail('COSIGN_REFUSED', `${verified.signer} is not a peer of this node`);
    let head = 0;
    try {
      const receipts = [certificate.filed, ...certificate.records.map((r) => r.tombstone)];
      ({ headHeight: head } = await checkReceiptsOnLedger(this.#c.ledger, receipts));
    } catch (err) {
      if (isMedvaultError(err) && err.code === 'RECEIPT_INVALID')
        fail('COSIGN_REFUSED', `not on this ledger: ${err.message}`);
      throw err;
    }
    for (const { recordId } of certificate.records) {
      const held = this.#c.m.record(recordId);
      if (held && (held.state !== 'erased' || held.header !== null || held.blobRef !== null)) {
        fail('COSIGN_REFUSED', `this node still holds record ${recordId}`);
      }
    }
    const subject = !('recordId' in certificate.scope);
    if ('subject' in certificate.scope) {
      // A certificate from before subjects left the ledger: it names the pseudonym itself.
      const active = this.#c.m.recordsOf(certificate.scope.subject, 'active').length;
      if (active > 0) fail('COSIGN_REFUSED', `this node holds ${active} record(s) of the subject: erase them here too`);
      const holds = (await this.#c.kms.holds?.(certificate.scope.subject)) ?? [];
      if (holds.length > 0) fail('COSIGN_REFUSED', `this node's KMS still holds ${holds.join('; ')}`);
    } else if ('subjectCommitment' in certificate.scope) {
      // The pseudonym is not in the certificate: this node holds nothing of the subject only
      // once it has executed its own part of this very request.
      const part = this.#c.m.erasure(certificate.requestId);
      if (part?.state !== 'done' || part.origin !== verified.signer) {
        fail('COSIGN_REFUSED', 'this node has not erased its own part of this request yet');
      }
    }
    return cosignCertificate(
      certificate,
      this.#c.node,
      `verified the certificate and its ${certificate.records.length} tombstone(s) on the ledger (head ${head}); ` +
        `this node holds none of the records${subject ? ' and erased its own records and custodian key of the subject' : ''}`,
    );
  }
}

/** The certificate's backupsUntil, when a key was destroyed and backups may hold it. */
function backupsField(until: number | null): { backupsUntil?: number } {
  return until === null ? {} : { backupsUntil: until };
}

const BLOB_DELETES_AT_ONCE = 128;

/**
 * Indexes receipts in one metadata transaction per turn of the event loop: the receipts of one
 * ledger block arrive together, and each commit of the metadata is a sync of its log.
 */
function batchedIndex(core: VaultCore): (recordId: string, receipt: Receipt) => Promise<void> {
  let pending: Array<[string, Receipt]> = [];
  let flushed: Promise<void> | null = null;
  return (recordId, receipt) => {
    pending.push([recordId, receipt]);
    flushed ??= new Promise<void>((resolve, reject) =>
      setImmediate(() => {
        const batch = pending;
        pending = [];
        flushed = null;
        try {
          core.m.transaction(() => {
            for (const [id, r] of batch) core.index(id, r);
          });
          resolve();
        } catch (err) {
          reject(err);
        }
      }),
    );
    return flushed;
  };
}
