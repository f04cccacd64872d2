/**
 * The subject access report (GDPR Art. 15): for a DPO, every record of a
 * subject on every node of the consortium, each with its trail from the
 * ledger (created, granted, revoked, accessed, break-glass, re-encrypted,
 * reviews closed) as receipts anyone can verify offline, and the names of
 * the members in it, as each node's directory has them.
 *
 * The node the DPO asks builds its own part and asks every peer for theirs
 * with a signed report order (services/protocol/node-orders.ts) carrying the
 * pseudonym in the body, never in a URL or on the ledger; a peer that does
 * not answer is named in `missing`, never silently left out. Erased records
 * are not in a report: erasure removed what linked them to the subject.
 */
import { logger } from '../../log.ts';
import { signReportOrder, verifyReportOrder } from '../protocol/node-orders.ts';
import type { ReportPart, SubjectReport } from '../protocol/subject-report.ts';
import type { RecordSummary } from '../protocol/views.ts';
import { checkSubject, newId, type VaultCore } from './core.ts';
import type { MemberRow, RecordSummaryRow } from './metadata.ts';
import type { Peers } from './peers.ts';
import { authorize } from './policy.ts';

/** The member ids an event names, whatever its type. */
const MEMBER_FIELDS = ['uploader', 'reader', 'grantor', 'revoker', 'dpo', 'by'] as const;

export class SubjectReports {
  readonly #c: VaultCore;
  readonly #peers: Peers;
  readonly #summary: (record: RecordSummaryRow) => RecordSummary;

  /** `summary`: a record as a DPO sees it (its live grants included). */
  constructor(core: VaultCore, peers: Peers, summary: (record: RecordSummaryRow) => RecordSummary) {
    this.#c = core;
    this.#peers = peers;
    this.#summary = summary;
  }

  /** The report on `subject` (a pseudonym) across the consortium (DPO). */
  async report(actor: MemberRow, subject: string): Promise<SubjectReport> {
    authorize(actor, 'subject.report');
    checkSubject(subject);
    const own = await this.part(subject);
    const order = signReportOrder({ requestId: newId(), subject, dpo: actor.id }, this.#c.node);
    const context = { requestId: order.requestId };
    const parts = await this.#peers.ask<ReportPart>(
      '/v1/subject-reports/part',
      { order },
      context,
      (peer, part) => part.node === peer.id && Array.isArray(part.records),
    );
    const answered = new Set(parts.map((p) => p.node));
    logger.info({ requestId: order.requestId, dpo: actor.id, nodes: answered.size + 1 }, 'subject access report made');
    return {
      v: 1,
      type: 'medvault.subject-report',
      generatedAt: this.#c.now(),
      node: this.#c.node.id,
      requestedBy: actor.id,
      parts: [own, ...parts],
      missing: this.#peers.ids.filter((id) => !answered.has(id)),
    };
  }

  /** A peer's report order: checked (signature by a known peer, fresh), then this node's part. */
  async receive(value: unknown): Promise<ReportPart> {
    await this.#peers.refresh();
    const order = verifyReportOrder(value, (id) => this.#peers.get(id)?.signingKey);
    logger.info({ requestId: order.requestId, from: order.signer, dpo: order.dpo }, 'subject access report part asked');
    return this.part(order.subject);
  }

  /** This node's records of `subject`, each with its trail, and the names of this node's members in them. */
  async part(subject: string): Promise<ReportPart> {
    const rows = this.#c.m.searchRecords({ subject, limit: 100_000 });
    const records = [];
    const names: Record<string, string> = {};
    for (const row of rows.toReversed()) {
      const events = await this.#c.receiptsOf(row.id);
      for (const { event } of events) {
        for (const field of MEMBER_FIELDS) {
          const id = event[field];
          const member = typeof id === 'string' ? this.#c.m.member(id) : undefined;
          if (member && member.node === null) names[member.id] = member.name;
        }
      }
      records.push({ record: this.#summary(row), events });
    }
    return { node: this.#c.node.id, records, names };
  }
}
