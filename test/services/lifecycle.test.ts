/**
 * The record lifecycle beyond the happy path: re-encrypting revocation,
 * grant expiry dropping the stanza, an upload cut off mid-stream, and a
 * restart that finds uploads a crash interrupted.
 */

import { existsSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Batcher } from '../../anchor/batcher.ts';
import { subjectCommitment } from '../../anchor/events.ts';
import { FileLedger } from '../../anchor/file-ledger.ts';
import { encrypt, openHeader, splitAgeFile } from '../../crypto/age.ts';
import { parseHeader } from '../../crypto/header.ts';
import { X25519Recipient } from '../../crypto/x25519.ts';
import { LocalKms } from '../../kms/local-kms.ts';
import { signRequest, UNSIGNED_PAYLOAD } from '../../services/protocol/signing.ts';
import { Metadata } from '../../services/vault/metadata.ts';
import { initNode, openNode } from '../../services/vault/node.ts';
import { FsBlobStore } from '../../storage/fs-store.ts';
import { bytes, filesUnder, tempDir } from '../helpers.ts';
import { DAY, SUBJECT, served, startNode, type TestMember, type TestNode } from './vault-fixture.ts';

let node: TestNode;
let hospital: TestMember;
let reader: TestMember;
let insurer: TestMember;
const out = tempDir();

beforeAll(async () => {
  node = await startNode();
  hospital = await node.addMember('hospital', 'uploader');
  reader = await node.addMember('reader', 'reader');
  insurer = await node.addMember('insurer', 'reader');
});
afterAll(() => node?.stop());

describe('revocation with re-encryption', () => {
  it('makes a new file key and blob, deletes the old blob, and an old header copy opens nothing', async () => {
    const document = bytes(300_000, 4);
    const { record } = await hospital.client.upload(document, {
      subject: SUBJECT,
      readers: [reader.id, insurer.id],
      purpose: 'treatment',
      expiresAt: Date.now() + DAY,
    });
    const before = splitAgeFile(await served(insurer, record.id));
    const result = await hospital.client.revoke(record.id, insurer.id, { reencrypt: true });
    expect(result.receipt.event).toMatchObject({ type: 'acl.revoked', reencrypted: true });
    const newHash = result.reencrypted?.event.ciphertextHash;
    expect(newHash).toMatch(/^[0-9a-f]{64}$/);
    expect(newHash).not.toBe(record.ciphertextHash);
    const blobs = filesUnder(join(node.data, 'blobs')).map((p) => p.split('/').pop());
    expect(blobs).not.toContain(record.ciphertextHash);
    expect(blobs).toContain(newHash);
    // The remaining reader fetches, checked against the record.reencrypted receipt.
    const fetched = await reader.client.fetch(record.id, { path: join(out, 'after.bin') });
    expect(fetched.ciphertextHash).toBe(newHash);
    expect(Buffer.compare(readFileSync(join(out, 'after.bin')), document)).toBe(0);
    // The insurer's old header unwraps the old file key, which opens nothing now served.
    const { fileKey } = openHeader(before.header, [insurer.keys.identity]);
    const now = splitAgeFile(await served(reader, record.id));
    expect(() => openHeader(now.header, [insurer.keys.identity])).toThrow(/no identity/);
    const stanzas = parseHeader(now.header).stanzas;
    expect(stanzas).toHaveLength(3); // hospital, reader, custodian
    expect(fileKey).toHaveLength(16);
  });
});

describe('grant expiry', () => {
  it('an expired grant stops working and its stanza leaves the stored header', async () => {
    const { record } = await hospital.client.upload(bytes(5000), {
      subject: SUBJECT,
      readers: [reader.id],
      purpose: 'treatment',
      expiresAt: Date.now() + DAY,
    });
    await hospital.client.grant(record.id, insurer.id, { purpose: 'claims.review', expiresAt: Date.now() + 500 });
    expect(parseHeader(splitAgeFile(await served(reader, record.id)).header).stanzas).toHaveLength(4);
    await new Promise((r) => setTimeout(r, 600));
    expect(await node.vault.expireGrants()).toBe(1); // the server's sweep (a fetch would also drop it first)
    expect(await node.vault.expireGrants()).toBe(0); // dropped once: the next sweep has nothing to do
    await expect(insurer.client.fetch(record.id, { path: join(out, 'late') })).rejects.toMatchObject({
      code: 'NO_GRANT',
    });
    const header = splitAgeFile(await served(reader, record.id)).header;
    expect(parseHeader(header).stanzas).toHaveLength(3);
    expect(() => openHeader(header, [insurer.keys.identity])).toThrow(/no identity/);
  });
});

