/**
 * The HTTP API's edges: signed-request authentication (missing, forged,
 * stale, replayed, tampered), malformed ids, bodies and uploads answered with
 * a 4xx and a stable code while nothing changes, rate limits, and the
 * operational routes (health, readiness, metrics, OpenAPI).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encrypt } from '../../crypto/age.ts';
import { SigningKey } from '../../crypto/ed25519.ts';
import { X25519Identity, X25519Recipient } from '../../crypto/x25519.ts';
import { signRequest } from '../../services/protocol/signing.ts';
import { bytes, filesUnder } from '../helpers.ts';
import { DAY, SUBJECT, startNode, type TestMember, type TestNode } from './vault-fixture.ts';

let node: TestNode;
let hospital: TestMember;
let reader: TestMember;
let record: string;

beforeAll(async () => {
  node = await startNode({ rateLimit: 1000 });
  hospital = await node.addMember('hospital', 'uploader');
  reader = await node.addMember('reader', 'reader');
  record = (
    await hospital.client.upload(bytes(1000), {
      subject: SUBJECT,
      readers: [reader.id],
      purpose: 'treatment',
      expiresAt: Date.now() + DAY,
    })
  ).record.id;
});
afterAll(() => node?.stop());

/**
 * A request signed by `key` (or with `headers` as given), returning status and body. Its body's
 * SHA-256 is signed with it, an upload's (`stream`: an age file) too, as the web console does.
 */
async function call(
  method: string,
  path: string,
  options: { key?: SigningKey; body?: string | Uint8Array; headers?: Record<string, string>; stream?: boolean } = {},
) {
  const signed = options.key ? signRequest(options.key, method, path, options.body) : {};
  const contentType = options.stream
    ? { 'content-type': 'application/octet-stream' }
    : options.body !== undefined
      ? { 'content-type': 'application/json' }
      : {};
  const response = await fetch(node.url + path, {
    method,
    headers: { ...contentType, ...signed, ...options.headers },
    body: options.body,
  });
  const text = await response.text();
  let json: { code?: string; message?: string } = {};
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: response.status, code: json.code, message: json.message, text, headers: response.headers };
}

/** What must not change when a request is refused: the ledger head, the blobs, the records. */
async function state() {
  return {
    height: (await node.vault.ledger.head())?.height,
    blobs: filesUnder(`${node.data}/blobs`).sort(),
    grants: (await hospital.client.record(record)).grants,
  };
}

describe('signed requests', () => {
  it('an unsigned request is refused with AUTH_REQUIRED', async () => {
    expect(await call('GET', '/v1/members')).toMatchObject({ status: 401, code: 'AUTH_REQUIRED' });
  });

  it('a signature by another key, a stale time, a replay and a tampered body are refused', async () => {
    const key = reader.keys.signing;
    const forged = signRequest(SigningKey.generate(), 'GET', '/v1/members', undefined);
    expect(await call('GET', '/v1/members', { headers: { ...forged, 'medvault-key': key.id } })).toMatchObject({
      status: 401,
      code: 'AUTH_INVALID',
    });
    const stale = signRequest(key, 'GET', '/v1/members', undefined, Date.now() - 5 * 60_000);
    expect(await call('GET', '/v1/members', { headers: stale })).toMatchObject({ status: 401, code: 'AUTH_EXPIRED' });
    const once = signRequest(key, 'GET', '/v1/members', undefined);
    expect((await call('GET', '/v1/members', { headers: once })).status).toBe(200);
    expect(await call('GET', '/v1/members', { headers: once })).toMatchObject({ status: 401, code: 'AUTH_REPLAY' });
    const path = `/v1/records/${record}/grants`;
    const body = JSON.stringify({ reader: reader.id, purpose: 'treatment', expiresAt: Date.now() + DAY });
    const signed = signRequest(hospital.keys.signing, 'POST', path, body);
    const before = await state();
    const tampered = body.replace('treatment', 'marketing');
    expect(
      await call('POST', path, { body: tampered, headers: { ...signed, 'content-type': 'application/json' } }),
    ).toMatchObject({ status: 401, code: 'AUTH_INVALID' });
    // The signature binds the path: the same headers on another record's route fail.
    expect(
      await call('POST', `/v1/records/${'0'.repeat(32)}/grants`, {
        body,
        headers: { ...signed, 'content-type': 'application/json' },
      }),
    ).toMatchObject({ status: 401, code: 'AUTH_INVALID' });
    expect(await state()).toEqual(before);
  });
});

