/**
 * A second verifier, written in Python from docs/formats.md alone (verifier/medvault_verify.py),
 * accepts the format vectors and a real node's receipts and certificates, and refuses each of
 * them tampered: the page is enough to check medvault without medvault.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Receipt } from '../../anchor/receipt.ts';
import type { ErasureCertificate } from '../../services/protocol/certificate.ts';
import { bytes, ROOT, tempDir } from '../helpers.ts';
import { startNode, type TestNode, treatment } from '../services/vault-fixture.ts';

const VERIFIER = join(ROOT, 'verifier', 'medvault_verify.py');
const VECTORS = join(import.meta.dirname, 'vectors', 'formats.json');
const work = tempDir('medvault-pyverify-');
let n = 0;

/** The Python verifier's exit status and output on `document`. */
function python(kind: string, document: unknown, ...args: string[]) {
  const file = join(work, `${kind}-${n++}.json`);
  writeFileSync(file, JSON.stringify(document));
  const run = spawnSync('python3', [VERIFIER, kind, file, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { status: run.status, out: `${run.stdout}${run.stderr}` };
}

/** `document` with `edit` applied to a deep copy. */
function tampered<T>(document: T, edit: (copy: T) => void): T {
  const copy = structuredClone(document);
  edit(copy);
  return copy;
}

/** One base64 character of a signature changed (still canonical base64). */
const flipSig = (sig: string) => `${sig[0] === 'A' ? 'B' : 'A'}${sig.slice(1)}`;

describe('the independent Python verifier', () => {
  const vectors = JSON.parse(readFileSync(VECTORS, 'utf8'));
  let node: TestNode;
  let receipt: Receipt;
  let certificate: ErasureCertificate;

  beforeAll(async () => {
    node = await startNode();
    const hospital = await node.addMember('hospital', 'uploader');
    const dpo = await node.addMember('dpo', 'dpo');
    const subject = 'c'.repeat(64);
    ({ receipt } = await hospital.client.upload(bytes(10_000, 1), { ...treatment([]), subject }));
    await hospital.client.upload(bytes(20_000, 2), { ...treatment([]), subject });
    certificate = await dpo.client.erase({ subject });
  });
  afterAll(() => node?.stop());

  it('accepts every vector of docs/formats.md', () => {
    expect(python('vectors', vectors)).toMatchObject({
      status: 0,
      out: expect.stringContaining('every vector verifies'),
    });
  });

  it.each([
    ['a request signature', (v: typeof vectors) => (v.request.signature = flipSig(v.request.signature))],
    ['a signed request path', (v: typeof vectors) => (v.request.path += 'x')],
    ['an upload trailer', (v: typeof vectors) => (v.request.upload.bodySha256 = '0'.repeat(64))],
    ['a pseudonym', (v: typeof vectors) => (v.pseudonym.identifier = 'MRN-0012346')],
    ['an event in a block', (v: typeof vectors) => (v.blocks[0].events[1].at += 1)],
    ['a block link', (v: typeof vectors) => (v.blocks[1].header.prev = '0'.repeat(64))],
    ['a receipt leaf index', (v: typeof vectors) => (v.receipt.leafIndex = 2)],
    [
      'a checkpoint signature',
      (v: typeof vectors) => (v.checkpoint.signatures[1].sig = flipSig(v.checkpoint.signatures[1].sig)),
    ],
    ['a certificate cosignature', (v: typeof vectors) => (v.certificate.cosignatures[0].at += 1)],
    ['a certificate part', (v: typeof vectors) => (v.certificate.parts[0].executedAt += 1)],
    ['an invite digest', (v: typeof vectors) => (v.invite.invite.expiresAt += 1)],
  ])('refuses the vectors with %s changed', (_name, edit) => {
    expect(python('vectors', tampered(vectors, edit)).status).toBe(1);
  });

  it('signs requests a node accepts, as docs/formats.md says (a client in another language)', async () => {
    const dpo = await node.addMember('python-dpo', 'dpo');
    const signed = (method: string, path: string, body?: string) => {
      const args = [VERIFIER, 'sign-request', dpo.keyFile, method, path];
      if (body !== undefined) {
        const file = join(work, `body-${n++}.json`);
        writeFileSync(file, body);
        args.push(file);
      }
      const run = spawnSync('python3', args, { encoding: 'utf8', timeout: 30_000 });
      expect(run.status, run.stderr).toBe(0);
      return JSON.parse(run.stdout) as Record<string, string>;
    };
    const list = await fetch(`${node.url}/v1/erasures`, { headers: signed('GET', '/v1/erasures') });
    expect(list.status).toBe(200);
    const body = JSON.stringify({ recordId: 'e'.repeat(32) });
    const filed = await fetch(`${node.url}/v1/erasures`, {
      method: 'POST',
      headers: { ...signed('POST', '/v1/erasures', body), 'content-type': 'application/json' },
      body,
    });
    expect(filed.status).toBe(404); // signed correctly, about a record that does not exist
    expect(await filed.json()).toMatchObject({ code: 'RECORD_NOT_FOUND' });
    // The same headers for another body: refused.
    const other = await fetch(`${node.url}/v1/erasures`, {
      method: 'POST',
      headers: { ...signed('POST', '/v1/erasures', body), 'content-type': 'application/json' },
      body: JSON.stringify({ recordId: 'f'.repeat(32) }),
    });
    expect(other.status).toBe(401);
  });

  it("accepts a real node's receipt and certificate, and refuses them altered", () => {
    const trust = ['--trust', node.vault.nodeId];
    expect(python('receipt', receipt, ...trust)).toMatchObject({
      status: 0,
      out: expect.stringContaining('record.created'),
    });
    expect(python('receipt', receipt, '--trust', 'f'.repeat(32)).status).toBe(1);
    expect(
      python(
        'receipt',
        tampered(receipt, (r) => (r.event.size = Number(r.event.size) + 1)),
      ).status,
    ).toBe(1);
    expect(python('certificate', certificate, ...trust)).toMatchObject({
      status: 0,
      out: expect.stringContaining('2 record(s) erased, complete'),
    });
    for (const [name, edit] of [
      ['its signature', (c: ErasureCertificate) => (c.sig = flipSig(c.sig))],
      ['its execution time', (c: ErasureCertificate) => (c.executedAt += 1)],
      ['a tombstone', (c: ErasureCertificate) => ((c.records[0] as { tombstone: Receipt }).tombstone.event.at += 1)],
      [
        'a creation receipt left out',
        (c: ErasureCertificate) => delete (c.records[0] as { created?: Receipt }).created,
      ],
    ] as const) {
      expect(python('certificate', tampered(certificate, edit), ...trust).status, name).toBe(1);
    }
  });
});
