/**
 * The subject access report (GDPR Art. 15) across a consortium of two nodes
 * on the suite's real etcd ledger: every record of the patient at both
 * nodes, each with its trail (stored, granted, read, revoked) as receipts
 * signed by the node holding it, members' names from each node's directory;
 * only a DPO asks; a forged report order is refused; a node that is down is
 * named as missing; the CLI's JSON and printable HTML both verify offline,
 * and a tampered one does not.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SigningKey } from '../../crypto/ed25519.ts';
import { signReportOrder } from '../../services/protocol/node-orders.ts';
import { verifySubjectReport } from '../../services/protocol/subject-report.ts';
import { subjectOf } from '../../services/sdk/pseudonym.ts';
import { bytes, codeOf, runCli, tempDir } from '../helpers.ts';
import { EtcdCluster } from '../servers/etcd.ts';
import { DAY, joinNode, startNode, type TestMember, type TestNode } from './vault-fixture.ts';

let cluster: EtcdCluster;
let a: TestNode;
let b: TestNode;
let dpo: TestMember;
let subject: string;
const ids: string[] = [];
const out = tempDir('medvault-report-');

beforeAll(async () => {
  cluster = await EtcdCluster.start(3);
  a = await startNode({ overrides: { ledger: `${cluster.uri}/reports` } });
  b = await joinNode(a);
  dpo = await a.addMember('dpo-anna', 'dpo');
  const atA = await a.addMember('st-mary', 'uploader');
  const atB = await b.addMember('city-clinic', 'uploader');
  const insurer = await a.addMember('insurer', 'reader');
  const lab = await b.addMember('lab', 'reader');
  subject = await subjectOf('MRN-900', { client: dpo.client });
  const terms = (readers: string[]) => ({ subject, readers, purpose: 'treatment', expiresAt: Date.now() + DAY });
  const one = await atA.client.upload(bytes(5000, 1), terms([insurer.id]));
  await insurer.client.fetch(one.record.id, { path: join(out, 'read') });
  await atA.client.revoke(one.record.id, insurer.id);
  const two = await atB.client.upload(bytes(6000, 2), terms([lab.id]));
  await lab.client.fetch(two.record.id, { path: join(out, 'read-2') });
  ids.push(one.record.id, two.record.id);
  await atA.client.upload(bytes(100, 3), { ...terms([]), subject: '9'.repeat(64) }); // another patient
}, 120_000);
afterAll(async () => {
  await b?.stop();
  await a?.stop();
  await cluster?.stop();
});

describe('a subject access report', () => {
  it("lists the subject's records on every node with their trails and names, every receipt verified", async () => {
    const report = await dpo.client.subjectReport(subject);
    expect(report.missing).toEqual([]);
    expect(report.parts.map((p) => [p.node, p.records.map((r) => r.record.id)])).toEqual([
      [a.vault.nodeId, [ids[0]]],
      [b.vault.nodeId, [ids[1]]],
    ]);
    const [partA, partB] = report.parts;
    // (Each uploader is granted its own record too.)
    expect(partA?.records[0]?.events.map((r) => r.event.type)).toEqual([
      'record.created',
      'acl.granted',
      'acl.granted',
      'record.accessed',
      'acl.revoked',
    ]);
    expect(partB?.records[0]?.events.map((r) => r.event.type)).toEqual([
      'record.created',
      'acl.granted',
      'acl.granted',
      'record.accessed',
    ]);
    expect(Object.values(partA?.names ?? {}).sort()).toEqual(['insurer', 'st-mary']);
    expect(Object.values(partB?.names ?? {}).sort()).toEqual(['city-clinic', 'lab']);
    expect(JSON.stringify(report)).not.toContain('MRN-900');
    expect(verifySubjectReport(report, { trusted: [a.vault.nodeId, b.vault.nodeId] })).toEqual({
      records: 2,
      receipts: 9,
    });
    // A part claiming another node's receipts, or one receipt altered, does not verify.
    const swapped = structuredClone(report);
    (swapped.parts[0] as (typeof swapped.parts)[0]).node = b.vault.nodeId;
    expect(codeOf(() => verifySubjectReport(swapped))).toBe('RECEIPT_INVALID');
    const altered = structuredClone(report);
    const event = altered.parts[1]?.records[0]?.events[3]?.event as unknown as { reader: string };
    event.reader = 'f'.repeat(32);
    expect(codeOf(() => verifySubjectReport(altered))).toBe('RECEIPT_INVALID');
  });

  it('only a DPO asks; a report order not signed by a peer is refused', async () => {
    const uploader = await a.addMember('someone', 'uploader');
    await expect(uploader.client.subjectReport(subject)).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await expect(a.admin.client.subjectReport(subject)).rejects.toMatchObject({ code: 'FORBIDDEN' });
    const rogue = signReportOrder({ requestId: '1'.repeat(32), subject, dpo: dpo.id }, SigningKey.generate());
    const answer = await fetch(`${b.url}/v1/subject-reports/part`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ order: rogue }),
    });
    expect(answer.status).toBe(403);
    expect(JSON.stringify(await answer.json())).not.toContain(ids[1] as string);
  });

  it('the CLI writes JSON and printable HTML that verify offline; a tampered page does not', async () => {
    const json = join(out, 'report.json');
    const html = join(out, 'report.html');
    const run = (...args: string[]) => runCli(args);
    const made = await run(
      'subject',
      'report',
      '--subject',
      'MRN-900',
      '--node',
      a.url,
      '--key',
      dpo.keyFile,
      '-o',
      json,
      '--html',
      html,
    );
    expect(made.code, made.stderr).toBe(0);
    expect(made.stdout).toMatch(/record\.accessed +lab/);
    const page = readFileSync(html, 'utf8');
    expect(page).toContain('<td>st-mary</td>');
    expect(page).not.toMatch(/https?:\/\/(?!127\.0\.0\.1)/); // nothing fetched from elsewhere
    for (const file of [json, html]) {
      const checked = await run('verify', file, '--trust', a.vault.nodeId, '--trust', b.vault.nodeId);
      expect(checked.code, checked.stderr).toBe(0);
      expect(checked.stdout).toMatch(/^subject report OK: 2 record\(s\) on 2 node\(s\), 9 receipt\(s\) verified/);
    }
    const tampered = join(out, 'tampered.html');
    writeFileSync(tampered, page.replace('"acl.revoked"', '"acl.granted"'));
    expect((await run('verify', tampered)).code).not.toBe(0);
  });

  it('names a node that did not answer as missing, never leaves it out silently', async () => {
    await b.stop();
    const report = await dpo.client.subjectReport(subject);
    expect(report.missing).toEqual([b.vault.nodeId]);
    expect(report.parts.map((p) => p.node)).toEqual([a.vault.nodeId]);
  });
});
