/**
 * SIGKILL, the fault no code can catch: a real `medvault serve` process killed at each
 * step of an upload (by its crash points, services/vault/crash-points.ts, and from
 * outside while the body streams in), an uploading client killed mid-body, and the
 * node killed again and again under uploading clients that retry with their
 * idempotency keys. After each restart: every acknowledged upload is there and opens,
 * the ledger holds exactly one record.created per upload the node keeps (none for one
 * it dropped), no blob or temporary file is left that no record points at, and every
 * error a client saw is typed (never INTERNAL).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openLedger } from '../../anchor/open.ts';
import { isMedvaultError } from '../../errors.ts';
import {
  generateMemberKeys,
  type MemberCredentials,
  memberKeyFileText,
  memberPublic,
  parseMemberKeyFile,
} from '../../services/protocol/member-keys.ts';
import { VaultClient } from '../../services/sdk/client.ts';
import { initNode } from '../../services/vault/node.ts';
import { bytes, CLI, filesUnder, tempDir } from '../helpers.ts';
import { freePort } from '../servers/ports.ts';
import { DAY, SUBJECT } from '../services/vault-fixture.ts';

const root = tempDir('medvault-kill-');
const data = join(root, 'node');
let port: number;
let url: string;
let serve: ChildProcess | null = null;
let hospitalKeys: MemberCredentials;
let readerKeys: MemberCredentials;
let readerId: string;

/** Starts `medvault serve` on the data directory (crash points armed by `crashAt`); resolves once it listens. */
async function start(crashAt?: string): Promise<ChildProcess> {
  const env = { ...process.env, ...(crashAt ? { MEDVAULT_TEST_CRASH_AT: crashAt } : {}) };
  const child = spawn(process.execPath, [CLI, 'serve', '--data', data, '--port', String(port)], { env });
  let logs = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    logs += chunk.toString('utf8');
  });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8');
      if (out.includes('listening on')) resolve();
    });
    child.on('exit', (code, signal) => reject(new Error(`serve exited (${code ?? signal}): ${logs.slice(-2000)}`)));
  });
  serve = child;
  return child;
}

/** SIGKILLs the node (if it did not kill itself) and waits until it is gone. */
async function killed(child: ChildProcess): Promise<NodeJS.Signals | null> {
  if (child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
  }
  serve = null;
  return child.signalCode;
}

const upload = (client: VaultClient, seed: number, idempotencyKey: string, size = 4000) =>
  client.upload(bytes(size, seed), {
    subject: SUBJECT,
    readers: [readerId],
    purpose: 'treatment',
    expiresAt: Date.now() + DAY,
    idempotencyKey,
  });

/**
 * What the node keeps (read stopped or running: the read-only ledger open takes no lock): record.created per record on the ledger,
 * and the blob files and temporaries in its store.
 */
async function leftovers(): Promise<{ created: Map<string, number>; blobs: number; temporaries: number }> {
  const ledger = await openLedger(`file:${join(data, 'ledger.mvl')}`, { readOnly: true });
  const created = new Map<string, number>();
  for await (const block of ledger.blocks(0)) {
    for (const e of block.events) {
      if (e.type === 'record.created') created.set(e.recordId as string, (created.get(e.recordId as string) ?? 0) + 1);
    }
  }
  await ledger.close();
  return {
    created,
    blobs: filesUnder(join(data, 'blobs', 'blobs')).length,
    temporaries: filesUnder(join(data, 'blobs', 'tmp')).length,
  };
}

/** The ids of every record the hospital's node lists, page after page. */
async function recordIds(): Promise<Set<string>> {
  const ids = new Set<string>();
  for await (const r of new VaultClient(url, hospitalKeys).allRecords()) ids.add(r.id);
  return ids;
}

/** Every record the node serves opens for the reader, and matches the ledger and the store one to one. */
async function checkConsistent(expected: Set<string>): Promise<void> {
  const records = [...(await recordIds())];
  expect(new Set(records)).toEqual(expected);
  const reader = new VaultClient(url, readerKeys);
  for (const id of records) {
    expect((await reader.fetch(id, { path: join(root, `check-${id}`) })).bytes).toBeGreaterThan(0);
  }
  const left = await leftovers(); // beside the running node: a read-only ledger open takes no lock
  expect(new Set(left.created.keys())).toEqual(expected); // nothing anchored that the node dropped
  expect([...left.created.values()].every((n) => n === 1)).toBe(true);
  expect(left.blobs).toBe(expected.size); // no orphan blob
  expect(left.temporaries).toBe(0);
}

beforeAll(async () => {
  port = await freePort();
  url = `http://127.0.0.1:${port}`;
  const init = await initNode(data, { port });
  // The load below makes more than the default 600 signed requests a minute.
  const config = JSON.parse(readFileSync(join(data, 'medvault.json'), 'utf8'));
  writeFileSync(join(data, 'medvault.json'), JSON.stringify({ ...config, rateLimit: 100_000 }));
  const admin = new VaultClient(url, parseMemberKeyFile(readFileSync(init.adminKeyFile, 'utf8')));
  hospitalKeys = generateMemberKeys();
  readerKeys = generateMemberKeys();
  await start();
  await admin.addMember({ name: 'hospital', role: 'uploader', ...memberPublic(hospitalKeys) });
  readerId = (await admin.addMember({ name: 'reader', role: 'reader', ...memberPublic(readerKeys) })).member.id;
}, 60_000);
afterAll(async () => {
  if (serve) await killed(serve);
});

