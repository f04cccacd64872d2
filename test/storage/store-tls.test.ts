/**
 * The S3 and IPFS stores over TLS, with certificates the suite makes (openssl): s3rver
 * serving HTTPS as a MinIO with TLS does, and the suite's IPFS node behind a
 * TLS-terminating proxy (kubo's RPC API has no TLS of its own). With the CA that signed
 * the server's certificate a blob goes in and out whole; without it, or with another CA,
 * or over plain HTTP to the TLS port, the store refuses with a typed error and nothing is
 * stored. A node whose store is S3 over TLS uploads and serves.
 */
import { execFile } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3BlobStore } from '../../storage/s3-store.ts';
import { bytes, filesUnder, ROOT, tempDir } from '../helpers.ts';
import { makeCa, pem, type TestCa } from '../servers/certs.ts';
import { type IpfsTestNode, startIpfsNode } from '../servers/ipfs.ts';
import { type S3TestServer, startS3Server } from '../servers/s3.ts';
import { startTlsProxy, type TlsProxy } from '../servers/tls-proxy.ts';
import { startNode, type TestNode, treatment } from '../services/vault-fixture.ts';

let ca: TestCa;
let otherCa: TestCa;
let s3: S3TestServer;
let ipfs: IpfsTestNode;
let proxy: TlsProxy;

beforeAll(async () => {
  ca = makeCa('medvault-store-ca');
  otherCa = makeCa('some-other-ca');
  const files = ca.issue('store');
  const identity = { cert: pem(files.cert), key: pem(files.key) };
  s3 = await startS3Server({ tls: identity });
  ipfs = await startIpfsNode();
  proxy = await startTlsProxy(Number(new URL(ipfs.api).port), identity);
}, 90_000);
afterAll(async () => {
  await proxy?.stop();
  await ipfs?.stop();
  await s3?.stop();
});

async function* once(data: Uint8Array) {
  yield data;
}
const drain = async (stream: AsyncIterable<Uint8Array>) => {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
};
/** Everything s3rver keeps in the bucket (objects and incomplete multipart uploads). */
const inBucket = () => filesUnder(join(s3.directory, s3.bucket)).filter((f) => !f.endsWith('.DS_Store'));

describe('S3 over TLS', () => {
  const store = (options: { useSSL?: boolean; ca?: string }) =>
    new S3BlobStore({ ...s3, endPoint: s3.endPoint, port: s3.port, ...options });

  it('with the CA of the server certificate: a multipart blob in and out whole, then deleted', async () => {
    const s = store({ useSSL: true, ca: ca.cert });
    const data = bytes(9 * 1024 * 1024, 1); // over one 8 MiB part
    const put = await s.put(once(data));
    expect((await drain(await s.get(put.ref))).equals(Buffer.from(data))).toBe(true);
    await s.delete(put.ref);
    expect(await s.has(put.ref)).toBe(false);
  });

  it('without that CA, with another, or plain HTTP to the TLS port: STORE_UNAVAILABLE, nothing stored', async () => {
    const before = inBucket();
    for (const [name, options] of [
      ['no CA', { useSSL: true }],
      ['another CA', { useSSL: true, ca: otherCa.cert }],
      ['plain HTTP', { useSSL: false }],
    ] as const) {
      const err = await store(options)
        .put(once(bytes(1000, 2)))
        .catch((e) => e);
      expect(err.code, name).toBe('STORE_UNAVAILABLE');
    }
    expect(inBucket()).toEqual(before);
  });
});

describe('IPFS behind a TLS proxy', () => {
  /**
   * The large-blob fixture (put, get, delete) in a process given `caFile` as its extra CA;
   * run asynchronously: the proxy lives in this process.
   */
  const roundTrip = (caFile: string) =>
    new Promise<{ status: number; stdout: string; stderr: string }>((resolve) => {
      execFile(
        process.execPath,
        [
          join(ROOT, 'test/storage/fixtures/big-blob.ts'),
          JSON.stringify({ kind: 'ipfs', url: `https://127.0.0.1:${proxy.port}`, timeoutMs: 10_000 }),
          String(1024 * 1024 + 7),
        ],
        { encoding: 'utf8', env: { ...process.env, NODE_EXTRA_CA_CERTS: caFile }, timeout: 60_000 },
        (err, stdout, stderr) => resolve({ status: err ? Number(err.code ?? 1) : 0, stdout, stderr }),
      );
    });

  it('a process trusting the proxy certificate’s CA puts, gets and deletes a blob whole', async () => {
    const run = await roundTrip(ca.cert);
    expect(run.status, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout) as { inHash: string; sha256: string; outHash: string; size: number };
    expect(result.outHash).toBe(result.inHash);
    expect(result.sha256).toBe(result.inHash);
  });

  it('one trusting another CA is refused, typed', async () => {
    const run = await roundTrip(otherCa.cert);
    expect(run.status).not.toBe(0);
    expect(run.stderr).toMatch(/STORE_UNAVAILABLE|the blob store is unavailable/);
    expect(run.stderr).toMatch(/certificate|CERT/i);
  });
});

describe('a node on S3 over TLS', () => {
  let node: TestNode;
  afterAll(() => node?.stop());

  it('uploads to and serves from its store over TLS', async () => {
    node = await startNode({
      overrides: {
        store: { kind: 's3', endPoint: s3.endPoint, port: s3.port, useSSL: true, ca: ca.cert, ...keys() },
      },
    });
    const hospital = await node.addMember('hospital', 'uploader');
    const reader = await node.addMember('reader', 'reader');
    const { record } = await hospital.client.upload(bytes(200_000, 5), treatment([reader.id]));
    const path = join(tempDir(), 'out.bin');
    expect((await reader.client.fetch(record.id, { path })).bytes).toBe(200_000);
    expect(readdirSync(join(s3.directory, s3.bucket)).length).toBeGreaterThan(0);
  });
});

function keys() {
  return { accessKey: s3.accessKey, secretKey: s3.secretKey, bucket: s3.bucket };
}
