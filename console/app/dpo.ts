/**
 * The DPO's screens: the break-glass review queue, erasure requests (filed with a cancel
 * window, cancelled, watched until every node has erased its part and cosigned) with their
 * certificates verified here, and the subject access report, verified here.
 */
import type { ErasureCertificate } from '../../services/protocol/certificate.ts';
import { verifyCertificate } from '../../services/protocol/certificate.ts';
import { type SubjectReport, verifySubjectReport } from '../../services/protocol/subject-report.ts';
import type { ErasureRow, ReviewRow } from '../../services/protocol/views.ts';
import type { Api } from './api.ts';
import {
  actions,
  button,
  definitions,
  describe,
  field,
  fill,
  form,
  h,
  save,
  say,
  short,
  table,
  verdict,
  when,
} from './ui.ts';

export function reviewsScreen(api: Api, main: HTMLElement): void {
  const list = h('div', { id: 'reviews' });
  const load = async () => {
    const { reviews } = await api.json<{ reviews: ReviewRow[] }>('GET', '/v1/reviews');
    list.replaceChildren(
      reviews.length === 0
        ? h('p', {}, 'No break-glass access waits for review.')
        : table(
            ['Record', 'Opened by', 'At', 'Reason', ''],
            reviews.map((r) => [
              h('span', { class: 'mono', title: r.recordId }, short(r.recordId)),
              api.name(r.reader),
              when(r.at),
              r.reason ?? '',
              actions(
                ...(['justified', 'unjustified'] as const).map((outcome) =>
                  button(
                    outcome === 'justified' ? 'Justified' : 'Unjustified',
                    async () => {
                      const { receipt } = await api.json<{ receipt: never }>('POST', `/v1/reviews/${r.id}`, {
                        outcome,
                      });
                      api.verify(receipt);
                      say(`Review closed as ${outcome}; anchored.`);
                      await load();
                    },
                    { class: outcome === 'justified' ? '' : 'secondary', 'aria-label': `${outcome} ${r.id}` },
                  ),
                ),
              ),
            ]),
          ),
    );
  };
  main.replaceChildren(h('h1', {}, 'Break-glass reviews'), list);
  void load().catch((err) => say(describe(err), true));
}

export function erasuresScreen(api: Api, main: HTMLElement): void {
  const list = h('div', { id: 'erasures' });
  const detail = h('section', { id: 'erasure-detail', 'aria-live': 'polite' });
  let timer: number | undefined;
  const load = async () => {
    const { erasures } = await api.json<{ erasures: ErasureRow[] }>('GET', '/v1/erasures');
    list.replaceChildren(
      table(
        ['Request', 'Scope', 'Filed', 'Runs at', 'State', ''],
        erasures.map((e) => [
          h('span', { class: 'mono', title: e.id }, short(e.id)),
          e.scope,
          when(e.filedAt),
          when(e.executeAt),
          h('span', { 'data-erasure-state': e.id }, e.state),
          actions(
            e.state === 'scheduled'
              ? button(
                  'Cancel',
                  async () => {
                    await api.json('POST', `/v1/erasures/${e.id}/cancel`);
                    say('Erasure cancelled; anchored.');
                    await load();
                  },
                  { class: 'secondary', 'aria-label': `Cancel ${e.id}` },
                )
              : null,
            e.state === 'done'
              ? button('Certificate', () => showCertificate(api, e.id, detail), {
                  'aria-label': `Certificate of ${e.id}`,
                })
              : null,
          ),
        ]),
      ),
    );
    // Watch while anything is pending: scheduled ones run, then the other nodes confirm.
    window.clearTimeout(timer);
    if (erasures.some((e) => ['filing', 'scheduled', 'executing'].includes(e.state)) && main.contains(list)) {
      timer = window.setTimeout(() => void load().catch((err) => say(describe(err), true)), 1000);
    }
  };
  const fileForm = form(
    async (data) => {
      const what = String(data.get('target')).trim();
      const delaySeconds = Math.round(Number(data.get('delay')) * 60);
      const target = /^[0-9a-f]{32}$/.test(what) ? { recordId: what } : { subject: await api.subject(what) };
      const answer = await api.request('POST', '/v1/erasures', {
        ...target,
        ...(delaySeconds > 0 ? { delaySeconds } : {}),
      });
      const body = (await answer.json()) as { requestId?: string; id?: string };
      say(
        answer.status === 202
          ? 'Erasure filed; it runs when its cancel window ends.'
          : 'Erased; the certificate is below.',
      );
      await load();
      if (answer.status === 201) renderCertificate(api, body as unknown as ErasureCertificate, detail);
    },
    field(
      'Patient identifier, pseudonym or record id',
      h('input', { name: 'target', required: true, autocomplete: 'off' }),
    ),
    field(
      'Cancel window, minutes (0: erase now)',
      h('input', { name: 'delay', type: 'number', min: 0, step: 'any', value: 60 }),
    ),
    h('button', { type: 'submit' }, 'File erasure request'),
  );
  main.replaceChildren(h('h1', {}, 'Erasure requests'), fileForm, list, detail);
  void load().catch((err) => say(describe(err), true));
}