describe('bad input answers 4xx with a stable code and changes nothing', () => {
  it.each([
    ['GET', '/v1/records/not-an-id', undefined, 400, 'REQUEST_INVALID'],
    ['GET', `/v1/records/${'f'.repeat(32)}`, undefined, 404, 'RECORD_NOT_FOUND'],
    ['GET', '/v1/nowhere', undefined, 404, 'REQUEST_INVALID'],
    ['POST', '/v1/records/RECORD/grants', '{"reader":', 400, 'REQUEST_INVALID'],
    [
      'POST',
      '/v1/records/RECORD/grants',
      '{"reader":"READER","purpose":"treatment","expiresAt":1}',
      400,
      'REQUEST_INVALID',
    ],
    [
      'POST',
      '/v1/records/RECORD/grants',
      '{"reader":"READER","purpose":"Treatment!","expiresAt":9999999999999}',
      400,
      'REQUEST_INVALID',
    ],
    [
      'POST',
      '/v1/records/RECORD/grants',
      '{"reader":"READER","purpose":"x","expiresAt":9999999999999,"extra":1}',
      400,
      'REQUEST_INVALID',
    ],
    [
      'POST',
      '/v1/records/RECORD/grants',
      `{"reader":"${'9'.repeat(32)}","purpose":"x","expiresAt":${Date.now() + DAY}}`,
      404,
      'MEMBER_NOT_FOUND',
    ],
    ['POST', '/v1/erasures', '{"subject":"not-a-pseudonym"}', 400, 'REQUEST_INVALID'],
    ['GET', '/v1/subjects/MRN12345/custodian', undefined, 400, 'REQUEST_INVALID'],
  ])('%s %s %s → %i %s', async (method, rawPath, rawBody, status, code) => {
    const path = rawPath.replace('RECORD', record);
    const body = rawBody?.replace('READER', reader.id);
    const key = path.startsWith('/v1/erasures') ? node.admin.keys.signing : hospital.keys.signing;
    const before = await state();
    const result = await call(method, path, { key, body });
    expect(result).toMatchObject({ status, code });
    expect(result.message).toBeTruthy();
    expect(await state()).toEqual(before);
  });

  it('an emergency without a real reason is refused', async () => {
    const path = `/v1/records/${record}/emergency`;
    const body = JSON.stringify({ reason: 'because' });
    expect(await call('POST', path, { key: reader.keys.signing, body })).toMatchObject({
      status: 400,
      code: 'REQUEST_INVALID',
    });
  });

  describe('uploads', () => {
    const query = () =>
      `/v1/records?subject=${SUBJECT}&readers=${reader.id}&purpose=treatment&expiresAt=${Date.now() + DAY}`;
    const upload = (body: Uint8Array) => call('POST', query(), { key: hospital.keys.signing, body, stream: true });

    it.each([
      ['not an age file', 'AGE_NOT_AGE', () => bytes(5000)],
      ['a header that ends early', 'AGE_HEADER_MALFORMED', () => Buffer.from('age-encryption.org/v1\n-> X25519 abc\n')],
      [
        'no stanza for the custodian',
        'REQUEST_INVALID',
        () => encrypt([X25519Identity.generate().recipient], bytes(5000)),
      ],
    ])('%s → 400 %s, and no record, anchor or blob', async (_name, code, make) => {
      const before = await state();
      expect(await upload(make())).toMatchObject({ status: 400, code });
      expect(await state()).toEqual(before);
    });

    it('a header without a payload → AGE_PAYLOAD_TRUNCATED, and nothing kept', async () => {
      const { recipient } = await hospital.client.custodian(SUBJECT);
      const file = encrypt([X25519Recipient.parse(recipient)], bytes(10));
      const headerOnly = file.subarray(0, file.length - 20);
      const before = await state();
      expect(await upload(headerOnly)).toMatchObject({ status: 400, code: 'AGE_PAYLOAD_TRUNCATED' });
      expect(await state()).toEqual(before);
    });

    it('a query that is not the schema → REQUEST_INVALID', async () => {
      const path = `/v1/records?subject=${SUBJECT}&readers=someone&purpose=treatment&expiresAt=1`;
      expect(await call('POST', path, { key: hospital.keys.signing, body: bytes(10), stream: true })).toMatchObject({
        status: 400,
        code: 'REQUEST_INVALID',
      });
    });
  });
});

