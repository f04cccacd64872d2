/**
 * Break-glass as hospitals run it: a capability an admin gives to named
 * clinical members (never to admins or DPOs, never implied), limited per
 * member per day, each use anchored, pushed to the DPO at once (webhook and
 * metric, without the reason) and closed by a review that is anchored too.
 * And removal that is clean: a removed member's stanzas leave every header
 * and never block the others' grants or break-glass.
 */
import { truncateSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openHeader, splitAgeFile } from '../../crypto/age.ts';
import { bytes, codeOf, filesUnder, tempDir } from '../helpers.ts';
import { DAY, served, startNode, type TestMember, type TestNode, treatment } from './vault-fixture.ts';

const REASON = 'patient unconscious in the ER, allergies unknown';
const out = tempDir();
let node: TestNode;
let webhook: Server;
const alerts: Array<Record<string, unknown>> = [];
let hospital: TestMember;
let clinician: TestMember;
let insurer: TestMember;
let dpo: TestMember;
let record: string;

const upload = (readers: string[]) => hospital.client.upload(bytes(30_000, 5), treatment(readers));
const breakGlass = (who: TestMember, id = record) =>
  who.client.emergency(id, REASON, { path: join(out, `${who.name}-${Math.random()}.bin`) });
const code = (p: Promise<unknown>) =>
  p.then(
    () => 'ok',
    (err: { code?: string }) => err.code ?? String(err),
  );
