/**
 * Searching records (GET /v1/records, VaultClient.records, `medvault
 * records`): every filter for every role, each role seeing only what it may
 * (an uploader its own records, a reader those granted to it now, a DPO
 * all, never content, an admin nothing), and pagination by cursor.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RecordFilters, RecordSummary } from '../../services/sdk/client.ts';
import { bytes, runCli } from '../helpers.ts';
import { DAY, startNode, type TestMember, type TestNode } from './vault-fixture.ts';

let node: TestNode;
let u1: TestMember;
let u2: TestMember;
let r1: TestMember;
let r2: TestMember;
let dpo: TestMember;
const S1 = '1'.repeat(64);
const S2 = '2'.repeat(64);
const S3 = '3'.repeat(64);
/** The record ids by name, in the order they were made. */
const ids: Record<string, string> = {};
let middle = 0;

const upload = async (name: string, by: TestMember, subject: string, readers: TestMember[], purpose = 'treatment') => {
  const { record } = await by.client.upload(bytes(1000, name.length), {
    subject,
    readers: readers.map((r) => r.id),
    purpose,
    expiresAt: Date.now() + DAY,
    includeSelf: false,
  });
  ids[name] = record.id;
  await new Promise((r) => setTimeout(r, 3)); // distinct creation times
};

beforeAll(async () => {
  node = await startNode();
  u1 = await node.addMember('u1', 'uploader');
  u2 = await node.addMember('u2', 'uploader');
  r1 = await node.addMember('r1', 'reader');
  r2 = await node.addMember('r2', 'reader');
  dpo = await node.addMember('dpo', 'dpo');
  await upload('one', u1, S1, [r1]);
  await upload('two', u1, S1, [r1, r2], 'claims.review');
  await upload('three', u1, S2, [r2]);
  middle = Date.now();
  await upload('erased', u1, S2, [r1]);
  await upload('revoked', u1, S2, [r1]);
  await upload('seven', u2, S1, [r1]);
  await upload('doomed', u2, S3, [r2]);
  await u1.client.revoke(ids.revoked as string, r1.id);
  await dpo.client.erase({ recordId: ids.erased as string });
  await dpo.client.scheduleErasure({ subject: S3 }, 3600); // pending for an hour
});
afterAll(() => node?.stop());

const names = (records: RecordSummary[]) => records.map((r) => Object.entries(ids).find(([, id]) => id === r.id)?.[0]);
const search = async (member: TestMember, filters: RecordFilters = {}) =>
  names((await member.client.records(filters)).records);

