/**
 * Erasure post-conditions, checked on the node's own files: after a subject
 * is erased its blobs are gone from the store, its custodian key's bytes and
 * its headers' bytes appear in no file of the data directory (keystore,
 * metadata database and its WAL, ledger), the records answer 410, and the
 * certificate verifies offline (and fails with any byte changed). Also: a
 * fetched record decrypts with the stock `age` CLI.
 */
import { execFile } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { splitAgeFile } from '../../crypto/age.ts';
import { SigningKey } from '../../crypto/ed25519.ts';
import { destroyedTag } from '../../kms/kms.ts';
import { signCertificate, verifyCertificate } from '../../services/protocol/certificate.ts';
import { bytes, CLI, codeOf, filesUnder, flipBits, tempDir } from '../helpers.ts';
import { openKeystoreFiles } from '../kms/keystore-files.ts';
import { DAY, served, startNode, type TestMember, type TestNode } from './vault-fixture.ts';

const run = promisify(execFile);
const SUBJECT = 'b'.repeat(64);
const OTHER = 'c'.repeat(64);
const VERIFIED_FLIPS_AT_LEAST = 100;
let node: TestNode;
let hospital: TestMember;
let reader: TestMember;
let dpo: TestMember;
const out = tempDir();
let otherRecord: string;
let otherDocument: Uint8Array;

const upload = (subject: string, size: number, seed: number) =>
  hospital.client.upload(bytes(size, seed), {
    subject,
    readers: [reader.id],
    purpose: 'treatment',
    expiresAt: Date.now() + DAY,
  });

beforeAll(async () => {
  node = await startNode();
  hospital = await node.addMember('hospital', 'uploader');
  reader = await node.addMember('reader', 'reader');
  dpo = await node.addMember('dpo', 'dpo');
  // Another subject's record, which the erasure below must leave alone (made here, not by another test).
  otherDocument = bytes(200_000, 9);
  otherRecord = (await upload(OTHER, otherDocument.length, 9)).record.id;
});
afterAll(() => node?.stop());

describe('a fetched record is a plain age file', () => {
  it('the stock age CLI decrypts header + blob with the member key file', async () => {
    const sealed = join(out, 'record.age');
    writeFileSync(sealed, await served(reader, otherRecord));
    const plain = join(out, 'record.plain');
    await run('age', ['-d', '-i', reader.keyFile, '-o', plain, sealed]);
    expect(Buffer.compare(readFileSync(plain), otherDocument)).toBe(0);
  });
});

