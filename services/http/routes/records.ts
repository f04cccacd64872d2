/**
 * Records: the custodian to encrypt to, upload, the record view, fetch,
 * break-glass, grants, revocation and the audit trail. Uploads and fetches
 * stream: the request body goes straight to the blob store through the
 * upload flow, and a fetch streams header then blob.
 */
import { createHash, type Hash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { verifySignatureAsync } from '../../../crypto/ed25519.ts';
import { fail } from '../../../errors.ts';
import { BODY_TRAILER, bodyMessage, HEADER, UNSIGNED_PAYLOAD } from '../../protocol/signing.ts';
import type { MemberRow } from '../../protocol/views.ts';
import type { Opened, RecordSearch } from '../../vault/vault.ts';
import { idParam, member, type RouteContext } from '../context.ts';
import { here } from '../forward.ts';
import { counted, countedChunks, type Metrics } from '../metrics.ts';
import { CREATED, ERROR, HASH, ID, ID_PARAMS, PURPOSE, STANDARD_ERRORS, TIME } from '../schemas.ts';

export async function recordRoutes(app: FastifyInstance, { vault, metrics }: RouteContext): Promise<void> {
  app.get(
    '/v1/subjects/:subject/custodian',
    {
      schema: {
        summary: "The subject's custodian recipient, to encrypt an upload to (uploader)",
        params: { type: 'object', required: ['subject'], properties: { subject: HASH } },
      },
    },
    async (request) => vault.custodian(member(request), (request.params as { subject: string }).subject),
  );
  app.post(
    '/v1/uploads/known',
    {
      schema: {
        summary:
          "Which of these idempotency keys name a completed upload of the caller's (uploader): a bulk re-run skips them",
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['keys'],
          properties: {
            keys: {
              type: 'array',
              maxItems: 1000,
              items: { type: 'string', pattern: '^[A-Za-z0-9_-]{8,64}$' },
            },
          },
        },
      },
    },
    async (request) => ({ known: vault.knownUploads(member(request), (request.body as { keys: string[] }).keys) }),
  );
  app.post(
    '/v1/records',
    {
      schema: {
        summary: 'Upload an age file (header + payload) for a subject (uploader); anchored as record.created',
        consumes: ['application/octet-stream'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          required: ['subject', 'readers', 'purpose', 'expiresAt'],
          properties: {
            subject: HASH,
            readers: { type: 'string', pattern: '^[0-9a-f]{32}(,[0-9a-f]{32}){0,63}$' },
            purpose: PURPOSE,
            expiresAt: { type: 'string', pattern: '^[0-9]{1,16}$' },
            idempotencyKey: {
              type: 'string',
              pattern: '^[A-Za-z0-9_-]{8,64}$',
              description: "the client's key for this upload: a repeat returns the first upload's record (200)",
            },
          },
        },
        response: {
          200: {
            type: 'object',
            additionalProperties: true,
            description: 'a repeat of an upload with the same idempotency key: the first one',
          },
          201: { type: 'object', additionalProperties: true },
          ...STANDARD_ERRORS,
        },
      },
    },
    async (request, reply) => {
      if (!(request.body instanceof Readable)) fail('REQUEST_INVALID', 'send the age file as application/octet-stream');
      const q = request.query as {
        subject: string;
        readers: string;
        purpose: string;
        expiresAt: string;
        idempotencyKey?: string;
      };
      const actor = member(request);
      const hash = createHash('sha256');
      const result = await vault.upload(
        actor,
        {
          subject: q.subject,
          readers: q.readers.split(','),
          purpose: q.purpose,
          expiresAt: Number(q.expiresAt),
          ...(q.idempotencyKey ? { idempotencyKey: q.idempotencyKey } : {}),
        },
        hashed(countedChunks(request.body, metrics.bytes.labels('in')), hash),
        { checkBody: () => checkBodySignature(request, actor, hash.digest('hex')) },
      );
      return reply.code(result.repeated ? 200 : 201).send(result);
    },
  );
  app.get(
    '/v1/records',
    {
      schema: {
        summary:
          'Search records, newest first (an uploader its own, a reader those granted to it now, a DPO all); a page at a time',
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            subject: { ...HASH, description: "the subject's pseudonym, computed on the caller's side" },
            uploader: ID,
            reader: ID,
            purpose: PURPOSE,
            since: { type: 'string', pattern: '^[0-9]{1,16}$', description: 'created at or after (ms)' },
            until: { type: 'string', pattern: '^[0-9]{1,16}$', description: 'created before (ms)' },
            state: { enum: ['active', 'erased', 'pending-erasure'] },
            cursor: { type: 'string', maxLength: 100, description: "the previous page's `next`" },
            limit: { type: 'string', pattern: '^[0-9]{1,3}$', description: '1 to 500 (default 50)' },
          },
        },
        response: { 200: { type: 'object', additionalProperties: true }, ...STANDARD_ERRORS },
      },
    },
    async (request) => {
      const q = request.query as Record<string, string | undefined>;
      const number = (v: string | undefined) => (v === undefined ? undefined : Number(v));
      const search = Object.fromEntries(
        Object.entries({
          subject: q.subject,
          uploader: q.uploader,
          reader: q.reader,
          purpose: q.purpose,
          since: number(q.since),
          until: number(q.until),
          state: q.state,
          cursor: q.cursor,
          limit: number(q.limit),
        }).filter(([, v]) => v !== undefined),
      );
      return vault.searchRecords(member(request), search as RecordSearch);
    },
  );
  app.get(
    '/v1/records/:id',
    {
      schema: {
        summary: 'A record and the receipt of its ciphertext hash',
        params: ID_PARAMS,
        response: { 410: ERROR },
      },
    },
    async (request, reply) => {
      const id = idParam(request);
      return (await here(request, reply, vault, id, async () => vault.record(member(request), id))) ?? reply;
    },
  );
  app.get(
    '/v1/records/:id/content',
    {
      schema: {
        summary: 'Fetch (live grantee): the age file, header then payload; anchored as record.accessed',
        params: ID_PARAMS,
      },
    },
    async (request, reply) => {
      const id = idParam(request);
      const opened = await here(request, reply, vault, id, () => vault.open(member(request), id));
      return opened ? sendOpened(reply, opened, metrics) : reply;
    },
  );
  app.post(
    '/v1/records/:id/emergency',
    {
      schema: {
        summary: 'Break-glass access with a stated reason; anchored as access.emergency and queued for DPO review',
        params: ID_PARAMS,
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['reason'],
          properties: { reason: { type: 'string', minLength: 10, maxLength: 1000 } },
        },
      },
    },
    async (request, reply) => {
      const id = idParam(request);
      const { reason } = request.body as { reason: string };
      const opened = await here(request, reply, vault, id, () => vault.emergency(member(request), id, reason));
      if (!opened) return reply;
      reply.header('medvault-review-id', opened.reviewId);
      return sendOpened(reply, opened, metrics);
    },
  );
  app.post(
    '/v1/records/:id/grants',
    {
      schema: {
        summary: "Grant a reader (the record's uploader); the header is rewrapped in the KMS, the blob untouched",
        params: ID_PARAMS,
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['reader', 'purpose', 'expiresAt'],
          properties: { reader: ID, purpose: PURPOSE, expiresAt: TIME },
        },
        response: { 201: CREATED },
      },
    },
    async (request, reply) => {
      const body = request.body as { reader: string; purpose: string; expiresAt: number };
      return reply.code(201).send(await vault.grant(member(request), idParam(request), body));
    },
  );
  app.delete(
    '/v1/records/:id/grants/:reader',
    {
      schema: {
        summary: 'Revoke a reader; with reencrypt=true also a new file key and blob (suspected key compromise)',
        params: { type: 'object', required: ['id', 'reader'], properties: { id: ID, reader: ID } },
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { reencrypt: { type: 'string', enum: ['true', 'false'] } },
        },
      },
    },
    async (request) => {
      const { id, reader } = request.params as { id: string; reader: string };
      const reencrypt = (request.query as { reencrypt?: string }).reencrypt === 'true';
      return vault.revoke(member(request), id, reader, { reencrypt });
    },
  );
  app.get(
    '/v1/records/:id/audit',
    {
      schema: {
        summary: "A record's trail from the ledger, with receipts (its uploader or a DPO)",
        params: ID_PARAMS,
      },
    },
    async (request) => vault.audit(member(request), idParam(request)),
  );
}