describe('operations', () => {
  it('healthz, readyz, metrics and the OpenAPI document answer without a signature', async () => {
    expect(await call('GET', '/healthz')).toMatchObject({ status: 200 });
    const ready = await call('GET', '/readyz');
    expect(ready.status).toBe(200);
    expect(JSON.parse(ready.text).checks).toEqual({ disk: 'ok', metadata: 'ok', ledger: 'ok', store: 'ok' });
    const before = (await node.vault.ledger.head())?.height as number;
    const metrics = await call('GET', '/metrics');
    const after = (await node.vault.ledger.head())?.height as number;
    expect(metrics.text).toContain('medvault_http_request_seconds_bucket');
    expect(metrics.text).toMatch(/medvault_ciphertext_bytes_total\{direction="in"\} \d+/);
    // The operator's view: the ledger's head as the node reads it, anchor times, what waits.
    const ledgerHeight = Number(/^medvault_ledger_height (\d+)$/m.exec(metrics.text)?.[1]);
    expect(ledgerHeight).toBeGreaterThanOrEqual(before);
    expect(ledgerHeight).toBeLessThanOrEqual(after);
    expect(
      Number(/^medvault_ledger_append_seconds_count\{outcome="ok"\} (\d+)$/m.exec(metrics.text)?.[1]),
    ).toBeGreaterThan(0);
    for (const gauge of ['pending_uploads', 'pending_acl_changes', 'erasures_scheduled', 'peers']) {
      expect(metrics.text, gauge).toMatch(new RegExp(`^medvault_${gauge} 0$`, 'm'));
    }
    const openapi = JSON.parse((await call('GET', '/docs/json')).text);
    expect(openapi.openapi).toMatch(/^3\./);
    expect(Object.keys(openapi.paths)).toEqual(
      expect.arrayContaining(['/v1/records', '/v1/records/{id}/content', '/v1/erasures', '/v1/members']),
    );
    expect((await call('GET', '/docs')).status).toBeLessThan(400);
  });

  it('metrics count each operation by outcome, and time each store operation by backend and outcome', async () => {
    const scrape = async () => (await call('GET', '/metrics')).text;
    /** The value of metric `name` with exactly these labels (0 when it has no such sample yet). */
    const sample = (text: string, name: string, labels: Record<string, string>) => {
      const line = text.split('\n').find((l) => {
        const match = /^([a-z_]+)\{([^}]*)\} (\S+)$/.exec(l);
        if (match?.[1] !== name) return false;
        const pairs = Object.fromEntries((match[2] as string).split(',').map((p) => p.split('=')));
        const wanted = Object.entries(labels).map(([k, v]) => [k, `"${v}"`]);
        return Object.keys(pairs).length === wanted.length && wanted.every(([k, v]) => pairs[k as string] === v);
      });
      return line ? Number(line.split(' ').at(-1)) : 0;
    };
    const ops = (text: string, operation: string, outcome: string) =>
      sample(text, 'medvault_operations_total', { operation, outcome });
    const store = (text: string, operation: string, outcome: string) =>
      sample(text, 'medvault_store_operation_seconds_count', { backend: 'fs', operation, outcome });
    const before = await scrape();
    const stranger = await node.addMember('metrics-stranger', 'reader');
    const { record: doomed } = await hospital.client.upload(bytes(2_000, 77), {
      subject: SUBJECT,
      readers: [reader.id],
      purpose: 'treatment',
      expiresAt: Date.now() + DAY,
    });
    await reader.client.fetch(doomed.id, { path: `${node.data}/metrics-fetch` });
    await expect(stranger.client.fetch(doomed.id, { path: `${node.data}/x` })).rejects.toMatchObject({
      code: 'NO_GRANT',
    });
    // The blob gone from under the node (a disk fault, an operator's mistake): the store says so.
    const [blob] = filesUnder(`${node.data}/blobs/blobs`).filter((f) => f.endsWith(doomed.ciphertextHash));
    const { rmSync } = await import('node:fs');
    rmSync(blob as string);
    await expect(reader.client.fetch(doomed.id, { path: `${node.data}/gone` })).rejects.toMatchObject({
      code: 'STORE_NOT_FOUND',
    });
    const after = await scrape();
    expect(ops(after, 'upload', 'ok') - ops(before, 'upload', 'ok')).toBe(1);
    expect(ops(after, 'fetch', 'ok') - ops(before, 'fetch', 'ok')).toBe(1);
    expect(ops(after, 'fetch', 'NO_GRANT') - ops(before, 'fetch', 'NO_GRANT')).toBe(1);
    expect(store(after, 'put', 'ok') - store(before, 'put', 'ok')).toBe(1);
    expect(store(after, 'get', 'ok') - store(before, 'get', 'ok')).toBe(1);
    expect(store(after, 'get', 'STORE_NOT_FOUND') - store(before, 'get', 'STORE_NOT_FOUND')).toBe(1);
    expect(ops(after, 'fetch', 'STORE_NOT_FOUND') - ops(before, 'fetch', 'STORE_NOT_FOUND')).toBe(1);
  });

  it('the OpenAPI document is a contract: signing scheme, real success codes, every error, the upload body', async () => {
    const api = JSON.parse((await call('GET', '/docs/json')).text);
    expect(api.components.securitySchemes.medvaultSignature).toMatchObject({
      in: 'header',
      name: 'medvault-signature',
    });
    expect(api.components.securitySchemes.medvaultSignature.description).toContain('medvault-request-v1');
    expect(api.security).toEqual([{ medvaultSignature: [] }]);
    // Public and node-to-node routes need no member signature; member routes inherit it.
    for (const [path, method] of [
      ['/v1/node', 'get'],
      ['/v1/erasures/order', 'post'],
      ['/healthz', 'get'],
      ['/readyz', 'get'],
      ['/metrics', 'get'],
    ] as const) {
      expect(api.paths[path]?.[method]?.security, path).toEqual([]);
    }
    expect(api.paths['/v1/records'].get.security).toBeUndefined();
    const codes = (path: string, method: string) => Object.keys(api.paths[path][method].responses);
    expect(codes('/v1/erasures', 'post')).toEqual(expect.arrayContaining(['201', '202']));
    expect(codes('/v1/erasures', 'post')).not.toContain('200');
    expect(codes('/v1/members', 'post')).toContain('201');
    expect(codes('/v1/records/{id}/grants', 'post')).toContain('201');
    expect(codes('/v1/checkpoints', 'post')).toContain('201');
    expect(codes('/v1/records', 'post')).toEqual(expect.arrayContaining(['200', '201']));
    expect(api.paths['/v1/records'].post.requestBody.content['application/octet-stream'].schema.format).toBe('binary');
    // Every /v1 operation lists every error status, each with the codes that carry it.
    for (const [path, operations] of Object.entries(
      api.paths as Record<string, Record<string, { responses: Record<string, { description: string }> }>>,
    )) {
      if (!path.startsWith('/v1/')) continue;
      for (const [method, op] of Object.entries(operations)) {
        for (const status of ['400', '401', '403', '404', '409', '429', '503', '507']) {
          expect(op.responses[status], `${method} ${path} ${status}`).toBeDefined();
        }
        expect(op.responses['403']?.description).toContain('NO_GRANT');
        expect(op.responses['401']?.description).toContain('AUTH_REPLAY');
      }
    }
  });

  it('requests beyond a member’s rate limit get 429 RATE_LIMITED', async () => {
    const limited = await startNode({ rateLimit: 5 });
    try {
      const codes = [];
      for (let i = 0; i < 7; i++) {
        const r = await fetch(`${limited.url}/v1/members`, {
          headers: signRequest(limited.admin.keys.signing, 'GET', '/v1/members', undefined),
        });
        codes.push(r.status === 429 ? ((await r.json()) as { code: string }).code : r.status);
      }
      expect(codes).toEqual([200, 200, 200, 200, 200, 'RATE_LIMITED', 'RATE_LIMITED']);
    } finally {
      await limited.stop();
    }
  });
});
