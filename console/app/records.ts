/**
 * Records: search what this member may see, open one (fetched, decrypted and checked in this
 * page, then saved), show its receipt verified here, and for its uploader, grant and revoke.
 */
import type { Receipt } from '../../anchor/receipt.ts';
import { verifyReceipt } from '../../anchor/receipt.ts';
import { fail } from '../../errors.ts';
import type { RecordPage, RecordSummary, RecordView } from '../../services/protocol/views.ts';
import { CheckedDecryptor, servedReceipt } from '../../services/sdk/checked-decryptor.ts';
import type { Api } from './api.ts';
import {
  actions,
  append,
  button,
  definitions,
  describe,
  field,
  form,
  h,
  save,
  say,
  short,
  sizeOf,
  table,
  verdict,
  when,
} from './ui.ts';

export function recordsScreen(api: Api, main: HTMLElement): void {
  const role = api.me?.role;
  const results = h('div', { id: 'record-results' });
  const detail = h('section', { id: 'record-detail', 'aria-live': 'polite' });
  let cursor: string | null = null;
  let filters: Record<string, string> = {};

  const search = async (more: boolean) => {
    const query = new URLSearchParams({ ...filters, ...(more && cursor ? { cursor } : {}) });
    const page = await api.json<RecordPage>('GET', `/v1/records?${query}`);
    cursor = page.next;
    if (!more) results.replaceChildren();
    results.querySelector('.more')?.remove();
    append(results, recordTable(api, page.records, detail));
    if (page.next)
      append(
        results,
        button('More records', () => search(true), { class: 'secondary more' }),
      );
    if (!more && page.records.length === 0) append(results, h('p', {}, 'No records match.'));
  };

  const searchForm = form(
    async (data) => {
      filters = {};
      const subject = String(data.get('subject') ?? '').trim();
      if (subject) filters.subject = await api.subject(subject);
      for (const key of ['state', 'purpose']) {
        const value = String(data.get(key) ?? '');
        if (value) filters[key] = value;
      }
      await search(false);
    },
    role === 'dpo' || role === 'uploader'
      ? field('Patient identifier or pseudonym (optional)', h('input', { name: 'subject', autocomplete: 'off' }))
      : null,
    field(
      'State',
      h(
        'select',
        { name: 'state' },
        h('option', { value: '' }, 'any'),
        h('option', { value: 'active' }, 'active'),
        h('option', { value: 'erased' }, 'erased'),
        h('option', { value: 'pending-erasure' }, 'pending erasure'),
      ),
    ),
    field('Purpose (optional)', h('input', { name: 'purpose', autocomplete: 'off' })),
    h('button', { type: 'submit' }, 'Search'),
  );
  main.replaceChildren(
    h('h1', {}, role === 'reader' ? 'Records granted to me' : role === 'uploader' ? 'My records' : 'Records'),
    searchForm,
    results,
    detail,
  );
  void search(false).catch((err) => say(describe(err), true));
}

function recordTable(api: Api, records: RecordSummary[], detail: HTMLElement): HTMLTableElement {
  const role = api.me?.role;
  return table(
    ['Record', 'Uploaded by', 'Uploaded', 'Size', 'State', ''],
    records.map((r) => [
      h('span', { class: 'mono', title: r.id }, short(r.id)),
      api.name(r.uploader),
      when(r.createdAt),
      sizeOf(r.size),
      r.state,
      actions(
        r.state === 'active' && role !== 'dpo'
          ? button('Open', () => openRecord(api, r, detail), {
              'data-record': r.id,
              'aria-label': `Open record ${r.id}`,
            })
          : null,
        button('Receipt', () => showReceipt(api, r.id, detail), {
          class: 'secondary',
          'aria-label': `Receipt of ${r.id}`,
        }),
        role === 'uploader' && r.state === 'active'
          ? button('Readers', () => showGrants(api, r.id, detail), {
              class: 'secondary',
              'aria-label': `Readers of ${r.id}`,
            })
          : null,
      ),
    ]),
  );
}