describe('a stored blob the disk damaged', () => {
  // A small record is read and checked whole before its access is anchored: a fetch the store
  // cannot serve is refused STORE_INTEGRITY and leaves no access on the ledger or in the trail.
  /** A record of `size` bytes uploaded for the reader, and its blob's file. */
  const stored = async (size: number) => {
    const { record } = await hospital.client.upload(bytes(size, 9), {
      subject: SUBJECT,
      readers: [reader.id],
      purpose: 'treatment',
      expiresAt: Date.now() + DAY,
    });
    return {
      record,
      blob: filesUnder(join(node.data, 'blobs')).find((p) => p.endsWith(record.ciphertextHash)) as string,
    };
  };
  const damaged = async (damage: (path: string, size: number) => void) => {
    const { record, blob } = await stored(2000);
    damage(blob, record.size);
    const head = await node.vault.ledger.head();
    const failed = await reader.client.fetch(record.id, { path: join(out, `damaged-${record.id}.bin`) }).then(
      () => 'no error',
      (e: { code?: string }) => e.code,
    );
    const trail = (await hospital.client.audit(record.id)).map((r) => r.event.type);
    return { failed, anchored: (await node.vault.ledger.head())?.height !== head?.height, trail };
  };

  it('one that lost its tail is refused STORE_INTEGRITY, with no access anchored', async () => {
    const { failed, anchored, trail } = await damaged((path, size) => truncateSync(path, size - 10));
    expect(failed).toBe('STORE_INTEGRITY');
    expect(anchored).toBe(false);
    expect(trail).not.toContain('record.accessed');
  });

  it('a large one (streamed) that lost its tail is refused STORE_INTEGRITY too, with no access anchored and no file', async () => {
    const { record, blob } = await stored(300_000);
    truncateSync(blob, record.size - 10);
    const head = await node.vault.ledger.head();
    const path = join(out, 'large-short.bin');
    const failed = await reader.client.fetch(record.id, { path }).then(
      () => 'no error',
      (e: { code?: string; message?: string }) => e.code ?? e.message,
    );
    expect(failed).toBe('STORE_INTEGRITY');
    expect((await node.vault.ledger.head())?.height).toBe(head?.height);
    expect((await hospital.client.audit(record.id)).map((r) => r.event.type)).not.toContain('record.accessed');
    expect(existsSync(path)).toBe(false);
  });

  it('one with a byte flipped is refused STORE_INTEGRITY, with no access anchored', async () => {
    const { failed, anchored, trail } = await damaged((path) => {
      const stored = readFileSync(path);
      stored[100] = (stored[100] as number) ^ 1;
      writeFileSync(path, stored);
    });
    expect(failed).toBe('STORE_INTEGRITY');
    expect(anchored).toBe(false);
    expect(trail).not.toContain('record.accessed');
  });
});

describe('an upload cut off mid-stream', () => {
  it('leaves no record, no anchor and no blob', async () => {
    const height = (await node.vault.ledger.head())?.height;
    const blobs = filesUnder(join(node.data, 'blobs'));
    const { recipient } = await hospital.client.custodian(SUBJECT);
    const file = encrypt([X25519Recipient.parse(recipient)], bytes(4 * 1024 * 1024));
    const path = `/v1/records?subject=${SUBJECT}&readers=${reader.id}&purpose=treatment&expiresAt=${Date.now() + DAY}`;
    const url = new URL(node.url);
    await new Promise<void>((resolve) => {
      const req = request({
        host: url.hostname,
        port: url.port,
        method: 'POST',
        path,
        headers: {
          'content-type': 'application/octet-stream',
          ...signRequest(hospital.keys.signing, 'POST', path, UNSIGNED_PAYLOAD),
        },
      });
      req.on('error', () => resolve());
      req.write(file.subarray(0, 2 * 1024 * 1024), () => {
        setTimeout(() => {
          req.destroy();
          resolve();
        }, 100);
      });
    });
    await new Promise((r) => setTimeout(r, 300));
    expect((await node.vault.ledger.head())?.height).toBe(height);
    expect(filesUnder(join(node.data, 'blobs'))).toEqual(blobs);
    expect(await node.vault.ready()).toMatchObject({ store: 'ok', ledger: 'ok' });
  });
});

