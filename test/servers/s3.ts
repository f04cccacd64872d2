/**
 * An S3 server for tests: s3rver (npm) on 127.0.0.1 with a temp directory,
 * made strict enough to stand in for MinIO. s3rver never checks AWS
 * Signature V4 and lets unsigned requests through, so a middleware placed in
 * front of its own verifies SigV4 on every request — header-signed and
 * presigned (with expiry) — and answers 403 otherwise. It also answers
 * `GET /bucket?uploads` (ListMultipartUploads, which minio asks before a
 * multipart upload and s3rver lacks) with an empty list.
 */

import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import S3rver from 's3rver';
import type { S3StoreOptions } from '../../storage/s3-store.ts';

const ACCESS_KEY = 'S3RVER'; // the one account s3rver knows; the secret is ours

const rfc3986 = (s: string) =>
  encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
const hmac = (key: Buffer | string, data: string) => createHmac('sha256', key).update(data).digest();

function xmlError(code: string, message: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message></Error>`;
}

interface Parsed {
  credential: string;
  signedHeaders: string[];
  signature: string;
  amzDate: string;
  payloadHash: string;
  expiresSeconds: number | null;
}

/** Checks a request's SigV4 signature; returns null when valid, else [code, message]. */
export function checkSigV4(
  method: string,
  url: string,
  headers: Record<string, string | string[] | undefined>,
  secret: string,
  now = Date.now(),
): [string, string] | null {
  const [rawPath = '/', rawQuery = ''] = url.split('?', 2) as [string, string?];
  const query = rawQuery
    .split('&')
    .filter((p) => p !== '')
    .map((p) => {
      const at = p.indexOf('=');
      return at < 0
        ? [decodeURIComponent(p), '']
        : [decodeURIComponent(p.slice(0, at)), decodeURIComponent(p.slice(at + 1))];
    }) as Array<[string, string]>;
  const get = (name: string) => query.find(([k]) => k === name)?.[1];
  const header = (name: string) => {
    const v = headers[name];
    return Array.isArray(v) ? v.join(',') : v;
  };

  let parsed: Parsed;
  const auth = header('authorization');
  if (auth?.startsWith('AWS4-HMAC-SHA256 ')) {
    const fields = Object.fromEntries(
      auth
        .slice('AWS4-HMAC-SHA256 '.length)
        .split(',')
        .map((f) => f.trim().split('=', 2) as [string, string]),
    );
    parsed = {
      credential: fields.Credential ?? '',
      signedHeaders: (fields.SignedHeaders ?? '').split(';'),
      signature: fields.Signature ?? '',
      amzDate: header('x-amz-date') ?? '',
      payloadHash: header('x-amz-content-sha256') ?? '',
      expiresSeconds: null,
    };
  } else if (get('X-Amz-Algorithm') === 'AWS4-HMAC-SHA256') {
    parsed = {
      credential: get('X-Amz-Credential') ?? '',
      signedHeaders: (get('X-Amz-SignedHeaders') ?? '').split(';'),
      signature: get('X-Amz-Signature') ?? '',
      amzDate: get('X-Amz-Date') ?? '',
      payloadHash: 'UNSIGNED-PAYLOAD',
      expiresSeconds: Number(get('X-Amz-Expires') ?? 'NaN'),
    };
  } else {
    return ['AccessDenied', 'Anonymous requests are refused: sign them with AWS Signature V4'];
  }

  const [accessKey, date, region, service, terminal] = parsed.credential.split('/');
  if (accessKey !== ACCESS_KEY) return ['InvalidAccessKeyId', 'The access key id does not exist'];
  if (!date || !region || service !== 's3' || terminal !== 'aws4_request' || !parsed.amzDate.startsWith(date)) {
    return ['AuthorizationQueryParametersError', 'Malformed credential scope'];
  }
  if (!parsed.payloadHash) return ['InvalidRequest', 'Missing x-amz-content-sha256'];
  const signedAt = Date.parse(
    parsed.amzDate.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, '$1-$2-$3T$4:$5:$6Z'),
  );
  if (!Number.isFinite(signedAt)) return ['AccessDenied', 'Malformed X-Amz-Date'];
  if (parsed.expiresSeconds !== null) {
    if (!(parsed.expiresSeconds > 0) || now > signedAt + parsed.expiresSeconds * 1000)
      return ['AccessDenied', 'Request has expired'];
  } else if (Math.abs(now - signedAt) > 15 * 60 * 1000) {
    return ['RequestTimeTooSkewed', 'The difference between the request time and the server time is too large'];
  }

  const canonicalUri = rawPath
    .split('/')
    .map((segment) => rfc3986(decodeURIComponent(segment)))
    .join('/');
  const canonicalQuery = query
    .filter(([k]) => k !== 'X-Amz-Signature')
    .map(([k, v]) => `${rfc3986(k)}=${rfc3986(v)}`)
    .sort() // "name=value" sorts by name, then value, as SigV4 asks (names hold no "=")
    .join('&');
  const canonicalHeaders = parsed.signedHeaders
    .map((h) => `${h}:${(header(h) ?? '').trim().replace(/\s+/g, ' ')}\n`)
    .join('');
  const canonicalRequest = [
    method,
    canonicalUri,
    canonicalQuery,
    canonicalHeaders,
    parsed.signedHeaders.join(';'),
    parsed.payloadHash,
  ].join('\n');
  const scope = `${date}/${region}/s3/aws4_request`;
  const stringToSign = [
    'AWS4-HMAC-SHA256',
    parsed.amzDate,
    scope,
    createHash('sha256').update(canonicalRequest).digest('hex'),
  ].join('\n');
  const key = hmac(hmac(hmac(hmac(`AWS4${secret}`, date), region), 's3'), 'aws4_request');
  const expected = hmac(key, stringToSign);
  const given = Buffer.from(parsed.signature, 'hex');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return ['SignatureDoesNotMatch', 'The request signature we calculated does not match the signature you provided'];
  }
  return null;
}

export interface S3TestServer {
  endPoint: string;
  port: number;
  accessKey: string;
  secretKey: string;
  bucket: string;
  directory: string;
  stop(): Promise<void>;
}

export interface S3ServerOptions {
  bucket?: string;
  /** Reuse a data directory (kept on stop), to restart the same server. */
  directory?: string;
  secretKey?: string;
  /** Serve HTTPS with this certificate and key (PEM), as a MinIO with TLS does. */
  tls?: { cert: Buffer; key: Buffer };
}

export async function startS3Server(options: S3ServerOptions = {}): Promise<S3TestServer> {
  const bucket = options.bucket ?? 'medvault-test';
  const directory = options.directory ?? mkdtempSync(join(tmpdir(), 'medvault-s3-'));
  const secretKey = options.secretKey ?? randomBytes(18).toString('base64url');
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory,
    configureBuckets: [{ name: bucket }],
    ...(options.tls ? { cert: options.tls.cert, key: options.tls.key } : {}),
  });
  server.middleware.unshift(async (ctx, next) => {
    const refusal = checkSigV4(ctx.method, ctx.req.url ?? '/', ctx.req.headers, secretKey);
    if (refusal) {
      ctx.status = 403;
      ctx.type = 'application/xml';
      ctx.body = xmlError(...refusal);
      return;
    }
    const [path, query = ''] = (ctx.req.url ?? '').split('?', 2);
    if (multipartCall(ctx, bucket, directory, path ?? '', new URLSearchParams(query))) return;
    await next();
  });
  const { port } = await server.run();
  return {
    endPoint: '127.0.0.1',
    port,
    accessKey: ACCESS_KEY,
    secretKey,
    bucket,
    directory,
    async stop() {
      await server.close();
      if (!options.directory) rmSync(directory, { recursive: true, force: true });
    },
  };
}

/**
 * The multipart calls s3rver lacks, over its own store of incomplete uploads
 * (`<bucket>/._S3rver_uploads/<uploadId>/`: `key`, then each part by number):
 * ListMultipartUploads (minio asks it before a multipart put), ListParts and
 * AbortMultipartUpload. True when it answered.
 */
function multipartCall(
  ctx: { method: string; status: number; type: string; body: unknown },
  bucket: string,
  directory: string,
  path: string,
  query: URLSearchParams,
): boolean {
  const uploads = join(directory, bucket, '._S3rver_uploads');
  const xml = (body: string) => {
    ctx.status = 200;
    ctx.type = 'application/xml';
    ctx.body = `<?xml version="1.0" encoding="UTF-8"?>\n${body}`;
    return true;
  };
  const ns = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"';
  const ids = () => (existsSync(uploads) ? readdirSync(uploads) : []);
  if (ctx.method === 'GET' && query.has('uploads') && new RegExp(`^/${bucket}/?$`).test(path)) {
    const prefix = query.get('prefix') ?? '';
    const items = ids()
      .map((id) => ({ id, key: readFileSync(join(uploads, id, 'key'), 'utf8'), at: statSync(join(uploads, id)).mtime }))
      .filter((u) => u.key.startsWith(prefix))
      .map(
        (u) =>
          `<Upload><Key>${u.key}</Key><UploadId>${u.id}</UploadId><Initiated>${u.at.toISOString()}</Initiated><StorageClass>STANDARD</StorageClass></Upload>`,
      );
    return xml(
      `<ListMultipartUploadsResult ${ns}><Bucket>${bucket}</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker><NextKeyMarker></NextKeyMarker><NextUploadIdMarker></NextUploadIdMarker><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>${items.join('')}</ListMultipartUploadsResult>`,
    );
  }
  const uploadId = query.get('uploadId');
  if (!uploadId || !ids().includes(uploadId) || !path.startsWith(`/${bucket}/`)) return false;
  const dir = join(uploads, uploadId);
  if (ctx.method === 'GET') {
    const parts = readdirSync(dir)
      .filter((n) => /^\d+$/.test(n))
      .map(
        (n) =>
          `<Part><PartNumber>${n}</PartNumber><LastModified>${statSync(join(dir, n)).mtime.toISOString()}</LastModified><ETag>"${existsSync(join(dir, `${n}.md5`)) ? readFileSync(join(dir, `${n}.md5`), 'utf8') : ''}"</ETag><Size>${statSync(join(dir, n)).size}</Size></Part>`,
      );
    return xml(
      `<ListPartsResult ${ns}><Bucket>${bucket}</Bucket><Key>${readFileSync(join(dir, 'key'), 'utf8')}</Key><UploadId>${uploadId}</UploadId><IsTruncated>false</IsTruncated>${parts.join('')}</ListPartsResult>`,
    );
  }
  if (ctx.method === 'DELETE') {
    rmSync(dir, { recursive: true, force: true });
    ctx.status = 204;
    ctx.body = '';
    return true;
  }
  return false;
}

/** The options that open an S3 store on this test server. */
export function s3Options(server: S3TestServer): S3StoreOptions {
  const { endPoint, port, accessKey, secretKey, bucket } = server;
  return { endPoint, port, accessKey, secretKey, bucket };
}

/** Where the S3 conformance cases run: a real MinIO when MEDVAULT_S3_ENDPOINT is set, else null. */
export function externalS3(): (Omit<S3TestServer, 'directory' | 'stop'> & { useSSL: boolean }) | null {
  const endpoint = process.env.MEDVAULT_S3_ENDPOINT;
  if (!endpoint) return null;
  const url = new URL(endpoint);
  const accessKey = process.env.MEDVAULT_S3_ACCESS_KEY;
  const secretKey = process.env.MEDVAULT_S3_SECRET_KEY;
  if (!accessKey || !secretKey)
    throw new Error('MEDVAULT_S3_ENDPOINT needs MEDVAULT_S3_ACCESS_KEY and MEDVAULT_S3_SECRET_KEY');
  return {
    endPoint: url.hostname,
    port: Number(url.port || (url.protocol === 'https:' ? 443 : 80)),
    useSSL: url.protocol === 'https:',
    accessKey,
    secretKey,
    bucket: process.env.MEDVAULT_S3_BUCKET ?? 'medvault-test',
  };
}