/** Fetches a record, decrypts it here with the member's key, checks its hash, and saves it. */
async function openRecord(api: Api, record: RecordSummary, detail: HTMLElement): Promise<void> {
  const progress = h('progress', { max: record.size, value: 0, 'aria-label': 'Decrypting' });
  const started = performance.now();
  detail.replaceChildren(h('h2', {}, `Record ${record.id}`), progress);
  const response = await api.request('GET', `/v1/records/${record.id}/content`);
  const access = api.verify(servedReceipt(response.headers, 'medvault-receipt', record.id));
  const content = api.verify(servedReceipt(response.headers, 'medvault-content-receipt', record.id));
  const core = new CheckedDecryptor(
    api.keys.identity,
    Number(response.headers.get('medvault-header-length')),
    content.event.ciphertextHash as string,
  );
  const parts: BlobPart[] = [];
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  let received = 0;
  let bytes = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    const out: Uint8Array[] = [];
    core.update(value, out as never);
    for (const piece of out) {
      parts.push(piece as BlobPart);
      bytes += piece.length;
    }
    received += value.length;
    progress.value = received;
  }
  const out: Uint8Array[] = [];
  core.final(out as never);
  for (const piece of out) {
    parts.push(piece as BlobPart);
    bytes += piece.length;
  }
  const seconds = (performance.now() - started) / 1000;
  const name = `record-${record.id}.bin`;
  detail.replaceChildren(
    h('h2', {}, `Record ${record.id}`),
    verdict(true, `Decrypted ${sizeOf(bytes)} in this page; its ciphertext matches the hash anchored for it.`),
    definitions([
      ['Ciphertext SHA-256', h('code', {}, content.event.ciphertextHash as string)],
      ['Access anchored', `block ${access.block.height}, ${when(access.event.at as number)}`],
      ['Time', `${seconds.toFixed(2)} s (${(bytes / (1 << 20) / seconds).toFixed(1)} MiB/s)`],
    ]),
    save(parts, name),
  );
  detail.dataset.decrypted = String(bytes);
  detail.dataset.seconds = seconds.toFixed(3);
  say(`Record ${short(record.id)} decrypted and saved as ${name}.`);
}

async function showReceipt(api: Api, id: string, detail: HTMLElement): Promise<void> {
  const view = await api.json<RecordView>('GET', `/v1/records/${id}`);
  detail.replaceChildren(h('h2', {}, `Receipt of record ${id}`), receiptPanel(api, view.receipt, id));
}

/** A receipt, verified in this page against the trusted node keys (and `recordId`, when given). */
export function receiptPanel(api: Api, receipt: unknown, recordId?: string): HTMLElement {
  try {
    const verified = verifyReceipt(receipt, { trusted: api.trusted });
    if (recordId && verified.event.recordId !== recordId) fail('RECEIPT_INVALID', 'it is about another record');
    const event = verified.event;
    return h(
      'div',
      {},
      verdict(true, `Valid receipt: ${event.type} is in block ${verified.height}, signed by node ${verified.signer}.`),
      definitions([
        ['Event', event.type],
        ['At', when(event.at as number)],
        ['Block', String(verified.height)],
        ['Block hash', h('code', {}, verified.blockHash)],
        ['Signed by', h('code', {}, verified.signer)],
        ...Object.entries(event)
          .filter(([k]) => !['type', 'at'].includes(k))
          .map(([k, v]): [string, HTMLElement] => [k, h('code', {}, typeof v === 'string' ? v : JSON.stringify(v))]),
      ]),
    );
  } catch (err) {
    return verdict(false, `Invalid receipt: ${describe(err)}`);
  }
}

async function showGrants(api: Api, id: string, detail: HTMLElement): Promise<void> {
  const view = await api.json<RecordView>('GET', `/v1/records/${id}`);
  const readers = api.members.filter(
    (m) => m.removedAt === null && m.id !== api.me?.id && ['reader', 'uploader'].includes(m.role),
  );
  const nextYear = new Date(Date.now() + 365 * 86_400_000).toISOString().slice(0, 10);
  detail.replaceChildren(
    h('h2', {}, `Readers of record ${id}`),
    table(
      ['Reader', 'Purpose', 'Until', ''],
      (view.grants ?? []).map((g) => [
        api.name(g.reader),
        g.purpose,
        when(g.expiresAt),
        actions(
          g.reader === view.uploader
            ? null
            : button(
                'Revoke',
                async () => {
                  await api.json('DELETE', `/v1/records/${id}/grants/${g.reader}`);
                  say(`${api.name(g.reader)} may no longer read ${short(id)}.`);
                  await showGrants(api, id, detail);
                },
                { class: 'secondary', 'aria-label': `Revoke ${api.name(g.reader)}` },
              ),
        ),
      ]),
    ),
    form(
      async (data) => {
        const reader = String(data.get('reader'));
        const { receipt } = await api.json<{ receipt: Receipt }>('POST', `/v1/records/${id}/grants`, {
          reader,
          purpose: String(data.get('purpose')),
          expiresAt: new Date(String(data.get('until'))).getTime(),
        });
        api.verify(receipt);
        say(`${api.name(reader)} may read ${short(id)}; the grant is in block ${receipt.block.height}.`);
        await showGrants(api, id, detail);
      },
      field(
        'Reader',
        h(
          'select',
          { name: 'reader', required: true },
          ...readers.map((m) => h('option', { value: m.id }, `${m.name} (${m.role})`)),
        ),
      ),
      field(
        'Purpose',
        h('input', { name: 'purpose', required: true, pattern: '[a-z][a-z0-9._\\-]{0,39}', value: 'treatment' }),
      ),
      field('Until', h('input', { name: 'until', type: 'date', required: true, value: nextYear })),
      h('button', { type: 'submit' }, 'Grant'),
    ),
  );
}