describe('record search', () => {
  it('each role sees only what it may: an uploader its own, a reader those granted to it now, a DPO all', async () => {
    expect(await search(u1)).toEqual(['revoked', 'erased', 'three', 'two', 'one']);
    expect(await search(u2)).toEqual(['doomed', 'seven']);
    expect(await search(r1)).toEqual(['seven', 'two', 'one']); // not revoked nor erased
    expect(await search(r2)).toEqual(['doomed', 'three', 'two']);
    expect(await search(dpo)).toEqual(['doomed', 'seven', 'revoked', 'erased', 'three', 'two', 'one']);
    await expect(node.admin.client.records()).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await expect(u1.client.records({ uploader: u2.id })).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await expect(r1.client.records({ reader: r2.id })).rejects.toMatchObject({ code: 'FORBIDDEN' });
  });

  it('every filter narrows, for every role that may use it', async () => {
    expect(await search(dpo, { subject: S1 })).toEqual(['seven', 'two', 'one']);
    expect(await search(u1, { subject: S1 })).toEqual(['two', 'one']);
    expect(await search(r1, { subject: S1 })).toEqual(['seven', 'two', 'one']);
    expect(await search(dpo, { uploader: u2.id })).toEqual(['doomed', 'seven']);
    expect(await search(u1, { uploader: u1.id })).toEqual(['revoked', 'erased', 'three', 'two', 'one']);
    // A DPO's reader filter covers the grants a reader had (revoked ones too; an erasure deletes
    // the erased record's grants); a reader's own search, its live ones.
    expect(await search(dpo, { reader: r1.id })).toEqual(['seven', 'revoked', 'two', 'one']);
    expect(await search(r1, { reader: r1.id })).toEqual(['seven', 'two', 'one']);
    expect(await search(dpo, { purpose: 'claims.review' })).toEqual(['two']);
    expect(await search(r2, { purpose: 'treatment' })).toEqual(['doomed', 'three']);
    expect(await search(dpo, { since: middle })).toEqual(['doomed', 'seven', 'revoked', 'erased']);
    expect(await search(dpo, { until: middle })).toEqual(['three', 'two', 'one']);
    expect(await search(u1, { since: middle, until: Date.now() + 1 })).toEqual(['revoked', 'erased']);
    expect(await search(dpo, { state: 'erased' })).toEqual(['erased']);
    expect(await search(dpo, { state: 'pending-erasure' })).toEqual(['doomed']);
    expect(await search(r2, { state: 'pending-erasure' })).toEqual(['doomed']);
    expect(await search(dpo, { state: 'active', subject: S2 })).toEqual(['revoked', 'three']);
  });

  it('a DPO and an uploader see live grants, a reader does not; nobody gets content', async () => {
    const [forDpo] = (await dpo.client.records({ subject: S1, limit: 1 })).records;
    expect(forDpo?.grants).toEqual([expect.objectContaining({ reader: r1.id, purpose: 'treatment' })]);
    const [forReader] = (await r1.client.records({ subject: S1, limit: 1 })).records;
    expect(forReader?.grants).toBeUndefined();
    for (const r of [forDpo, forReader]) {
      expect(Object.keys(r ?? {}).sort()).toEqual(
        [
          'ciphertextHash',
          'createdAt',
          'erasedAt',
          'id',
          'size',
          'state',
          'subject',
          'uploader',
          ...(r?.grants ? ['grants'] : []),
        ].sort(),
      );
    }
  });

  it('pages by cursor: every record once, in order; a tampered cursor or limit is refused', async () => {
    const all = await search(dpo);
    const seen: string[] = [];
    let cursor: string | undefined;
    let pages = 0;
    do {
      const page = await dpo.client.records({ limit: 2, ...(cursor ? { cursor } : {}) });
      seen.push(...(names(page.records) as string[]));
      cursor = page.next ?? undefined;
      pages++;
    } while (cursor);
    expect(seen).toEqual(all);
    expect(pages).toBe(4);
    const collected: RecordSummary[] = [];
    for await (const r of dpo.client.allRecords({ limit: 3 })) collected.push(r);
    expect(names(collected)).toEqual(all);
    const { next } = await dpo.client.records({ limit: 2 });
    for (const bad of [`${next}x`, Buffer.from('12.nothex').toString('base64url'), 'Zm9v']) {
      await expect(dpo.client.records({ cursor: bad })).rejects.toMatchObject({ code: 'REQUEST_INVALID' });
    }
    for (const limit of [0, 501]) {
      await expect(dpo.client.records({ limit })).rejects.toMatchObject({ code: 'REQUEST_INVALID' });
    }
    await expect(dpo.client.records({ subject: 'MRN-555' })).rejects.toMatchObject({ code: 'REQUEST_INVALID' });
  });

  it('medvault records: names resolved, the subject pseudonymised on this side', async () => {
    // In another process, not blocking this one's event loop: the node serves from here.
    const run = (...args: string[]) => runCli(['records', '--node', node.url, '--key', dpo.keyFile, ...args]);
    const listed = await run('--uploader', 'u2', '--json');
    expect(listed.code, listed.stderr).toBe(0);
    expect(names(JSON.parse(listed.stdout))).toEqual(['doomed', 'seven']);
    const text = await run('--reader', 'r2', '--state', 'active', '--all', '--limit', '1');
    expect(text.stdout).toMatch(/^3 records\n/); // doomed, three, two: every page
    expect(text.stdout).toContain('  u2  ');
    const byPatient = await run('--subject', 'MRN-0000001', '--json');
    expect(byPatient.code, byPatient.stderr).toBe(0);
    expect(JSON.parse(byPatient.stdout)).toEqual([]); // pseudonymised with the subject key: no such subject here
  });
});