describe('erasure of a subject', () => {
  let records: string[];
  let headers: Buffer[];
  const payloads: Buffer[] = [];
  let custodianSecret: Buffer;
  let certificate: Awaited<ReturnType<TestMember['client']['erase']>>;
  const keystore = () => join(node.data, 'keystore.sealed');
  const keyFile = () => ({ keyFile: new Uint8Array(readFileSync(join(node.data, 'keystore.key'))) });

  beforeAll(async () => {
    records = [];
    headers = [];
    for (let i = 0; i < 3; i++) records.push((await upload(SUBJECT, 100_000 + i, 20 + i)).record.id);
    for (const id of records) {
      const { header, payload } = splitAgeFile(await served(reader, id));
      headers.push(Buffer.from(header));
      payloads.push(Buffer.from(payload));
    }
    const { custodians } = await openKeystoreFiles(keystore(), keyFile());
    custodianSecret = Buffer.from(custodians[SUBJECT]?.secret ?? '', 'base64');
    expect(custodianSecret.length).toBe(32);
    certificate = await dpo.client.erase({ subject: SUBJECT });
  });

  it('the certificate lists every record, its store confirmation, the destroyed key and the tombstones', () => {
    expect(certificate.records.map((r) => r.recordId).sort()).toEqual([...records].sort());
    for (const r of certificate.records) {
      expect(r.stores).toEqual([expect.objectContaining({ removed: true })]);
      expect(r.tombstone.event).toMatchObject({ type: 'record.erased', recordId: r.recordId });
    }
    expect(certificate.kms).toMatchObject({ backend: 'local' });
  });

  it('the blobs are gone from the store', async () => {
    const blobs = filesUnder(join(node.data, 'blobs')).map((p) => p.split('/').pop());
    for (const r of certificate.records) expect(blobs).not.toContain(r.ciphertextHash);
  });

  it("the custodian key's bytes are in no file of the data directory, the opened keystore included", async () => {
    const opened = await openKeystoreFiles(keystore(), keyFile());
    expect(opened.custodians[SUBJECT]).toBeUndefined();
    expect(opened.keystore.destroyed[destroyedTag(SUBJECT)]).toBeDefined();
    expect(opened.text).not.toContain(SUBJECT); // listed by tag, not by pseudonym
    expect(opened.text).not.toContain(custodianSecret.toString('base64'));
    for (const file of filesUnder(node.data)) {
      const content = readFileSync(file);
      expect(content.indexOf(custodianSecret), file).toBe(-1);
      expect(content.indexOf(Buffer.from(custodianSecret.toString('base64'))), file).toBe(-1);
    }
    expect(filesUnder(node.data).filter((f) => /\.(tmp|bak|partial)$|~$/.test(f))).toEqual([]);
  });

  it("the headers' bytes (every wrapped key) are in no file: database, WAL, ledger", () => {
    for (const file of filesUnder(node.data)) {
      const content = readFileSync(file);
      for (const header of headers) {
        // Any one stanza body is enough to find a leftover copy.
        const stanza = header.toString('latin1').split('\n')[2] as string;
        expect(content.indexOf(Buffer.from(stanza, 'latin1')), file).toBe(-1);
      }
    }
  });

  it('the records answer 410 Gone to everyone, and the other subject is untouched', async () => {
    for (const id of records) {
      await expect(reader.client.fetch(id, { path: join(out, 'gone') })).rejects.toMatchObject({
        code: 'RECORD_ERASED',
      });
      await expect(hospital.client.record(id)).rejects.toMatchObject({ code: 'RECORD_ERASED', info: { status: 410 } });
    }
    const other = await reader.client.fetch(otherRecord, { path: join(out, 'other') });
    expect(other.bytes).toBe(200_000);
  });

  it('the audit trail stays, ending in the tombstone', async () => {
    const events = await dpo.client.audit(records[0] as string);
    expect(events.at(-1)?.event).toMatchObject({ type: 'record.erased', requestId: certificate.requestId });
  });

  it('the certificate verifies offline with the CLI, and fails with any byte changed', async () => {
    const file = join(out, 'certificate.json');
    const text = JSON.stringify(certificate, null, 2);
    writeFileSync(file, text);
    const { stdout } = await run(process.execPath, [CLI, 'verify', file, '--trust', node.vault.nodeId]);
    expect(stdout).toMatch(/^certificate OK: erasure [0-9a-f]{32} of 3 record\(s\)/);
    const raw = Buffer.from(text);
    let verified = 0; // flips that reached verification (still JSON, not whitespace only)
    for (let i = 0; i < 200; i++) {
      const at = Math.floor((i / 200) * raw.length);
      const mutated = flipBits(Buffer.from(raw), at, 1 << (i % 7));
      let value: unknown;
      try {
        value = JSON.parse(mutated.toString('utf8'));
      } catch {
        continue; // no longer JSON: refused before verification
      }
      if (JSON.stringify(value) === JSON.stringify(certificate)) continue; // whitespace only
      verified++;
      expect(
        codeOf(() => verifyCertificate(value)),
        `byte ${at}`,
      ).toBe('CERTIFICATE_INVALID');
    }
    // Most flips land inside values (hex digits, numbers, base64), not on JSON's punctuation or
    // the indentation: if fewer reached verification, the loop above was testing the parser.
    expect(verified).toBeGreaterThanOrEqual(VERIFIED_FLIPS_AT_LEAST);
  });

  it('a block header is checked once per certificate, but a second copy with another signature is refused', () => {
    const tombstones = certificate.records.map((r) => r.tombstone);
    const shared = tombstones.findIndex((t, i) => i > 0 && t.block.height === tombstones[0]?.block.height);
    expect(shared).toBeGreaterThan(0); // two tombstones in one block: the header seen twice
    const forged = structuredClone(certificate);
    const header = (forged.records[shared] as { tombstone: { block: { sig: string } } }).tombstone.block;
    header.sig = `${header.sig[0] === 'A' ? 'B' : 'A'}${header.sig.slice(1)}`;
    // Signed anew by whoever forged it: only the header's own signature can tell.
    const { v: _v, type: _t, signer: _s, signerKey: _k, sig: _g, ...body } = forged;
    const resigned = signCertificate(body, SigningKey.generate());
    expect(codeOf(() => verifyCertificate(resigned))).toBe('CERTIFICATE_INVALID');
    expect(verifyCertificate(certificate).records).toBe(3);
  });

  it('the sweep finds no trace anywhere, and says where it looked', async () => {
    const report = await dpo.client.sweep(certificate.requestId);
    expect(report.findings).toEqual([]);
    expect(report.records).toBe(3);
    expect(report.checked).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^store fs: /),
        'kms local: custodian of the subject',
        expect.stringMatching(/metadata\.db$/),
        expect.stringMatching(/keystore\.sealed$/),
        expect.stringMatching(/ledger\.mvl$/),
      ]),
    );
  });

  it('the sweep finds a planted copy of a header, a log line with a ciphertext hash, and a blob put back', async () => {
    const planted = join(node.data, 'forgotten-backup.txt');
    writeFileSync(planted, Buffer.concat([Buffer.from('x'), headers[1] as Buffer]));
    const log = join(out, 'node.log');
    writeFileSync(log, `{"msg":"stored","hash":"${certificate.records[0]?.ciphertextHash}"}\n`);
    process.env.MEDVAULT_SWEEP_LOGS = log;
    const { FsBlobStore } = await import('../../storage/fs-store.ts');
    const store = await FsBlobStore.open(join(node.data, 'blobs'));
    const putBack = payloads[2] as Buffer; // a copy of the third record's ciphertext, restored from somewhere
    const again = await store.put(
      (async function* () {
        yield putBack;
      })(),
    );
    try {
      const report = await dpo.client.sweep(certificate.requestId);
      const where = report.findings.map((f) => `${f.where}: ${f.what}`);
      expect(where).toEqual(
        expect.arrayContaining([
          expect.stringMatching(/forgotten-backup\.txt: header bytes/),
          expect.stringMatching(new RegExp(`node\\.log: "${certificate.records[0]?.ciphertextHash}"`)),
        ]),
      );
      expect(where).toContain(`store fs: ${again.ref}`);
      expect(certificate.records.map((r) => r.ciphertextHash)).toContain(again.ref);
    } finally {
      delete process.env.MEDVAULT_SWEEP_LOGS;
      await store.delete(again.ref);
      rmSync(planted); // leave the node as clean as the other tests expect it
    }
  });

  it('erasing the same subject again, or one never seen, is 404 and anchors nothing; an erased record answers 410', async () => {
    const head = await node.vault.ledger.head();
    for (const subject of [SUBJECT, 'd'.repeat(64)]) {
      await expect(dpo.client.erase({ subject })).rejects.toMatchObject({
        code: 'SUBJECT_NOT_FOUND',
        info: { status: 404 },
      });
    }
    await expect(dpo.client.erase({ recordId: records[0] as string })).rejects.toMatchObject({ code: 'RECORD_ERASED' });
    expect(await node.vault.ledger.head()).toEqual(head);
  });

  it("the subject's pseudonym is in no file of the data directory: not the ledger, not the database", () => {
    // The test's own byte scan, not the sweep: every file, raw (WAL and freed pages included).
    const needle = Buffer.from(SUBJECT, 'latin1');
    for (const file of filesUnder(node.data)) expect(readFileSync(file).indexOf(needle), file).toBe(-1);
    // The other subject, not erased, is still known (the scan can find what is there).
    expect(filesUnder(node.data).some((f) => readFileSync(f).indexOf(Buffer.from(OTHER, 'latin1')) >= 0)).toBe(true);
  });

  it('the certificate names no pseudonym: the commitment on the ledger, and the destroyed key checked against each record', () => {
    expect(JSON.stringify(certificate)).not.toContain(SUBJECT);
    expect(certificate.scope).toEqual({ subjectCommitment: certificate.filed.event.target });
    for (const r of certificate.records) expect(r.created?.event.custodian).toBe(certificate.kms?.keyId);
    // Re-signed by another key as it is, it verifies (integrity, not who signed: no --trust)...
    const {
      v: _v,
      type: _t,
      signer: _s,
      signerKey: _k,
      sig: _g,
      cosignatures: _c,
      ...body
    } = structuredClone(certificate);
    const other = SigningKey.generate();
    expect(verifyCertificate(signCertificate(body, other)).keyDestroyed).toBe(true);
    // ...but claiming another destroyed key than the records' anchored custodian, it does not.
    if (body.kms) body.kms.keyId = 'e'.repeat(32);
    expect(() => verifyCertificate(signCertificate(body, other))).toThrow(/not the destroyed key/);
  });
});

