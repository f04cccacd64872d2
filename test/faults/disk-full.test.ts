/**
 * Full disks, on small tmpfs file systems the suite mounts (it runs as root
 * here, as CI does): the blob store's disk, then the whole data directory's.
 * Every refusal is STORAGE_FULL or LEDGER_FULL (507) naming what is full,
 * never INTERNAL; nothing half-written is left or anchored; readiness says
 * the disk is full; what needs no write goes on; and once space is freed the
 * node works again without a restart.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VaultClient } from '../../services/sdk/client.ts';
import { openNode } from '../../services/vault/node.ts';
import { bytes, filesUnder, tempDir } from '../helpers.ts';
import { DAY, restartNode, startNode, type TestMember, type TestNode, treatment } from '../services/vault-fixture.ts';

const root = tempDir('medvault-full-');
const mounts: string[] = [];

/** Mounts a tmpfs of `mib` MiB at a new directory; null (with the reason) where that is not allowed. */
function mountTmpfs(name: string, mib: number): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  const run = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${mib}m`, 'tmpfs', dir], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`cannot mount a tmpfs here (${run.stderr.trim()}): run the suite as root`);
  mounts.push(dir);
  return dir;
}

afterAll(() => {
  for (const dir of mounts.reverse()) execFileSync('umount', ['-l', dir]);
});

/** Fills the file system at `disk` to its last block; returns what frees it again. */
function fill(disk: string): () => void {
  const filler = join(disk, 'filler');
  const chunk = Buffer.alloc(1024 * 1024);
  try {
    for (let i = 0; ; i++) writeFileSync(filler, chunk, { flag: i === 0 ? 'w' : 'a' });
  } catch {}
  try {
    for (let i = 0; ; i++) writeFileSync(`${filler}-${i}`, Buffer.alloc(4096));
  } catch {}
  return () => {
    for (const f of readdirSync(disk).filter((n) => n.startsWith('filler'))) rmSync(join(disk, f));
  };
}

const document = (mib: number, seed: number) => bytes(mib * 1024 * 1024, seed);
const ready = async (node: TestNode) =>
  (await (await fetch(`${node.url}/readyz`)).json()) as { checks: Record<string, string> };

describe('the blob store on a full disk', () => {
  let node: TestNode;
  let hospital: TestMember;
  let reader: TestMember;
  let store: string;

  beforeAll(async () => {
    store = mountTmpfs('store', 80);
    node = await startNode({ overrides: { store: { kind: 'fs', root: store } } });
    hospital = await node.addMember('hospital', 'uploader');
    reader = await node.addMember('reader', 'reader');
  });
  afterAll(() => node?.stop());

  it('an upload larger than the space left is STORAGE_FULL: nothing stored, nothing anchored; reads go on', async () => {
    const upload = (mib: number, seed: number) => hospital.client.upload(document(mib, seed), treatment([reader.id]));
    const kept = await upload(20, 1);
    expect((await ready(node)).checks.disk).toBe('ok');
    const head = await node.vault.ledger.head();
    const err = await upload(70, 2).catch((e) => e);
    expect(err).toMatchObject({ code: 'STORAGE_FULL', info: { status: 507 } });
    expect(err.message).toContain(store);
    expect(await node.vault.ledger.head()).toEqual(head);
    expect(filesUnder(join(store, 'tmp'))).toEqual([]); // no partial blob
    expect(filesUnder(store)).toHaveLength(1);
    // A fetch needs no new blob: it goes on.
    const fetched = await reader.client.fetch(kept.record.id, { path: join(root, 'kept.bin') });
    expect(fetched.bytes).toBe(20 * 1024 * 1024);
    // Nearly full (a file beside the store takes the rest): readiness says so.
    const filler = join(store, 'filler');
    try {
      for (let i = 0; ; i++) writeFileSync(filler, Buffer.alloc(1024 * 1024), { flag: i === 0 ? 'w' : 'a' });
    } catch {}
    expect((await ready(node)).checks.disk).toBe('STORAGE_FULL');
    rmSync(filler);
    expect((await ready(node)).checks.disk).toBe('ok');
  });
});

describe('the whole data directory on a full disk', () => {
  let node: TestNode;
  let hospital: TestMember;
  let reader: TestMember;
  let disk: string;

  beforeAll(async () => {
    disk = mountTmpfs('data', 48);
    node = await startNode({
      overrides: { store: { kind: 'fs', root: join(disk, 'blobs') } },
      dataDir: join(disk, 'node'),
    });
    hospital = await node.addMember('hospital', 'uploader');
    reader = await node.addMember('reader', 'reader');
  });
  afterAll(() => node?.stop());

  it('uploads and fetches are refused with a full-disk code, never INTERNAL; freed, the node works again', async () => {
    const record = (await hospital.client.upload(bytes(1000, 3), treatment([reader.id]))).record.id;
    const free = fill(disk);
    const head = await node.vault.ledger.head();
    const codes = new Set<string>();
    let fetchesServed = 0;
    for (let i = 0; i < 3; i++) {
      const up = await hospital.client.upload(bytes(200_000, 10 + i), treatment([reader.id])).catch((e) => e);
      codes.add(up.code);
      const read = await reader.client.fetch(record, { path: join(root, `f${i}`) }).catch((e) => e);
      codes.add(read.code ?? 'ok');
      if (!read.code) fetchesServed++;
    }
    // Refused with a full-disk code, or (a fetch whose access could still be anchored) served.
    expect(
      [...codes].every((c) => ['STORAGE_FULL', 'LEDGER_FULL', 'ok'].includes(c)),
      [...codes].join(),
    ).toBe(true);
    expect([...codes].some((c) => c !== 'ok')).toBe(true);
    // Only accesses that were served were anchored: no upload, no refused access.
    const anchored: string[] = [];
    for await (const block of node.vault.ledger.blocks((head?.height ?? -1) + 1)) {
      anchored.push(...block.events.map((e) => e.type));
    }
    expect(anchored.filter((t) => t !== 'record.accessed')).toEqual([]);
    expect(anchored.length).toBeLessThanOrEqual(fetchesServed);
    expect((await ready(node)).checks.disk).toBe('STORAGE_FULL');
    // Space freed: the same node uploads and fetches again.
    free();
    const again = await hospital.client.upload(bytes(1000, 20), treatment([reader.id]));
    expect((await reader.client.fetch(again.record.id, { path: join(root, 'again') })).bytes).toBe(1000);
    expect((await ready(node)).checks.disk).toBe('ok');
  });
});

describe('a node started on a full data directory', () => {
  let node: TestNode;
  let disk: string;
  let overrides: { store: { kind: 'fs'; root: string } };

  beforeAll(async () => {
    disk = mountTmpfs('start', 48);
    overrides = { store: { kind: 'fs', root: join(disk, 'blobs') } };
    node = await startNode({ overrides, dataDir: join(disk, 'node') });
  });
  afterAll(() => node?.stop());

  it('starts on its reserve, read-only for new documents; reads, grants, revocations go on; freed, it takes documents again', async () => {
    const hospital = await node.addMember('hospital', 'uploader');
    const reader = await node.addMember('reader', 'reader');
    const late = await node.addMember('late', 'reader');
    const record = (await hospital.client.upload(bytes(1000, 30), treatment([reader.id]))).record.id;
    expect(existsSync(join(node.data, 'reserve.bin'))).toBe(true);
    await node.stop();
    const free = fill(disk);
    node = await restartNode(node, { overrides }); // without the reserve: SQLite cannot open
    const as = (m: TestMember) => new VaultClient(node.url, m.keys);
    expect((await ready(node)).checks.disk).toBe('STORAGE_FULL');
    const head = await node.vault.ledger.head();
    const refused = await as(hospital)
      .upload(bytes(1000, 31), treatment([reader.id]))
      .catch((e) => e);
    expect(refused).toMatchObject({ code: 'STORAGE_FULL', info: { status: 507 } });
    expect(refused.message).toContain(node.data);
    expect(await node.vault.ledger.head()).toEqual(head); // nothing anchored for it
    // What the reserve gave back serves everything but new documents.
    expect((await as(reader).fetch(record, { path: join(root, 'ro-fetch') })).bytes).toBe(1000);
    await as(hospital).grant(record, late.id, { purpose: 'treatment', expiresAt: Date.now() + DAY });
    await as(hospital).revoke(record, reader.id);
    expect((await as(hospital).audit(record)).map((r) => r.event.type)).toContain('acl.revoked');
    // Space freed: the reserve is made again and uploads resume, without a restart.
    free();
    const again = await as(hospital).upload(bytes(1000, 32), treatment([late.id]));
    expect((await as(late).fetch(again.record.id, { path: join(root, 'ro-again') })).bytes).toBe(1000);
    expect(existsSync(join(node.data, 'reserve.bin'))).toBe(true);
    expect((await ready(node)).checks.disk).toBe('ok');
  });

  it('with no reserve left to release it refuses to start, STORAGE_FULL naming the directory', async () => {
    await node.stop();
    rmSync(join(node.data, 'reserve.bin'));
    const free = fill(disk);
    const err = await openNode(node.data, overrides).catch((e) => e);
    free();
    expect(err).toMatchObject({ code: 'STORAGE_FULL' });
    expect(err.message).toContain(node.data);
    node = await restartNode({ ...node, stop: async () => {} }, { overrides });
  });
});
