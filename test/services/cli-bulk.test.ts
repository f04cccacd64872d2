/**
 * Bulk ingest: `medvault upload DIR --recursive`, each file's subject from its path or a
 * manifest, several at a time; a failure is listed and does not stop the rest; a second run
 * makes nothing twice (each file's idempotency key); the SDK's uploadMany underneath.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pseudonym } from '../../services/protocol/pseudonym.ts';
import { bytes, runCli, tempDir } from '../helpers.ts';
import { startNode, type TestMember, type TestNode, treatment } from './vault-fixture.ts';

const dir = tempDir('medvault-bulk-');
const archive = join(dir, 'archive');
let node: TestNode;
let hospital: TestMember;
let clinic: TestMember;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  node = await startNode();
  hospital = await node.addMember('hospital', 'uploader');
  clinic = await node.addMember('clinic', 'reader');
  env = { ...process.env, MEDVAULT_NODE: node.url, MEDVAULT_LOG_LEVEL: 'warn' };
  for (let p = 1; p <= 6; p++) {
    mkdirSync(join(archive, `MRN-${p}`, 'labs'), { recursive: true });
    for (let f = 0; f < 5; f++)
      writeFileSync(join(archive, `MRN-${p}`, 'labs', `result-${f}.pdf`), bytes(2_000 + f, p * 10 + f));
  }
  mkdirSync(join(archive, 'unsorted'));
  writeFileSync(join(archive, 'unsorted', 'letter.txt'), 'no patient in this path');
});
afterAll(() => node?.stop());

/** Records on the ledger made by record.created. */
async function created(): Promise<number> {
  let n = 0;
  for await (const block of node.vault.ledger.blocks(0))
    n += block.events.filter((e) => e.type === 'record.created').length;
  return n;
}

/** Upload requests the node has answered (its own /metrics, by route). */
async function uploadRequests(): Promise<number> {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  return text
    .split('\n')
    .filter((l) => l.startsWith('medvault_http_request_seconds_count{') && l.includes('route="/v1/records"'))
    .filter((l) => l.includes('method="POST"'))
    .reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
}

const bulk = (...extra: string[]) =>
  runCli(['upload', archive, '--recursive', '--reader', 'clinic', '--key', hospital.keyFile, '--json', ...extra], env);

describe('medvault upload DIR --recursive', () => {
  it('uploads every file for the subject its path names; a file without one is listed as failed', async () => {
    const run = await bulk('--subject-from', '^(MRN-[0-9]+)/', '--concurrency', '4');
    expect(run.code).toBe(1); // one failure
    const summary = JSON.parse(run.stdout);
    expect(summary).toMatchObject({ uploaded: 30, repeated: 0, failed: 1 });
    expect(summary.results.find((r: { error?: unknown }) => r.error)).toMatchObject({
      name: 'unsorted/letter.txt',
      error: { code: 'INVALID_ARGUMENT' },
    });
    expect(await created()).toBe(30);
    // Each under its patient's consortium pseudonym, readable by the reader named.
    const subject = pseudonym('MRN-3', await hospital.client.subjectKey());
    const mine = await clinic.client.records({ subject });
    expect(mine.records).toHaveLength(5);
  });

  it('run again, it makes nothing twice, and sends nothing: every file is already uploaded', async () => {
    const before = await created();
    const sent = await uploadRequests();
    expect(sent).toBeGreaterThanOrEqual(30);
    const run = await bulk('--subject-from', '^(MRN-[0-9]+)/');
    expect(JSON.parse(run.stdout)).toMatchObject({ uploaded: 0, repeated: 30, failed: 1 });
    expect(await created()).toBe(before);
    // The node was asked which keys it holds: no file was encrypted or sent again.
    expect(await uploadRequests()).toBe(sent);
  });

  it('takes subjects from a manifest instead', async () => {
    const manifest = join(dir, 'manifest.csv');
    writeFileSync(manifest, 'path,subject\nunsorted/letter.txt,MRN-99\n');
    const run = await bulk('--manifest', manifest);
    const summary = JSON.parse(run.stdout);
    // Only the letter is in the manifest: it is uploaded, every other file has no subject.
    expect(summary).toMatchObject({ uploaded: 1, failed: 30 });
    const subject = pseudonym('MRN-99', await hospital.client.subjectKey());
    expect((await hospital.client.records({ subject })).records).toHaveLength(1);
  });
});

describe('the SDK: knownUploads', () => {
  it("answers for the member's own completed uploads only; a reader may not ask", async () => {
    const other = await node.addMember('other-uploader', 'uploader');
    await hospital.client.upload(bytes(500, 77), { ...treatment([clinic.id]), idempotencyKey: 'scope-check-1' });
    const mine = await hospital.client.knownUploads(['scope-check-1', 'never-used-1']);
    expect([...mine.keys()]).toEqual(['scope-check-1']);
    expect((await other.client.knownUploads(['scope-check-1'])).size).toBe(0); // another member's key
    await expect(clinic.client.knownUploads(['scope-check-1'])).rejects.toMatchObject({ code: 'FORBIDDEN' });
  });
});

describe('the SDK: uploadMany', () => {
  it('one document refused does not stop the others; results come back in order', async () => {
    const subject = 'd'.repeat(64);
    const terms = (readers: string[]) => ({
      subject,
      readers,
      purpose: 'treatment',
      expiresAt: Date.now() + 86_400_000,
    });
    const seen: string[] = [];
    const results = await hospital.client.uploadMany(
      [
        { name: 'a', source: bytes(1_000, 1), options: terms([clinic.id]) },
        { name: 'b', source: bytes(1_000, 2), options: terms(['f'.repeat(32)]) }, // no such member
        { name: 'c', source: bytes(1_000, 3), options: terms([]) },
      ],
      { concurrency: 2, onResult: (r) => seen.push(r.name) },
    );
    expect(results.map((r) => r.name)).toEqual(['a', 'b', 'c']);
    expect(results[1]?.error?.code).toBe('MEMBER_NOT_FOUND');
    expect(results.filter((r) => r.recordId)).toHaveLength(2);
    expect(seen.sort()).toEqual(['a', 'b', 'c']);
  });

  it("paces itself to the node's rate limit instead of failing", async () => {
    const limited = await startNode({ rateLimit: 4, rateWindowMs: 2_000 });
    try {
      const uploader = await limited.addMember('hospital', 'uploader');
      const subject = 'e'.repeat(64);
      const results = await uploader.client.uploadMany(
        Array.from({ length: 8 }, (_, i) => ({
          name: `doc-${i}`,
          source: bytes(500, 40 + i),
          options: {
            subject,
            readers: [],
            purpose: 'treatment',
            expiresAt: Date.now() + 86_400_000,
            idempotencyKey: `paced-doc-${i}`,
          },
        })),
        { concurrency: 4 },
      );
      expect(results.filter((r) => r.error)).toEqual([]);
      expect(results.filter((r) => r.recordId)).toHaveLength(8);
    } finally {
      await limited.stop();
    }
  });
});