describe('erasure on a replicated store (fs + fs)', () => {
  const roots = tempDir('medvault-replicas-');
  const replica = (name: string) => ({ name, config: { kind: 'fs' as const, root: join(roots, name) } });
  let replicated: TestNode;
  let uploader: TestMember;
  let grantee: TestMember;
  let officer: TestMember;

  beforeAll(async () => {
    replicated = await startNode({
      overrides: { store: { kind: 'replicated', replicas: [replica('first'), replica('second')] } },
    });
    uploader = await replicated.addMember('hospital', 'uploader');
    grantee = await replicated.addMember('reader', 'reader');
    officer = await replicated.addMember('dpo', 'dpo');
  });
  afterAll(() => replicated?.stop());

  it('deletes every copy, and the sweep finds a copy put back on the second replica alone', async () => {
    const { record } = await uploader.client.upload(bytes(50_000, 77), {
      subject: SUBJECT,
      readers: [grantee.id],
      purpose: 'treatment',
      expiresAt: Date.now() + DAY,
    });
    const { payload } = splitAgeFile(await served(grantee, record.id));
    const erased = await officer.client.erase({ subject: SUBJECT });
    expect(erased.records.map((r) => r.recordId)).toEqual([record.id]);
    for (const name of ['first', 'second']) expect(filesUnder(join(roots, name)), name).toEqual([]);
    expect((await officer.client.sweep(erased.requestId)).findings).toEqual([]);

    // A copy restored on the second replica only: a sweep that asked the first copy alone would miss it.
    const { FsBlobStore } = await import('../../storage/fs-store.ts');
    const second = await FsBlobStore.open(join(roots, 'second'));
    const back = await second.put(
      (async function* () {
        yield Buffer.from(payload);
      })(),
    );
    try {
      expect(back.ref).toBe(erased.records[0]?.ciphertextHash);
      const report = await officer.client.sweep(erased.requestId);
      expect(report.findings).toEqual([expect.objectContaining({ where: 'store replicated', count: 1 })]);
    } finally {
      await second.delete(back.ref);
    }
  });
});