describe('the node SIGKILLed at each step of an upload', () => {
  const kept = new Set<string>();
  // Killed before its anchor: the upload is dropped and a retry makes it; after: a retry returns it.
  for (const [point, anchored] of [
    ['upload.stored', false],
    ['upload.pending', false],
    ['upload.anchored', true],
    ['upload.active', true],
  ] as const) {
    it(`at ${point}: the client gets NODE_UNAVAILABLE; after a restart a retry with its key ${anchored ? 'returns the record' : 'uploads it once'}`, async () => {
      await killed(serve as ChildProcess);
      const child = await start(point);
      const key = `kill-${point.replace('.', '-')}`;
      const hospital = new VaultClient(url, hospitalKeys);
      const err = await upload(hospital, kept.size + 1, key).catch((e) => e);
      expect(isMedvaultError(err, 'NODE_UNAVAILABLE'), String(err)).toBe(true);
      expect(await killed(child)).toBe('SIGKILL'); // it died at that point, by its own hand
      const during = await leftovers();
      expect(during.created.size).toBe(kept.size + (anchored ? 1 : 0));
      await start();
      const again = await upload(hospital, kept.size + 1, key);
      expect(again.repeated === true).toBe(anchored);
      kept.add(again.record.id);
      await checkConsistent(kept);
    });
  }

  it('while the body streams in: nothing is kept, anchored or left in the store', async () => {
    const hospital = new VaultClient(url, hospitalKeys);
    const before = await leftovers();
    const child = serve as ChildProcess;
    const big = join(root, 'big.bin');
    writeFileSync(big, bytes(64 * 1024 * 1024, 9));
    const pending = hospital
      .upload(
        { path: big },
        { subject: SUBJECT, readers: [readerId], purpose: 'treatment', expiresAt: Date.now() + DAY },
      )
      .catch((e) => e);
    // Killed once part of the body is in the store's temporary file.
    const deadline = Date.now() + 20_000;
    while (filesUnder(join(data, 'blobs', 'tmp')).length === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(filesUnder(join(data, 'blobs', 'tmp')).length).toBe(1);
    await killed(child);
    expect((await pending).code).toBe('NODE_UNAVAILABLE');
    expect((await leftovers()).created).toEqual(before.created);
    await start(); // start-up clears the cut-off temporary
    await checkConsistent(new Set(before.created.keys()));
  });
});

describe('an uploading client SIGKILLed mid-body', () => {
  it('leaves nothing: no record, no anchor, no temporary', async () => {
    const keyFile = join(root, 'hospital.key');
    writeFileSync(keyFile, memberKeyFileText('hospital', hospitalKeys), { mode: 0o600 });
    const big = join(root, 'big-client.bin');
    writeFileSync(big, bytes(64 * 1024 * 1024, 11));
    const before = await recordIds();
    const client = spawn(
      process.execPath,
      [
        CLI,
        'upload',
        big,
        '--subject',
        SUBJECT,
        '--reader',
        readerId,
        '--purpose',
        'treatment',
        '--expires',
        '1d',
        '--key',
        keyFile,
      ],
      { env: { ...process.env, MEDVAULT_NODE: url }, stdio: 'ignore' },
    );
    const tmp = join(data, 'blobs', 'tmp');
    const deadline = Date.now() + 20_000;
    while (filesUnder(tmp).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    expect(filesUnder(tmp).length).toBe(1); // the body was coming in
    client.kill('SIGKILL');
    await new Promise((r) => client.once('exit', r));
    // The node sees the connection drop and deletes what it had stored; nothing is anchored.
    while (filesUnder(tmp).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(filesUnder(tmp)).toEqual([]);
    expect(await recordIds()).toEqual(before);
    await checkConsistent(before);
  });
});

describe('the node SIGKILLed again and again under uploading clients', () => {
  it('every acknowledged upload survives, each anchored once; no orphan; every error typed', async () => {
    const hospital = new VaultClient(url, hospitalKeys);
    const before = await recordIds();
    const acknowledged = new Set<string>();
    const codes = new Set<string>();
    let stop = false;
    // Each client uploads one document after another, retrying each with its key until acknowledged.
    const worker = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const key = `load-${w}-${i}`;
        for (;;) {
          try {
            acknowledged.add((await upload(hospital, 1000 * w + i, key)).record.id);
            break;
          } catch (err) {
            codes.add(isMedvaultError(err) ? err.code : `untyped: ${String(err)}`);
            await new Promise((r) => setTimeout(r, 50));
          }
        }
      }
    };
    const workers = Array.from({ length: 6 }, (_, w) => worker(w + 1));
    for (let kill = 0; kill < 4; kill++) {
      await new Promise((r) => setTimeout(r, 300 + Math.random() * 700));
      await killed(serve as ChildProcess);
      await start();
    }
    await new Promise((r) => setTimeout(r, 500));
    stop = true;
    await Promise.all(workers);
    expect(acknowledged.size).toBeGreaterThan(20);
    expect(
      [...codes].every((c) => ['NODE_UNAVAILABLE', 'OUTCOME_PENDING'].includes(c)),
      [...codes].join(),
    ).toBe(true);
    expect(codes.has('NODE_UNAVAILABLE')).toBe(true); // the kills did land mid-request
    await checkConsistent(new Set([...before, ...acknowledged]));
  }, 60_000);
});
