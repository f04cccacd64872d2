/** End to end through HTTP with the SDK, on the embedded defaults: every flow. */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyCertificate } from '../../services/protocol/certificate.ts';
import { HEADER, UNSIGNED_PAYLOAD } from '../../services/protocol/signing.ts';
import { bytes, tempDir } from '../helpers.ts';
import { DAY, SUBJECT, startNode, type TestMember, type TestNode } from './vault-fixture.ts';

let node: TestNode;
let hospital: TestMember;
let radiologist: TestMember;
let insurer: TestMember;
let dpo: TestMember;
const out = tempDir();
const document = Buffer.from(bytes(3 * 1024 * 1024 + 17, 5));

beforeAll(async () => {
  node = await startNode();
  hospital = await node.addMember('hospital-a', 'uploader');
  radiologist = await node.addMember('radiologist', 'reader');
  insurer = await node.addMember('insurer', 'reader');
  dpo = await node.addMember('dpo', 'dpo');
});
afterAll(() => node?.stop());

describe('the vault end to end', () => {
  let recordId: string;

  it('upload: encrypted here, stored as ciphertext, anchored with a verifiable receipt', async () => {
    const { record, receipt } = await hospital.client.upload(document, {
      subject: SUBJECT,
      readers: [radiologist.id],
      purpose: 'treatment',
      expiresAt: Date.now() + 30 * DAY,
    });
    recordId = record.id;
    expect(receipt.event).toMatchObject({ type: 'record.created', recordId, ciphertextHash: record.ciphertextHash });
    expect(record.grants?.map((g) => g.reader).sort()).toEqual([hospital.id, radiologist.id].sort());
  });

  it('fetch: a grantee decrypts locally, and the ciphertext matches its anchored hash', async () => {
    const target = join(out, 'fetched.bin');
    const result = await radiologist.client.fetch(recordId, { path: target });
    expect(Buffer.compare(readFileSync(target), document)).toBe(0);
    expect(result.access.event).toMatchObject({ type: 'record.accessed', recordId, reader: radiologist.id });
  });

  it('upload from a file path: progress up to its size, and the reader gets the same bytes back', async () => {
    const path = join(out, 'scan.bin');
    writeFileSync(path, document);
    const progress: number[] = [];
    const subject = randomBytes(32).toString('hex'); // not SUBJECT, whose erasure is checked below
    const { record } = await hospital.client.upload(
      { path },
      {
        subject,
        readers: [radiologist.id],
        purpose: 'treatment',
        expiresAt: Date.now() + 30 * DAY,
        onProgress: (n) => progress.push(n),
      },
    );
    expect(progress.at(-1)).toBe(document.length);
    const target = join(out, 'scan-fetched.bin');
    await radiologist.client.fetch(record.id, { path: target });
    expect(Buffer.compare(readFileSync(target), document)).toBe(0);
    await expect(
      hospital.client.upload(
        { path: join(out, 'missing.bin') },
        { subject, readers: [radiologist.id], purpose: 'treatment', expiresAt: Date.now() + DAY },
      ),
    ).rejects.toMatchObject({ code: 'IO_ERROR' });
  });

  it('a small document, in memory or a file, is sent signed by its hash; a larger one streamed with a trailer', async () => {
    // What the node was sent: each upload's signed body hash (UNSIGNED-PAYLOAD: a trailer signs it).
    const signed: string[] = [];
    const seen = (request: IncomingMessage) => {
      if (request.method === 'POST' && request.url?.startsWith('/v1/records?')) {
        signed.push(String(request.headers[HEADER.body]));
      }
    };
    node.app.server.on('request', seen);
    try {
      const small = bytes(40_000, 6);
      const path = join(out, 'letter.txt');
      writeFileSync(path, small);
      const terms = { subject: randomBytes(32).toString('hex'), readers: [radiologist.id], purpose: 'treatment' };
      for (const source of [small, { path }, bytes(100_000, 7)]) {
        const { record } = await hospital.client.upload(source, { ...terms, expiresAt: Date.now() + DAY });
        const target = join(out, `${record.id}.bin`);
        await radiologist.client.fetch(record.id, { path: target });
        expect(readFileSync(target).length).toBe(source instanceof Uint8Array ? source.length : small.length);
      }
    } finally {
      node.app.server.off('request', seen);
    }
    expect(signed).toHaveLength(3);
    expect(signed.slice(0, 2).every((h) => /^[0-9a-f]{64}$/.test(h))).toBe(true);
    expect(signed[2]).toBe(UNSIGNED_PAYLOAD);
  });

  it('grant: a new reader opens the same blob through a rewrapped header', async () => {
    await expect(insurer.client.fetch(recordId, { path: join(out, 'x') })).rejects.toMatchObject({ code: 'NO_GRANT' });
    const { receipt } = await hospital.client.grant(recordId, insurer.id, {
      purpose: 'claims.review',
      expiresAt: Date.now() + DAY,
    });
    expect(receipt.event).toMatchObject({ type: 'acl.granted', reader: insurer.id, purpose: 'claims.review' });
    const target = join(out, 'insurer.bin');
    await insurer.client.fetch(recordId, { path: target });
    expect(Buffer.compare(readFileSync(target), document)).toBe(0);
  });

  it('revoke: the reader is refused, and the stored header no longer opens for it', async () => {
    await hospital.client.revoke(recordId, insurer.id);
    await expect(insurer.client.fetch(recordId, { path: join(out, 'y') })).rejects.toMatchObject({ code: 'NO_GRANT' });
  });

  it('break-glass: a stated reason opens the record once, anchored and queued for review', async () => {
    const target = join(out, 'emergency.bin');
    // The insurer, revoked, is refused; an ER clinician an admin gave break-glass is not.
    const reason = 'unconscious patient, emergency department';
    await expect(insurer.client.emergency(recordId, reason, { path: target })).rejects.toMatchObject({
      code: 'FORBIDDEN',
    });
    const clinician = await node.addMember('er-clinician', 'reader');
    await node.admin.client.setEmergencyAccess(clinician.id, true);
    const result = await clinician.client.emergency(recordId, reason, { path: target });
    expect(Buffer.compare(readFileSync(target), document)).toBe(0);
    expect(result.access.event.type).toBe('access.emergency');
    const reviews = await dpo.client.reviews();
    expect(reviews.map((r) => r.id)).toContain(result.reviewId);
  });

  it('audit: the trail comes from the ledger, each event with a verified receipt', async () => {
    const events = await hospital.client.audit(recordId);
    expect(events.map((e) => e.event.type)).toEqual([
      'record.created',
      'acl.granted',
      'acl.granted',
      'record.accessed',
      'acl.granted',
      'record.accessed',
      'acl.revoked',
      'access.emergency',
    ]);
  });

  it('erase: key destroyed, blob gone, 410 afterwards, certificate verifies offline', async () => {
    const certificate = await dpo.client.erase({ subject: SUBJECT });
    expect(certificate.records.map((r) => r.recordId)).toEqual([recordId]);
    expect(verifyCertificate(JSON.parse(JSON.stringify(certificate)), { trusted: [node.vault.nodeId] })).toMatchObject({
      records: 1,
      keyDestroyed: true,
    });
    await expect(radiologist.client.fetch(recordId, { path: join(out, 'z') })).rejects.toMatchObject({
      code: 'RECORD_ERASED',
    });
    expect((await dpo.client.sweep(certificate.requestId)).findings).toEqual([]);
  });
});
