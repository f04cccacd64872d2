/**
 * SIGKILL, the fault no code can catch: a real `medvault serve` process killed at each
 * step of an upload (by its crash points, services/vault/crash-points.ts, and from
 * outside while the body streams in), an uploading client killed mid-body, and the
 * node killed again and again under uploading clients that retry with their
 * idempotency keys. After each restart: every acknowledged upload is there and opens,
 * the ledger holds exactly one record.created per upload the node keeps (none for one
 * it dropped), no blob or temporary file is left that no record points at, and every
 * error a client saw is typed (never INTERNAL). A node killed half-way through a member's
 * key rotation has kept it, and finishes rewrapping the member's headers when it starts.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decrypt } from '../../crypto/age.ts';
import { isMedvaultError } from '../../errors.ts';
import { generateMemberKeys, memberKeyFileText } from '../../services/protocol/member-keys.ts';
import { bytes, CLI, codeOf, filesUnder, tempDir } from '../helpers.ts';
import { DAY, SUBJECT } from '../services/vault-fixture.ts';
import { ServedNode } from './served-node.ts';

const root = tempDir('medvault-kill-');
let node: ServedNode;

/** Starts `medvault serve` with its crash points armed at `crashAt`; resolves once it listens. */
const start = (crashAt?: string) => node.start(crashAt ? { env: { MEDVAULT_TEST_CRASH_AT: crashAt } } : {});

/** Every record the node serves opens for the reader, and matches the ledger and the store one to one. */
async function checkConsistent(expected: Set<string>): Promise<void> {
  const records = [...(await node.recordIds())];
  expect(new Set(records)).toEqual(expected);
  const reader = node.client(node.readerKeys);
  for (const id of records) {
    expect((await reader.fetch(id, { path: join(root, `check-${id}`) })).bytes).toBeGreaterThan(0);
  }
  const left = await node.leftovers(); // beside the running node: a read-only ledger open takes no lock
  expect(new Set(left.created.keys())).toEqual(expected); // nothing anchored that the node dropped
  expect([...left.created.values()].every((n) => n === 1)).toBe(true);
  expect(left.blobs).toBe(expected.size); // no orphan blob
  expect(left.temporaries).toBe(0);
}

beforeAll(async () => {
  node = await ServedNode.create(join(root, 'node'));
}, 60_000);
afterAll(async () => {
  await node.stop();
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
      await node.stop();
      await start(point);
      const key = `kill-${point.replace('.', '-')}`;
      const err = await node.upload(kept.size + 1, key).catch((e) => e);
      expect(isMedvaultError(err, 'NODE_UNAVAILABLE'), String(err)).toBe(true);
      expect(await node.stop()).toBe('SIGKILL'); // it died at that point, by its own hand
      const during = await node.leftovers();
      expect(during.created.size).toBe(kept.size + (anchored ? 1 : 0));
      await start();
      const again = await node.upload(kept.size + 1, key);
      expect(again.repeated === true).toBe(anchored);
      kept.add(again.record.id);
      await checkConsistent(kept);
    });
  }

  it('while the body streams in: nothing is kept, anchored or left in the store', async () => {
    const hospital = node.client();
    const before = await node.leftovers();
    const big = join(root, 'big.bin');
    writeFileSync(big, bytes(64 * 1024 * 1024, 9));
    const pending = hospital
      .upload(
        { path: big },
        { subject: SUBJECT, readers: [node.readerId], purpose: 'treatment', expiresAt: Date.now() + DAY },
      )
      .catch((e) => e);
    // Killed once part of the body is in the store's temporary file.
    const deadline = Date.now() + 20_000;
    while (filesUnder(join(node.data, 'blobs', 'tmp')).length === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(filesUnder(join(node.data, 'blobs', 'tmp')).length).toBe(1);
    await node.stop();
    expect((await pending).code).toBe('NODE_UNAVAILABLE');
    expect((await node.leftovers()).created).toEqual(before.created);
    await start(); // start-up clears the cut-off temporary
    await checkConsistent(new Set(before.created.keys()));
  });
});

describe('an uploading client SIGKILLed mid-body', () => {
  it('leaves nothing: no record, no anchor, no temporary', async () => {
    const keyFile = join(root, 'hospital.key');
    writeFileSync(keyFile, memberKeyFileText('hospital', node.hospitalKeys), { mode: 0o600 });
    const big = join(root, 'big-client.bin');
    writeFileSync(big, bytes(64 * 1024 * 1024, 11));
    const before = await node.recordIds();
    const client = spawn(
      process.execPath,
      [
        CLI,
        'upload',
        big,
        '--subject',
        SUBJECT,
        '--reader',
        node.readerId,
        '--purpose',
        'treatment',
        '--expires',
        '1d',
        '--key',
        keyFile,
      ],
      { env: { ...process.env, MEDVAULT_NODE: node.url }, stdio: 'ignore' },
    );
    const tmp = join(node.data, 'blobs', 'tmp');
    const deadline = Date.now() + 20_000;
    while (filesUnder(tmp).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    expect(filesUnder(tmp).length).toBe(1); // the body was coming in
    client.kill('SIGKILL');
    await new Promise((r) => client.once('exit', r));
    // The node sees the connection drop and deletes what it had stored; nothing is anchored.
    while (filesUnder(tmp).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(filesUnder(tmp)).toEqual([]);
    expect(await node.recordIds()).toEqual(before);
    await checkConsistent(before);
  });
});

describe('the node SIGKILLed again and again under uploading clients', () => {
  it('every acknowledged upload survives, each anchored once; no orphan; every error typed', async () => {
    const before = await node.recordIds();
    const acknowledged = new Set<string>();
    const codes = new Set<string>();
    let stop = false;
    // Each client uploads one document after another, retrying each with its key until acknowledged.
    const worker = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const key = `load-${w}-${i}`;
        for (;;) {
          try {
            acknowledged.add((await node.upload(1000 * w + i, key)).record.id);
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
      await node.stop();
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

describe('the node SIGKILLed half-way through a key rotation', () => {
  it('kept the rotation, and rewraps the rest of the member’s headers when it starts again', async () => {
    const ids = await node.recordIds();
    expect(ids.size).toBeGreaterThan(2); // every record is the reader's: most are left when it dies
    const old = node.readerKeys;
    const next = generateMemberKeys();
    await node.stop();
    await start('rotation.rewrapping');
    const err = await node
      .client(old)
      .rotateKeys(next)
      .catch((e) => e);
    expect(isMedvaultError(err, 'NODE_UNAVAILABLE'), String(err)).toBe(true);
    expect(await node.stop()).toBe('SIGKILL'); // after the first header, by its own hand
    await start();
    await expect(node.client(old).members()).rejects.toMatchObject({ code: 'AUTH_INVALID' });
    node.readerKeys = { ...next, member: node.readerId };
    const reader = node.client(node.readerKeys);
    for (const id of ids) {
      const { stream } = await reader.fetchEncrypted(id);
      const parts: Buffer[] = [];
      for await (const chunk of stream) parts.push(Buffer.from(chunk));
      const file = Buffer.concat(parts);
      expect(codeOf(() => decrypt([old.identity], file))).toBe('AGE_NO_IDENTITY');
      expect(decrypt([next.identity], file).length).toBeGreaterThan(0);
    }
    await checkConsistent(ids);
  });
});
