/**
 * The S3 store over TLS, with certificates the suite makes (openssl): s3rver serving
 * HTTPS as a MinIO with TLS does. With the CA that signed the server's certificate a
 * blob goes in and out whole; without it, or with another CA, or over plain HTTP to the
 * TLS port, the store refuses with a typed error and nothing is stored. A node whose
 * store is S3 over TLS uploads and serves.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3BlobStore } from '../../storage/s3-store.ts';
import { bytes, filesUnder, tempDir } from '../helpers.ts';
import { makeCa, pem, type TestCa } from '../servers/certs.ts';
import { type S3TestServer, startS3Server } from '../servers/s3.ts';
import { startNode, type TestNode, treatment } from '../services/vault-fixture.ts';

let ca: TestCa;
let otherCa: TestCa;
let s3: S3TestServer;

beforeAll(async () => {
  ca = makeCa('medvault-store-ca');
  otherCa = makeCa('some-other-ca');
  const files = ca.issue('store');
  const identity = { cert: pem(files.cert), key: pem(files.key) };
  s3 = await startS3Server({ tls: identity });
}, 90_000);
afterAll(() => s3?.stop());

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