/** Sends an opened record: header then blob, with the access and content receipts in headers. */
function sendOpened(reply: FastifyReply, opened: Opened, metrics: Metrics) {
  const header = Buffer.from(opened.header);
  const blob = opened.blob;
  reply
    .header('content-type', 'application/octet-stream')
    .header('content-length', String(header.length + opened.record.size))
    .header('medvault-header-length', String(header.length))
    .header('medvault-receipt', Buffer.from(JSON.stringify(opened.receipt)).toString('base64'))
    .header('medvault-content-receipt', Buffer.from(JSON.stringify(opened.content)).toString('base64'));
  if (Buffer.isBuffer(blob)) {
    // A small record, read and checked whole before its access was anchored: one buffer, no stream.
    const whole = Buffer.concat([header, blob]);
    metrics.bytes.labels('out').inc(whole.length);
    return reply.send(whole);
  }
  const body = Readable.from(
    (async function* () {
      yield header;
      yield* blob;
    })(),
    { objectMode: false },
  );
  return reply.send(counted(body, metrics.bytes.labels('out')));
}

/** Every chunk of `body`, hashed into `hash` as it passes. */
async function* hashed(body: AsyncIterable<Uint8Array>, hash: Hash): AsyncIterable<Uint8Array> {
  for await (const chunk of body) {
    hash.update(chunk);
    yield chunk;
  }
}

/**
 * AUTH_INVALID unless the bytes received are the bytes the member signed: the SHA-256 the
 * request itself signed (a client that knew it before sending, such as the web console), or
 * else the upload's trailer, the member's signature over its request signature and the SHA-256
 * of every byte received (services/protocol/signing.ts). Bytes a relay swapped or cut are
 * refused before anything is kept.
 */
async function checkBodySignature(request: FastifyRequest, actor: MemberRow, bodySha256: string): Promise<void> {
  const signedHash = request.headers[HEADER.body];
  if (signedHash !== UNSIGNED_PAYLOAD) {
    if (signedHash !== bodySha256) fail('AUTH_INVALID', 'the uploaded bytes are not the bytes the member signed');
    return;
  }
  const trailer = request.raw.trailers[BODY_TRAILER];
  if (!trailer) fail('AUTH_INVALID', `an upload is signed end to end: send the ${BODY_TRAILER} trailer`);
  const signature = Buffer.from(trailer, 'base64');
  const valid =
    signature.length === 64 &&
    signature.toString('base64') === trailer &&
    (await verifySignatureAsync(
      Buffer.from(actor.signingKey, 'base64'),
      bodyMessage(request.headers[HEADER.signature] as string, bodySha256),
      new Uint8Array(signature),
    ));
  if (!valid) fail('AUTH_INVALID', 'the uploaded bytes are not the bytes the member signed');
}