describe('restart after a crash', () => {
  it('completes an anchored pending upload, rolls back an unanchored one, and collects stray blobs', async () => {
    const data = tempDir('medvault-crash-');
    await initNode(data);
    // What a crash leaves: two pending rows with their blobs, one anchored and one not, and a stray blob.
    const kms = await LocalKms.open(join(data, 'keystore.sealed'), {
      keyFile: new Uint8Array(readFileSync(join(data, 'keystore.key'))),
    });
    const nodeKey = kms.memberKeys('node').signing;
    const store = await FsBlobStore.open(join(data, 'blobs'));
    const put = (seed: number) =>
      store.put(
        (async function* () {
          yield bytes(1000, seed);
        })(),
      );
    const [anchored, unanchored, stray] = [await put(1), await put(2), await put(3)];
    const metadata = new Metadata(join(data, 'metadata.db'));
    const [admin] = metadata.members();
    const row = (id: string, blob: typeof anchored) => ({
      id,
      subject: SUBJECT,
      uploader: admin?.id as string,
      state: 'pending' as const,
      ciphertextHash: blob.sha256,
      size: blob.size,
      blobRef: blob.ref,
      header: new Uint8Array([1, 2, 3]),
      createdAt: Date.now(),
      ledgerFrom: 0,
      erasedAt: null,
      erasureId: null,
    });
    metadata.insertRecord(row('1'.repeat(32), anchored));
    metadata.insertRecord(row('2'.repeat(32), unanchored));
    metadata.close();
    const ledger = await FileLedger.open(join(data, 'ledger.mvl'));
    const batcher = new Batcher(ledger, nodeKey);
    await Promise.all([
      batcher.submit({
        type: 'record.created',
        at: Date.now(),
        recordId: '1'.repeat(32),
        ciphertextHash: anchored.sha256,
        headerHash: 'e'.repeat(64),
        size: anchored.size,
        uploader: admin?.id as string,
        subject: SUBJECT,
        node: nodeKey.id,
      }),
      batcher.submit({
        type: 'acl.granted',
        at: Date.now(),
        recordId: '1'.repeat(32),
        reader: admin?.id as string,
        grantor: admin?.id as string,
        purpose: 'treatment',
        expiresAt: Date.now() + DAY,
      }),
    ]);
    await ledger.close();
    await store.close();

    const vault = await openNode(data);
    await vault.close();
    const after = new Metadata(join(data, 'metadata.db'));
    expect(after.record('1'.repeat(32))?.state).toBe('active');
    expect(after.liveGrants('1'.repeat(32), Date.now()).map((g) => g.reader)).toEqual([admin?.id]);
    expect(after.anchors('1'.repeat(32)).map((a) => a.type)).toEqual(['record.created', 'acl.granted']);
    expect(after.record('2'.repeat(32))).toBeUndefined();
    after.close();
    const left = filesUnder(join(data, 'blobs')).map((p) => p.split('/').pop());
    expect(left).toContain(anchored.sha256);
    expect(left).not.toContain(unanchored.sha256);
    expect(left).not.toContain(stray.sha256);
  });
});

describe('erasure with a cancel window', () => {
  const subject = 'e'.repeat(64);
  let dpo: TestMember;
  beforeAll(async () => {
    dpo = await node.addMember('dpo', 'dpo');
  });
  const upload = () =>
    hospital.client.upload(bytes(3000, 8), {
      subject,
      readers: [reader.id],
      purpose: 'treatment',
      expiresAt: Date.now() + DAY,
    });

  it('a scheduled erasure is anchored when filed, can be cancelled in its window, and then changes nothing', async () => {
    const { record } = await upload();
    const filed = await dpo.client.scheduleErasure({ subject }, 3600);
    expect(filed).toMatchObject({ state: 'scheduled' });
    // The ledger names a commitment to the subject under this request, never the pseudonym.
    expect(filed.receipt.event).toMatchObject({
      type: 'erasure.filed',
      scope: 'subject',
      target: subjectCommitment(filed.requestId, subject),
    });
    expect(JSON.stringify(filed.receipt)).not.toContain(subject);
    expect(await node.vault.erasures.runDue()).toEqual([]); // not due yet
    const { receipt } = await dpo.client.cancelErasure(filed.requestId);
    expect(receipt.event).toMatchObject({ type: 'erasure.cancelled', requestId: filed.requestId, by: dpo.id });
    await expect(dpo.client.cancelErasure(filed.requestId)).rejects.toMatchObject({ code: 'ERASURE_NOT_CANCELLABLE' });
    expect((await dpo.client.erasures()).find((e) => e.id === filed.requestId)?.state).toBe('cancelled');
    expect((await reader.client.fetch(record.id, { path: join(out, 'kept') })).bytes).toBe(3000);
  });

  it('once its window has passed it runs, records uploaded meanwhile included, and cannot be cancelled', async () => {
    const first = await upload();
    const filed = await dpo.client.scheduleErasure({ subject }, 1);
    const second = await upload(); // inside the window: still erased with the subject
    await new Promise((r) => setTimeout(r, 1100));
    const [certificate] = await node.vault.erasures.runDue();
    expect(certificate?.requestId).toBe(filed.requestId);
    expect(certificate?.filed.event).toMatchObject({ type: 'erasure.filed', requestId: filed.requestId });
    expect(certificate?.records.map((r) => r.recordId)).toEqual(
      expect.arrayContaining([first.record.id, second.record.id]),
    );
    await expect(dpo.client.cancelErasure(filed.requestId)).rejects.toMatchObject({ code: 'ERASURE_NOT_CANCELLABLE' });
    expect((await dpo.client.erasure(filed.requestId)).requestId).toBe(filed.requestId);
    expect((await dpo.client.sweep(filed.requestId)).findings).toEqual([]);
    await expect(reader.client.fetch(second.record.id, { path: join(out, 'gone') })).rejects.toMatchObject({
      code: 'RECORD_ERASED',
    });
  });
});
