/**
 * Upload (uploader): the file is encrypted in this page (age, to the subject's custodian key;
 * the node's KMS wraps it to the chosen readers and this member) as it is read, its SHA-256 taken as it goes; the
 * ciphertext is then sent with that hash signed. The node never sees the plaintext.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import type { Receipt } from '../../anchor/receipt.ts';
import { AgeEncryptor } from '../../crypto/age.ts';
import { X25519Recipient } from '../../crypto/x25519.ts';
import { MedvaultError } from '../../errors.ts';
import type { RecordView } from '../../services/protocol/views.ts';
import type { Api } from './api.ts';
import { button, definitions, field, form, h, say, sizeOf, verdict } from './ui.ts';

const hex = (bytes: Uint8Array) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

export function uploadScreen(api: Api, main: HTMLElement): void {
  const readers = api.members.filter(
    (m) => m.removedAt === null && m.id !== api.me?.id && ['reader', 'uploader'].includes(m.role),
  );
  const nextYear = new Date(Date.now() + 365 * 86_400_000).toISOString().slice(0, 10);
  const progress = h('progress', { max: 1, value: 0, 'aria-label': 'Upload progress', hidden: true });
  const result = h('section', { id: 'upload-result', 'aria-live': 'polite' });
  let controller: AbortController | null = null;
  const cancel = button('Cancel', () => controller?.abort(), { class: 'secondary', disabled: true });

  const uploadForm = form(
    async (data) => {
      const file = data.get('file') as File | null;
      if (!file?.name) throw new MedvaultError('INVALID_ARGUMENT', 'choose a file to upload');
      const chosen = data.getAll('reader').map(String);
      controller = new AbortController();
      cancel.removeAttribute('disabled');
      progress.hidden = false;
      result.replaceChildren();
      try {
        const view = await upload(api, file, {
          subject: await api.subject(String(data.get('subject'))),
          readers: chosen,
          purpose: String(data.get('purpose')),
          expiresAt: new Date(String(data.get('until'))).getTime(),
          signal: controller.signal,
          progress,
        });
        result.replaceChildren(
          verdict(
            true,
            `Uploaded ${file.name}: record ${view.record.id}, anchored in block ${view.receipt.block.height}.`,
          ),
          definitions([
            ['Record', h('code', { 'data-record-id': view.record.id }, view.record.id)],
            ['Ciphertext SHA-256', h('code', {}, view.record.ciphertextHash)],
            ['Size', sizeOf(view.record.size)],
          ]),
        );
        say(`Uploaded ${file.name}.`);
      } finally {
        controller = null;
        cancel.setAttribute('disabled', '');
      }
    },
    field('File', h('input', { name: 'file', type: 'file', required: true })),
    field('Patient identifier or pseudonym', h('input', { name: 'subject', required: true, autocomplete: 'off' })),
    h(
      'fieldset',
      {},
      h('legend', {}, 'Readers (you are always one)'),
      ...readers.map((m) =>
        h(
          'label',
          { class: 'inline' },
          h('input', { type: 'checkbox', name: 'reader', value: m.id }),
          `${m.name} (${m.role})`,
        ),
      ),
    ),
    field(
      'Purpose',
      h('input', { name: 'purpose', required: true, pattern: '[a-z][a-z0-9._\\-]{0,39}', value: 'treatment' }),
    ),
    field('Readers may read until', h('input', { name: 'until', type: 'date', required: true, value: nextYear })),
    h('button', { type: 'submit' }, 'Encrypt and upload'),
  );
  main.replaceChildren(
    h('h1', {}, 'Upload a document'),
    uploadForm,
    h('div', { class: 'panel' }, progress, cancel),
    result,
  );
}

interface UploadRequest {
  subject: string;
  readers: string[];
  purpose: string;
  expiresAt: number;
  signal: AbortSignal;
  progress: HTMLProgressElement;
}

async function upload(api: Api, file: File, request: UploadRequest): Promise<{ record: RecordView; receipt: Receipt }> {
  const ids = [...new Set([...request.readers, api.me?.id as string])];
  const members = await api.refreshMembers();
  for (const id of ids) {
    if (!members.some((x) => x.id === id && x.removedAt === null)) throw new MedvaultError('MEMBER_NOT_FOUND', id);
  }
  const custodian = await api.json<{ recipient: string }>('GET', `/v1/subjects/${request.subject}/custodian`);

  // Encrypting: the first half of the bar. To the custodian alone, as the SDK does: the node's
  // KMS wraps the file key to each reader (it never keeps a reader stanza it cannot check).
  request.progress.max = file.size * 2 || 1;
  const core = new AgeEncryptor([X25519Recipient.parse(custodian.recipient)]);
  const hash = sha256.create();
  const parts: Uint8Array[] = [];
  const keep = (out: Uint8Array[]) => {
    for (const piece of out) {
      hash.update(piece);
      parts.push(piece);
    }
  };
  const reader = file.stream().getReader();
  let read = 0;
  let chunks = 0;
  for (;;) {
    if (request.signal.aborted) throw new MedvaultError('INVALID_ARGUMENT', 'upload cancelled');
    const { done, value } = await reader.read();
    if (done) break;
    const out: Uint8Array[] = [];
    core.update(value, out as never);
    keep(out);
    read += value.length;
    request.progress.value = read;
    // A file already read ahead resolves each read at once: yield to the page now and then, so
    // the bar is drawn and a click on Cancel is seen while encrypting.
    if (++chunks % 16 === 0) await new Promise((resolve) => setTimeout(resolve, 0));
  }
  if (request.signal.aborted) throw new MedvaultError('INVALID_ARGUMENT', 'upload cancelled');
  const out: Uint8Array[] = [];
  core.final(out as never);
  keep(out);

  const query = new URLSearchParams({
    subject: request.subject,
    readers: ids.join(','),
    purpose: request.purpose,
    expiresAt: String(request.expiresAt),
    idempotencyKey: crypto.randomUUID(),
  });
  const body = new Blob(parts as BlobPart[]);
  const result = (await api.upload(
    `/v1/records?${query}`,
    body,
    hex(hash.digest()),
    (sent) => {
      request.progress.value = file.size + (sent / body.size) * file.size;
    },
    request.signal,
  )) as { record: RecordView; receipt: Receipt };
  api.verify(result.receipt);
  return result;
}