const metric = async (name: string) => {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return Number(line?.split(' ')[1]);
};
const waitFor = async (check: () => boolean, ms = 5_000) => {
  const until = Date.now() + ms;
  while (!check() && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  return check();
};

beforeAll(async () => {
  webhook = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => {
      body += c.toString('utf8');
    });
    req.on('end', () => {
      alerts.push(JSON.parse(body) as Record<string, unknown>);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => webhook.listen(0, '127.0.0.1', resolve));
  const address = webhook.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  node = await startNode({
    overrides: { breakGlass: { perDay: 2, webhook: `http://127.0.0.1:${port}/alerts` } },
  });
  hospital = await node.addMember('hospital', 'uploader');
  clinician = await node.addMember('er-clinician', 'reader');
  insurer = await node.addMember('insurer', 'reader');
  dpo = await node.addMember('dpo', 'dpo');
  record = (await upload([insurer.id])).record.id;
});
afterAll(async () => {
  await node?.stop();
  await new Promise((r) => webhook?.close(r));
});

describe('break-glass is a capability an admin gives', () => {
  it('without it every role is refused and nothing is anchored; the granted insurer too', async () => {
    const head = await node.vault.ledger.head();
    for (const who of [clinician, insurer, hospital, dpo, node.admin])
      expect(await code(breakGlass(who))).toBe('FORBIDDEN');
    expect(await node.vault.ledger.head()).toEqual(head);
    expect(await dpo.client.reviews()).toEqual([]);
  });

  it('may not be given to an admin or a DPO, nor by anyone but an admin', async () => {
    expect(await code(node.admin.client.setEmergencyAccess(node.admin.id, true))).toBe('REQUEST_INVALID');
    expect(await code(node.admin.client.setEmergencyAccess(dpo.id, true))).toBe('REQUEST_INVALID');
    expect(await code(dpo.client.setEmergencyAccess(clinician.id, true))).toBe('FORBIDDEN');
    expect(await code(hospital.client.setEmergencyAccess(hospital.id, true))).toBe('FORBIDDEN');
    expect((await node.admin.client.members()).filter((m) => m.emergencyAccess)).toEqual([]);
  });

  it('given, it opens a record the member holds no grant on; anchored, queued, alerted at once without the reason', async () => {
    const before = await metric('medvault_break_glass_total');
    const given = await node.admin.client.setEmergencyAccess(clinician.id, true);
    expect(given.receipt?.event).toMatchObject({
      type: 'member.capability',
      member: clinician.id,
      capability: 'emergency',
      granted: true,
      by: node.admin.id,
    });
    expect((await node.admin.client.setEmergencyAccess(clinician.id, true)).receipt).toBeUndefined(); // no change
    const opened = await breakGlass(clinician);
    expect(opened.access.event).toMatchObject({ type: 'access.emergency', reader: clinician.id, recordId: record });
    expect((await dpo.client.reviews()).map((r) => r.id)).toEqual([opened.reviewId]);
    expect(await waitFor(() => alerts.length === 1)).toBe(true);
    expect(alerts[0]).toMatchObject({
      type: 'medvault.break-glass',
      node: node.vault.nodeId,
      reviewId: opened.reviewId,
      recordId: record,
      reader: clinician.id,
    });
    expect(JSON.stringify(alerts[0])).not.toContain('unconscious');
    expect(await metric('medvault_break_glass_total')).toBe(before + 1);
    expect(await metric('medvault_reviews_open')).toBe(1);
  });

  it('is limited per member per day: past the limit it is refused, and nothing is anchored or queued', async () => {
    await breakGlass(clinician); // the second of two
    const head = await node.vault.ledger.head();
    const refused = await breakGlass(clinician).catch((e) => e);
    expect(refused).toMatchObject({ code: 'EMERGENCY_LIMIT', info: { status: 429 } });
    expect(await node.vault.ledger.head()).toEqual(head);
    expect(await dpo.client.reviews()).toHaveLength(2);
  });

  it('withdrawn, it is refused again; the withdrawal is anchored', async () => {
    const other = await node.addMember('nurse', 'uploader');
    await node.admin.client.setEmergencyAccess(other.id, true);
    const withdrawn = await node.admin.client.setEmergencyAccess(other.id, false);
    expect(withdrawn.receipt?.event).toMatchObject({ type: 'member.capability', member: other.id, granted: false });
    expect(await code(breakGlass(other))).toBe('FORBIDDEN');
  });

  it("closing a review is anchored on the record's trail, with the outcome and no text; once only", async () => {
    const [first] = await dpo.client.reviews();
    const { receipt } = await dpo.client.closeReview(first?.id as string, 'justified');
    expect(receipt.event).toEqual({
      type: 'review.closed',
      at: receipt.event.at,
      recordId: record,
      reviewId: first?.id,
      dpo: dpo.id,
      outcome: 'justified',
    });
    expect((await dpo.client.audit(record)).map((r) => r.event.type)).toContain('review.closed');
    expect(await code(dpo.client.closeReview(first?.id as string, 'unjustified'))).toBe('REQUEST_INVALID');
    expect(await code(hospital.client.closeReview(first?.id as string, 'justified'))).toBe('FORBIDDEN');
    expect(await dpo.client.reviews()).toHaveLength(1);
    expect(await metric('medvault_reviews_open')).toBe(1);
  });
});

describe('break-glass on a blob the store lost', () => {
  it('is refused STORE_INTEGRITY before anything is anchored, queued or alerted', async () => {
    const medic = await node.addMember('medic', 'reader');
    await node.admin.client.setEmergencyAccess(medic.id, true);
    const { record: lost } = await upload([insurer.id]);
    const blob = filesUnder(join(node.data, 'blobs')).find((p) => p.endsWith(lost.ciphertextHash)) as string;
    truncateSync(blob, 1000);
    const head = await node.vault.ledger.head();
    const [reviews, alerted] = [(await dpo.client.reviews()).length, alerts.length];
    expect(await code(breakGlass(medic, lost.id))).toBe('STORE_INTEGRITY');
    expect(await node.vault.ledger.head()).toEqual(head);
    expect(await dpo.client.reviews()).toHaveLength(reviews);
    await new Promise((r) => setTimeout(r, 200));
    expect(alerts).toHaveLength(alerted);
  });
});

describe('removing a member is clean', () => {
  it("drops its stanza from every header it had, anchored as revocations, and blocks no one's grant or break-glass", async () => {
    const leaver = await node.addMember('leaver', 'reader');
    const stayer = await node.addMember('stayer', 'reader');
    const records = [(await upload([leaver.id, stayer.id])).record.id, (await upload([leaver.id])).record.id];
    // Before: the served header opens with the leaver's key (the test's own check works).
    const headerOf = async (id: string) => splitAgeFile(await served(hospital, id)).header;
    for (const id of records) {
      const header = await headerOf(id);
      expect(codeOf(() => openHeader(header, [leaver.keys.identity]))).toBe('no error');
    }
    await node.admin.client.removeMember(leaver.id);
    for (const id of records) {
      const trail = (await hospital.client.audit(id)).map((r) => r.event);
      expect(trail.at(-1)).toMatchObject({ type: 'acl.revoked', reader: leaver.id, revoker: node.admin.id });
      // The stored (and served) header no longer has a stanza the leaver's key opens.
      const header = await headerOf(id);
      expect(codeOf(() => openHeader(header, [leaver.keys.identity]))).toBe('AGE_NO_IDENTITY');
      expect(codeOf(() => openHeader(header, [hospital.keys.identity]))).toBe('no error');
      // Others' grants and break-glass go on.
      await hospital.client.grant(id, insurer.id, { purpose: 'claims.review', expiresAt: Date.now() + DAY });
    }
    const nurse = await node.addMember('nurse-2', 'reader');
    await node.admin.client.setEmergencyAccess(nurse.id, true);
    expect((await breakGlass(nurse, records[1])).access.event.type).toBe('access.emergency');
  });
});
