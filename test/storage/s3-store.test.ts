/**
 * The S3 blob store against an S3 server started for this suite: s3rver on
 * 127.0.0.1 behind a strict SigV4 verifier (test/servers/s3.ts). With
 * MEDVAULT_S3_ENDPOINT (and MEDVAULT_S3_ACCESS_KEY, MEDVAULT_S3_SECRET_KEY,
 * MEDVAULT_S3_BUCKET) the conformance cases run against that real MinIO
 * instead; the failure cases need a server this suite can stop, so they
 * always use the test server.
 */
import { spawn } from 'node:child_process';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from 'minio';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isMedvaultError } from '../../errors.ts';
import { S3BlobStore, type S3StoreOptions } from '../../storage/s3-store.ts';
import { bytes, filesUnder, ROOT, tempDir } from '../helpers.ts';
import { externalS3, type S3TestServer, s3Options, startS3Server } from '../servers/s3.ts';
import { blobStoreConformance } from './conformance.ts';

let server: S3TestServer;
beforeAll(async () => {
  server = await startS3Server();
});
afterAll(async () => {
  await server?.stop();
});

const options = (over: Partial<S3StoreOptions> = {}): S3StoreOptions => ({ ...s3Options(server), ...over });

const external = externalS3();
const target = (): S3StoreOptions => external ?? options();
blobStoreConformance(external ? 's3 (MinIO)' : 's3', async () => new S3BlobStore(target()), {
  missingRef: () => 'ef'.repeat(32),
  config: () => ({ kind: 's3', ...target() }),
});

async function* once(data: Uint8Array): AsyncGenerator<Uint8Array> {
  yield data;
}

describe('s3: the test server is strict', () => {
  it('refuses unsigned requests and tampered presigned URLs', async () => {
    const client = new Client({
      endPoint: server.endPoint,
      port: server.port,
      useSSL: false,
      accessKey: server.accessKey,
      secretKey: server.secretKey,
      region: 'us-east-1',
    });
    const { ref } = await new S3BlobStore(options()).put(once(bytes(100, 1)));
    expect((await fetch(`http://127.0.0.1:${server.port}/${server.bucket}/${ref}`)).status).toBe(403);
    const url = await client.presignedGetObject(server.bucket, ref, 60);
    expect((await fetch(url)).status).toBe(200);
    expect((await fetch(url.replace(`/${ref}?`, `/${'0'.repeat(64)}?`))).status).toBe(403);
    expect((await fetch(url.replace(/X-Amz-Signature=[0-9a-f]{4}/, 'X-Amz-Signature=0000'))).status).toBe(403);
  });
});

describe('s3 blob store: failures', () => {
  it('wrong credentials are STORE_AUTH and leave nothing', async () => {
    const bad = new S3BlobStore(options({ secretKey: 'not-the-secret' }));
    const err = await bad.put(once(bytes(1000, 2))).catch((e) => e);
    expect(isMedvaultError(err, 'STORE_AUTH')).toBe(true);
    expect(isMedvaultError(await bad.stat('ab'.repeat(32)).catch((e) => e), 'STORE_AUTH')).toBe(true);
  });

  it('an unreachable server is STORE_UNAVAILABLE', async () => {
    const gone = new S3BlobStore(options({ port: 1 }));
    expect(isMedvaultError(await gone.stat('ab'.repeat(32)).catch((e) => e), 'STORE_UNAVAILABLE')).toBe(true);
  });

  it('bytes changed on the server are caught on read (STORE_INTEGRITY)', async () => {
    const store = new S3BlobStore(options());
    const { ref } = await store.put(once(bytes(5000, 3)));
    const [file] = filesUnder(server.directory).filter(
      (f) => f.includes(ref) && !f.endsWith('.json') && readFileSync(f).length === 5000,
    );
    expect(file).toBeDefined();
    const tampered = readFileSync(file as string);
    tampered[10] = (tampered[10] as number) ^ 1;
    writeFileSync(file as string, tampered);
    const stream = await store.get(ref);
    const err = await (async () => {
      for await (const _ of stream);
    })().catch((e) => e);
    expect(isMedvaultError(err, 'STORE_INTEGRITY')).toBe(true);
  });

  it('the server killed mid-put: the put fails typed, and after a restart nothing of it is there', async () => {
    const directory = tempDir('medvault-s3-restart-');
    const secretKey = 'restart-secret';
    const child = spawn(process.execPath, [join(ROOT, 'test/servers/s3-process.ts'), directory, secretKey]);
    const ready = JSON.parse(
      await new Promise<string>((resolve) => child.stdout.once('data', (d) => resolve(String(d)))),
    );
    const store = new S3BlobStore({ ...options(), port: ready.port, secretKey });
    async function* slow(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < 60; i++) {
        if (i === 20) child.kill('SIGKILL'); // the server dies while parts are still coming
        yield bytes(1 << 20, i);
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    const err = await store.put(slow()).catch((e) => e);
    expect(isMedvaultError(err, 'STORE_UNAVAILABLE')).toBe(true);
    const second = await startS3Server({ directory, secretKey });
    try {
      const again = new S3BlobStore({ ...options(), port: second.port, secretKey });
      const refs: string[] = [];
      for await (const ref of again.list()) refs.push(ref);
      expect(refs).toEqual([]);
      const client = new Client({
        endPoint: second.endPoint,
        port: second.port,
        useSSL: false,
        accessKey: second.accessKey,
        secretKey,
        region: 'us-east-1',
      });
      const temps: string[] = [];
      for await (const o of client.listObjectsV2(second.bucket, 'tmp/', true)) temps.push((o as { name: string }).name);
      expect(temps).toEqual([]);
      // The server kept the parts it had received: an incomplete multipart upload, tens of MB.
      const uploads = join(directory, second.bucket, '._S3rver_uploads');
      const partBytes = () => filesUnder(uploads).reduce((sum, f) => sum + statSync(f).size, 0);
      expect(partBytes()).toBeGreaterThan(1 << 20);
      // A node's start-up (or its hourly timer) collects them; a younger one is left to its put.
      expect(await again.collectStrays({ olderThanMs: 60 * 60_000 })).toEqual([]);
      const removed = await again.collectStrays({ olderThanMs: 0 });
      expect(removed).toEqual([expect.stringMatching(/^s3: incomplete upload .* of tmp\//)]);
      expect(partBytes()).toBe(0);
    } finally {
      await second.stop();
    }
  });
});
