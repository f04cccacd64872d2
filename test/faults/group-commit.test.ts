/**
 * Group commit (issue 19): concurrent uploads share the metadata store's commits (and the
 * ledger's appends), and none is acknowledged early or half kept.
 *
 * - A real `medvault serve` runs under strace while 24 uploads arrive at once. For each
 *   reply (the socket write carrying its record id and a 201): its blob was synced, renamed
 *   into place and its directory synced; the metadata WAL holds its row as active, synced;
 *   the ledger holds its record.created, synced — each before the reply was written. And the
 *   uploads did share commits: fewer WAL syncs than uploads.
 * - strace attached to a running node makes every sync of the metadata WAL fail (EIO, by
 *   strace's fault injection, only for that file): every upload of the batch fails IO_ERROR,
 *   none is anchored, no blob or row is left; once the disk behaves, uploads succeed again.
 *   The same with every fsync failing (the blob store's: each blob and its directory).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isMedvaultError } from '../../errors.ts';
import { tempDir } from '../helpers.ts';
import { ServedNode } from './served-node.ts';
import { type Call, isSync, isWrite, readCalls, straceFlags } from './strace.ts';

const root = tempDir('medvault-group-commit-');
let node: ServedNode;

beforeAll(async () => {
  node = await ServedNode.create(join(root, 'node'));
}, 60_000);
afterAll(async () => {
  await node.stop();
});

/** The rows of the node's records table, read beside it. */
function rowCount(): number {
  const db = new DatabaseSync(join(node.data, 'metadata.db'), { readOnly: true });
  try {
    return Number((db.prepare('SELECT COUNT(*) AS n FROM records').get() as { n: number }).n);
  } finally {
    db.close();
  }
}

/** Whether `pid` has a tracer attached (strace attaches asynchronously). */
function traced(pid: number): boolean {
  return !/^TracerPid:\s+0$/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
}