async function showCertificate(api: Api, id: string, detail: HTMLElement): Promise<void> {
  renderCertificate(api, await api.json<ErasureCertificate>('GET', `/v1/erasures/${id}`), detail);
}

/** A certificate verified here: what each node erased, who cosigned, whether it is complete. */
export function renderCertificate(api: Api, certificate: unknown, detail: HTMLElement): void {
  const cert = certificate as ErasureCertificate;
  const heading = h('h2', {}, `Erasure certificate ${cert.requestId ?? ''}`);
  try {
    const v = verifyCertificate(certificate, { trusted: api.trusted });
    fill(
      detail,
      heading,
      verdict(
        v.complete,
        v.complete
          ? `Valid and complete: ${v.records} record(s) erased on ${v.nodes.length} node(s), every node confirmed.`
          : `Valid, not complete yet: waiting for ${v.missing.join(', ')}.`,
      ),
      table(
        ['Node', 'Records erased', 'Custodian key destroyed', 'Cosigned'],
        v.nodes.map((n) => [
          h('code', {}, n.node),
          String(n.records),
          n.keyDestroyed ? 'yes' : 'no',
          n.node === v.signer || v.cosigners.includes(n.node) ? 'yes' : 'no',
        ]),
      ),
      definitions([
        ['Executed', when(cert.executedAt)],
        ['By DPO', api.name(cert.dpo)],
        ['Signed by node', h('code', {}, v.signer)],
        ['Backups', cert.backupsUntil ? `may hold the destroyed key until ${when(cert.backupsUntil)}` : 'none kept'],
      ]),
      v.complete
        ? null
        : button(
            'Ask the nodes again',
            async () => {
              renderCertificate(api, await api.json('POST', `/v1/erasures/${cert.requestId}/cosign`), detail);
            },
            { class: 'secondary' },
          ),
      button(
        'Download certificate',
        () => void save([JSON.stringify(certificate, null, 2)], `erasure-${cert.requestId}.json`, 'application/json'),
        { class: 'secondary' },
      ),
    );
  } catch (err) {
    detail.replaceChildren(heading, verdict(false, `Invalid certificate: ${describe(err)}`));
  }
}

export function reportScreen(api: Api, main: HTMLElement): void {
  const out = h('section', { id: 'report', 'aria-live': 'polite' });
  main.replaceChildren(
    h('h1', {}, 'Subject access report'),
    form(
      async (data) => {
        const subject = await api.subject(String(data.get('subject')));
        const report = await api.json<SubjectReport>('POST', '/v1/subject-reports', { subject });
        const counted = verifySubjectReport(report, { trusted: api.trusted });
        out.replaceChildren(
          verdict(
            true,
            `${counted.records} record(s), ${counted.receipts} ledger entries, every receipt verified here.${report.missing.length ? ` Not answering: ${report.missing.join(', ')}.` : ''}`,
          ),
          ...report.parts.flatMap((part) =>
            part.records.map(({ record, events }) =>
              h(
                'div',
                {},
                h('h2', {}, `Record ${record.id} (node ${short(part.node)})`),
                table(
                  ['When', 'What', 'Who', 'Block'],
                  events.map((r) => [
                    when(r.event.at as number),
                    r.event.type,
                    part.names[(r.event.reader ?? r.event.actor ?? r.event.uploader ?? r.event.dpo) as string] ?? '',
                    String(r.block.height),
                  ]),
                ),
              ),
            ),
          ),
          button(
            'Download report (JSON)',
            () => void save([JSON.stringify(report, null, 2)], 'subject-report.json', 'application/json'),
            { class: 'secondary' },
          ),
        );
      },
      field('Patient identifier or pseudonym', h('input', { name: 'subject', required: true, autocomplete: 'off' })),
      h('button', { type: 'submit' }, 'Make report'),
    ),
    out,
  );
}
