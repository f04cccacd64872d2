/**
 * The subject access report as it travels (services/vault/report.ts makes
 * it): what each node answered, and how anyone checks it offline. Every
 * event is a ledger receipt signed by the node whose part holds it; the
 * report itself is not signed: it is as true as its receipts, and says which
 * nodes did not answer.
 */
import { type Receipt, verifyReceipt } from '../../anchor/receipt.ts';
import { type Trust, TrustedKeys, trustOf } from '../../anchor/trusted-keys.ts';
import { check } from '../../errors.ts';
import type { RecordSummary } from './views.ts';

/** One node's part of a report. */
export interface ReportPart {
  node: string;
  records: Array<{ record: RecordSummary; events: Receipt[] }>;
  /** Member id → name, for the members of this node its events name. */
  names: Record<string, string>;
}

export interface SubjectReport {
  v: 1;
  type: 'medvault.subject-report';
  generatedAt: number;
  /** The node the DPO asked, and the DPO. */
  node: string;
  requestedBy: string;
  /** The asked node's part first, then each peer's that answered. */
  parts: ReportPart[];
  /** Nodes of the consortium that did not answer: their records are not in this report. */
  missing: string[];
}

/**
 * Checks a report offline: every receipt verifies and is signed by the node whose part holds
 * it (under any of its keys `trusted` follows), and is about a record of that part; with `trusted`,
 * every part's node is one of them.
 * Returns how many records and receipts it checked.
 */
export function verifySubjectReport(
  value: unknown,
  options: { trusted?: Trust } = {},
): { records: number; receipts: number } {
  const trusted = trustOf(options.trusted);
  const report = value as SubjectReport;
  check(
    report?.type === 'medvault.subject-report' && Array.isArray(report.parts),
    'REQUEST_INVALID',
    'not a subject report',
  );
  let records = 0;
  let receipts = 0;
  for (const part of report.parts) {
    if (trusted) {
      check(trusted.allows(part.node), 'RECEIPT_INVALID', `a part from node ${part.node}, not a trusted one`);
    }
    // The part's node under any of its keys (a receipt from before it replaced its key).
    const keys = trusted ?? new TrustedKeys([part.node]);
    const node = keys.nodeOf(part.node);
    for (const { record, events } of part.records) {
      records++;
      for (const receipt of events) {
        const { signer } = verifyReceipt(receipt, { trusted: keys });
        check(
          keys.nodeOf(signer) === node,
          'RECEIPT_INVALID',
          `a receipt in node ${part.node}'s part signed by another node`,
        );
        check(
          receipt.event.recordId === record.id,
          'RECEIPT_INVALID',
          `a receipt in record ${record.id}'s trail is about another record`,
        );
        receipts++;
      }
    }
  }
  return { records, receipts };
}