async function until(what: string, done: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('group commit: replies only once blob, row and anchor are synced', () => {
  const uploads = 24;
  let calls: Call[];
  let records: Array<{ id: string; ref: string }>;

  beforeAll(async () => {
    await node.stop();
    const log = join(root, 'serve.strace');
    // Strings up to 64 KiB: a ledger append or a WAL page is seen whole, with the ids in it.
    await node.start({ wrapper: ['strace', ...straceFlags(log, 65_536)] });
    const done = await Promise.all(Array.from({ length: uploads }, (_, i) => node.upload(100 + i)));
    records = done.map((d) => ({ id: d.record.id, ref: d.record.ciphertextHash }));
    await node.stop('SIGTERM'); // strace ends with its tracee and flushes its log
    calls = readCalls(log);
    await node.start();
  }, 120_000);

  /** The index of the reply carrying `id`: its status line and body in one write. */
  const replyOf = (id: string) => {
    const i = calls.findIndex((c) => isWrite(c) && /^(TCP|socket):/.test(c.path) && c.text.includes(id));
    expect(i, `the reply for ${id}`).toBeGreaterThan(0);
    expect(calls[i]?.text).toMatch(/HTTP\/1\.1 201/);
    return i;
  };
  /** After the last call before `end` that `matches`, a sync of the same file before `end`. */
  const syncedAfterLast = (matches: (c: Call) => boolean, end: number, what: string) => {
    const last = calls.slice(0, end).findLastIndex(matches);
    expect(last, `${what} written before the reply`).toBeGreaterThanOrEqual(0);
    const file = calls[last]?.path;
    const sync = calls.slice(last + 1, end).find((c) => isSync(c) && c.path === file);
    expect(sync, `${what} synced after its write and before the reply`).toBeDefined();
  };

  it('each reply follows its blob: synced, renamed into place, directory synced', () => {
    for (const { id, ref } of records) {
      const reply = replyOf(id);
      const rename = calls.slice(0, reply).findIndex((c) => c.call.startsWith('rename') && c.text.includes(`${ref}"`));
      expect(rename, `the blob ${ref} renamed into place before the reply`).toBeGreaterThanOrEqual(0);
      const temp = calls[rename]?.path as string;
      syncedAfterLast((c) => isWrite(c) && c.path === temp, rename, `the blob's temporary ${temp}`);
      const directory = join(node.data, 'blobs', 'blobs', ref.slice(0, 2), ref.slice(2, 4));
      const dirSync = calls.slice(rename + 1, reply).find((c) => isSync(c) && c.path === directory);
      expect(dirSync, `${directory} synced after the rename and before the reply`).toBeDefined();
    }
  });

  it('each reply follows its row, active, in a synced WAL commit', () => {
    for (const { id } of records) {
      // The row's columns in order: id, subject, uploader, state; a pending row says 'pending'.
      const active = new RegExp(`${id}.{0,1500}?active`);
      syncedAfterLast(
        (c) => isWrite(c) && c.path.endsWith('metadata.db-wal') && active.test(c.text),
        replyOf(id),
        `the active row of ${id}`,
      );
    }
  });

  it('each reply follows its record.created, in a synced ledger append', () => {
    for (const { id } of records) {
      syncedAfterLast(
        (c) => isWrite(c) && c.path.endsWith('ledger.mvl') && c.text.includes(id),
        replyOf(id),
        `the ledger append holding ${id}`,
      );
    }
  });

  it('the uploads shared commits: fewer metadata syncs than two per upload', () => {
    const first = Math.min(...records.map((r) => replyOf(r.id)));
    const last = Math.max(...records.map((r) => replyOf(r.id)));
    const start = calls.findIndex((c) => c.call.startsWith('rename') && records.some((r) => c.text.includes(r.ref)));
    const walSyncs = calls.slice(start, last + 1).filter((c) => isSync(c) && c.path.endsWith('metadata.db-wal'));
    expect(first).toBeGreaterThan(start);
    // Without grouping each upload commits twice (its pending row, then its activation).
    expect(walSyncs.length).toBeLessThan(2 * uploads);
  });
});

/**
 * Attaches strace to the running node, failing every `calls` syscall with EIO (only on `paths`,
 * when given), sends a batch of 12 uploads and expects each to fail IO_ERROR with a message
 * matching `blame`; then detaches, and checks that none was anchored and nothing was kept
 * (blob, temporary, row), and that the node uploads again.
 */
async function batchUnderEio(calls: string, paths: string[], blame: RegExp, seed: number): Promise<void> {
  const before = await node.leftovers();
  const listed = await node.recordIds();
  const rowsBefore = rowCount();
  const pid = node.pid;
  const strace: ChildProcess = spawn(
    'strace',
    [
      '-f',
      '-qq',
      '-p',
      String(pid),
      ...paths.flatMap((p) => ['-P', p]),
      '-e',
      `trace=${calls}`,
      '-e',
      `inject=${calls}:error=EIO`,
    ],
    { stdio: 'ignore' },
  );
  try {
    await until('strace is attached', () => traced(pid));
    const outcomes = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => node.upload(seed + i)));
    for (const o of outcomes) {
      expect(o.status).toBe('rejected');
      const err = (o as PromiseRejectedResult).reason;
      expect(isMedvaultError(err, 'IO_ERROR'), String(err)).toBe(true);
      expect(String(err.message)).toMatch(blame);
    }
  } finally {
    strace.kill('SIGINT'); // strace detaches; the node runs on
    await new Promise((r) => strace.once('exit', r));
  }
  await until('strace has detached', () => !traced(pid));
  const after = await node.leftovers();
  expect(after.created).toEqual(before.created); // none anchored
  expect(after.blobs).toBe(before.blobs); // no blob left
  expect(after.temporaries).toBe(0);
  expect(await node.recordIds()).toEqual(listed);
  expect(rowCount()).toBe(rowsBefore); // no row, pending or not
  const again = await node.upload(seed + 100);
  expect((await node.leftovers()).created.get(again.record.id)).toBe(1);
}

describe('group commit: a failing disk', () => {
  it('a failing WAL sync fails every upload of its batch IO_ERROR, anchors none and keeps nothing; the node then recovers', async () => {
    await batchUnderEio('fsync,fdatasync', [join(node.data, 'metadata.db-wal')], /metadata database/, 500);
  }, 60_000);

  it('a failing blob sync (fsync: the blob and its directory) does the same, IO_ERROR naming the blob store', async () => {
    await batchUnderEio('fsync', [], /blob store/, 700);
  }, 60_000);
});
