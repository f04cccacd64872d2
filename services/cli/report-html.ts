/**
 * A subject access report as a printable HTML page: one self-contained file
 * (no script, no external font or style) with a table per node, each event's
 * time, kind, member and ledger block, and the report itself embedded as
 * JSON, so `medvault verify report.html` checks every receipt offline.
 */
import type { SubjectReport } from '../protocol/subject-report.ts';

const EMBED_START = '<script type="application/json" id="medvault-report">';
const EMBED_END = '</script>';

const html = (text: string) =>
  text.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string,
  );

/** What each event type means, for a reader of the report. */
const KINDS: Record<string, string> = {
  'record.created': 'stored',
  'record.reencrypted': 're-encrypted',
  'record.accessed': 'read',
  'acl.granted': 'access granted',
  'acl.revoked': 'access revoked',
  'access.emergency': 'opened by break-glass',
  'review.closed': 'break-glass review closed',
  'record.erased': 'erased',
};

export function reportHtml(report: SubjectReport): string {
  const names = Object.assign({}, ...report.parts.map((p) => p.names)) as Record<string, string>;
  const who = (id: unknown) => (typeof id === 'string' ? (names[id] ?? id) : '');
  const when = (ms: number) => new Date(ms).toISOString().replace('T', ' ').slice(0, 19);
  const sections = report.parts.map((part) => {
    const rows = part.records.flatMap(({ record, events }) =>
      events.map((r) => {
        const e = r.event;
        const member = who(e.reader ?? e.uploader ?? e.grantor ?? e.revoker ?? e.dpo ?? e.by);
        const detail = e.purpose ? ` for ${e.purpose}` : e.outcome ? ` (${e.outcome})` : '';
        return `<tr><td>${html(when(e.at))}</td><td>${html(record.id)}</td><td>${html(KINDS[e.type] ?? e.type)}${html(String(detail))}</td><td>${html(member)}</td><td>${r.block.height}</td></tr>`;
      }),
    );
    return `<h2>Node ${html(part.node)}: ${part.records.length} record(s)</h2>
<table><thead><tr><th>when (UTC)</th><th>record</th><th>what</th><th>member</th><th>ledger block</th></tr></thead>
<tbody>${rows.join('\n') || '<tr><td colspan="5">no record of this subject</td></tr>'}</tbody></table>`;
  });
  const missing = report.missing.length
    ? `<p class="warn">Not in this report: node(s) ${report.missing.map(html).join(', ')} did not answer.</p>`
    : '<p>Every node of the consortium answered.</p>';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Subject access report</title>
<style>body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#111}table{border-collapse:collapse;width:100%;margin-bottom:1.5em}
th,td{border:1px solid #999;padding:.3em .5em;text-align:left;vertical-align:top}th{background:#eee}.warn{color:#900;font-weight:bold}
@media print{body{margin:0}}</style></head>
<body><h1>Subject access report (GDPR Art. 15)</h1>
<p>Made ${html(when(report.generatedAt))} UTC by node ${html(report.node)} for data-protection officer ${html(who(report.requestedBy))}.
Every line is a ledger event; each is proved by a receipt signed by the node that holds the record.</p>
${missing}
${sections.join('\n')}
<p>To check every receipt offline: <code>medvault verify THIS-FILE.html --trust NODE_KEY_ID</code>.</p>
${EMBED_START}${JSON.stringify(report).replace(/</g, '\\u003c')}${EMBED_END}
</body></html>
`;
}

/** The report embedded in a page reportHtml made, or null when `text` is not one. */
export function embeddedReport(text: string): unknown {
  const start = text.indexOf(EMBED_START);
  if (start < 0) return null;
  const end = text.indexOf(EMBED_END, start);
  return end < 0 ? null : JSON.parse(text.slice(start + EMBED_START.length, end));
}
