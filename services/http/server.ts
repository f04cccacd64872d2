/**
 * The vault's HTTP API (fastify). Every route validates its input with a
 * JSON schema, every error answers with the one error table's code, status
 * and message, and every request but the health, metrics, docs and node
 * routes must be signed by an active member's Ed25519 key (services/signing.ts):
 * within `authWindowMs` of the node's clock, never before the node started
 * (so a restart cannot be used to replay), and with a nonce used once.
 *
 * Uploads and downloads stream: the request body goes straight to the blob
 * store through the upload flow, and a fetch streams header then blob.
 */
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import fastifyRateLimit from '@fastify/rate-limit';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { Counter, collectDefaultMetrics, Histogram, Registry } from 'prom-client';
import { verifySignature } from '../crypto/ed25519.ts';
import { ERRORS, type ErrorCode, fail, isMedvaultError, MedvaultError } from '../errors.ts';
import { logger } from '../log.ts';
import type { ErasureTarget } from './erasure.ts';
import type { MemberRow } from './metadata.ts';
import { bodyHash, FORWARD_HEADER, forwardMessage, HEADER, requestMessage, UNSIGNED_PAYLOAD } from './signing.ts';
import type { Opened, Vault } from './vault.ts';

export interface ServerOptions {
  /** How far a signed request's time may be from the node's clock, ms (default 60 s). */
  authWindowMs?: number;
  /** Requests per member per minute (default 600). */
  rateLimit?: number;
  /** Largest JSON body, bytes (uploads stream and are not limited by this). */
  jsonLimit?: number;
}

declare module 'fastify' {
  interface FastifyRequest {
    member: MemberRow | null;
    rawBody: Buffer | null;
  }
  interface FastifyContextConfig {
    public?: boolean;
  }
}

const ID = { type: 'string', pattern: '^[0-9a-f]{32}$' };
const HASH = { type: 'string', pattern: '^[0-9a-f]{64}$' };
const PURPOSE = { type: 'string', pattern: '^[a-z][a-z0-9._-]{0,39}$' };
const TIME = { type: 'integer', minimum: 0 };
const DELAY = { type: 'integer', minimum: 0, maximum: 90 * 86_400 };
const ERROR = {
  type: 'object',
  properties: { code: { type: 'string' }, message: { type: 'string' } },
  required: ['code', 'message'],
};
const ROLE = { type: 'string', enum: ['uploader', 'reader', 'dpo', 'admin'] };
const MEMBER = {
  type: 'object',
  properties: {
    id: ID,
    name: { type: 'string' },
    role: ROLE,
    signingKey: { type: 'string' },
    recipient: { type: 'string' },
    node: { type: ['string', 'null'], description: "a member of another node: that node's id" },
    addedAt: TIME,
    removedAt: { type: ['integer', 'null'] },
  },
};
const RECORD_PARAMS = { type: 'object', required: ['id'], properties: { id: ID } };
const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, ERROR]));
const STANDARD_ERRORS = errors(400, 401, 403, 404, 429, 503);

export async function buildServer(vault: Vault, options: ServerOptions = {}): Promise<FastifyInstance> {
  const startedAt = Date.now();
  const window = options.authWindowMs ?? 60_000;
  const seen = new Map<string, number>(); // nonce -> expiry
  const app = Fastify({
    loggerInstance: logger.child({ component: 'http' }) as FastifyBaseLogger,
    bodyLimit: options.jsonLimit ?? 1024 * 1024,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    keepAliveTimeout: 65_000,
  });
  const metrics = createMetrics();

  app.decorateRequest('member', null);
  app.decorateRequest('rawBody', null);

  // JSON: keep the raw bytes, whose hash the signature covers.
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (req, body, done) => {
    req.rawBody = body as Buffer;
    try {
      done(null, body.length === 0 ? undefined : JSON.parse(body.toString('utf8')));
    } catch {
      done(new MedvaultError('REQUEST_INVALID', 'the body is not valid JSON'), undefined);
    }
  });
  // Uploads: the body stays a stream, read once by the upload flow.
  app.addContentTypeParser('application/octet-stream', (_req, payload, done) => done(null, payload));

  app.setErrorHandler((err: unknown, request, reply) => {
    const mv = toMedvaultError(err);
    // An upload refused before its body was read: close the connection after the answer instead
    // of waiting for (or reading) the rest of a body that may be gigabytes long.
    if (!request.raw.complete) void reply.header('connection', 'close');
    if (mv.status >= 500) request.log.error({ code: mv.code, err: mv.cause ?? mv }, 'request failed');
    else request.log.info({ code: mv.code }, 'request refused');
    void reply.code(mv.status).send({ code: mv.code, message: mv.message });
  });
  app.setNotFoundHandler((_request, reply) => {
    void reply.code(404).send({ code: 'REQUEST_INVALID', message: 'no such route' });
  });

  // Authentication: after parsing (the JSON body's hash is checked), before validation.
  app.addHook('preValidation', async (request) => {
    if (request.routeOptions.config.public || request.routeOptions.url?.startsWith('/docs')) return;
    const [key, via] = [request.headers[HEADER.key], request.headers[FORWARD_HEADER.via]];
    if (typeof key === 'string' && typeof via === 'string') await vault.learnMember(key, via);
    request.member = authenticate(request, vault, { startedAt, window, seen });
  });
  app.addHook('onResponse', async (request, reply) => {
    metrics.requests.observe(
      { route: request.routeOptions.url ?? 'unknown', method: request.method, status: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
  });

  await app.register(fastifySwagger, {
    openapi: {
      info: {
        title: 'medvault',
        version: '1',
        description:
          'Encrypted, ledger-anchored document vault. Sign every /v1 request with your member key: see services/signing.ts.',
      },
    },
  });
  await app.register(fastifySwaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list' } });
  await app.register(fastifyRateLimit, {
    global: true,
    hook: 'preHandler',
    max: options.rateLimit ?? 600,
    timeWindow: 60_000,
    keyGenerator: (request) => request.member?.id ?? request.ip,
    errorResponseBuilder: (_request, context) =>
      new MedvaultError('RATE_LIMITED', `retry in ${Math.ceil(context.ttl / 1000)} s`),
  });

  const open = { config: { public: true, rateLimit: false as const } };
  const member = (request: FastifyRequest) => request.member as MemberRow;

  app.get('/healthz', { ...open, schema: { hide: true } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { ...open, schema: { hide: true } }, async (_request, reply) => {
    const checks = await vault.ready();
    const ok = Object.values(checks).every((v) => v === 'ok');
    return reply.code(ok ? 200 : 503).send({ status: ok ? 'ready' : 'unavailable', checks });
  });
  app.get('/metrics', { ...open, schema: { hide: true } }, async (_request, reply) =>
    reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()),
  );
  app.get(
    '/v1/node',
    { ...open, schema: { summary: 'The node: its key id (the block and certificate signer)' } },
    async () => {
      const head = await vault.ledger.head();
      return {
        id: vault.nodeId,
        signingKey: vault.nodeKey,
        ledger: vault.ledger.kind,
        height: head?.height ?? null,
        // The consortium's other nodes: receipts of records they hold reach this node's readers forwarded.
        peers: vault.peers.ids,
      };
    },
  );

  // Members.
  app.get(
    '/v1/members',
    {
      schema: {
        summary: 'The member directory',
        response: {
          200: { type: 'object', properties: { members: { type: 'array', items: MEMBER } } },
          ...STANDARD_ERRORS,
        },
      },
    },
    async (request) => ({
      members: await vault.listMembers(member(request)),
    }),
  );
  app.post(
    '/v1/members',
    {
      schema: {
        summary: 'Add a member (admin); anchored as member.added',
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['name', 'role', 'signingKey', 'recipient'],
          properties: {
            name: { type: 'string', pattern: '^[a-z0-9][a-z0-9._-]{0,62}$' },
            role: ROLE,
            signingKey: { type: 'string', pattern: '^[A-Za-z0-9+/]{43}=$' },
            recipient: { type: 'string', pattern: '^age1[02-9ac-hj-np-z]{58}$' },
            node: { ...ID, description: 'For a reader of another node: that node, which forwards its fetches' },
          },
        },
      },
    },
    async (request, reply) => {
      const body = request.body as Parameters<Vault['addMember']>[1];
      return reply.code(201).send(await vault.addMember(member(request), body));
    },
  );
  app.delete(
    '/v1/members/:id',
    { schema: { summary: 'Remove a member (admin); anchored as member.removed', params: RECORD_PARAMS } },
    async (request) => vault.removeMember(member(request), (request.params as { id: string }).id),
  );

  // Records.
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
          },
        },
        response: { 201: { type: 'object', additionalProperties: true }, ...STANDARD_ERRORS },
      },
    },
    async (request, reply) => {
      if (!(request.body instanceof Readable)) fail('REQUEST_INVALID', 'send the age file as application/octet-stream');
      const q = request.query as { subject: string; readers: string; purpose: string; expiresAt: string };
      const result = await vault.upload(
        member(request),
        { subject: q.subject, readers: q.readers.split(','), purpose: q.purpose, expiresAt: Number(q.expiresAt) },
        countedChunks(request.body, metrics.bytes.labels('in')),
      );
      return reply.code(201).send(result);
    },
  );
  app.get(
    '/v1/records/:id',
    {
      schema: {
        summary: 'A record and the receipt of its ciphertext hash',
        params: RECORD_PARAMS,
        response: { 410: ERROR },
      },
    },
    async (request, reply) => {
      const id = (request.params as { id: string }).id;
      return (await here(request, reply, vault, id, async () => vault.record(member(request), id))) ?? reply;
    },
  );
  app.get(
    '/v1/records/:id/content',
    {
      schema: {
        summary: 'Fetch (live grantee): the age file, header then payload; anchored as record.accessed',
        params: RECORD_PARAMS,
      },
    },
    async (request, reply) => {
      const id = (request.params as { id: string }).id;
      const opened = await here(request, reply, vault, id, () => vault.open(member(request), id));
      return opened ? sendOpened(reply, opened, metrics) : reply;
    },
  );
  app.post(
    '/v1/records/:id/emergency',
    {
      schema: {
        summary: 'Break-glass access with a stated reason; anchored as access.emergency and queued for DPO review',
        params: RECORD_PARAMS,
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['reason'],
          properties: { reason: { type: 'string', minLength: 10, maxLength: 1000 } },
        },
      },
    },
    async (request, reply) => {
      const id = (request.params as { id: string }).id;
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
        params: RECORD_PARAMS,
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['reader', 'purpose', 'expiresAt'],
          properties: { reader: ID, purpose: PURPOSE, expiresAt: TIME },
        },
      },
    },
    async (request, reply) => {
      const body = request.body as { reader: string; purpose: string; expiresAt: number };
      return reply.code(201).send(await vault.grant(member(request), (request.params as { id: string }).id, body));
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
        params: RECORD_PARAMS,
      },
    },
    async (request) => vault.audit(member(request), (request.params as { id: string }).id),
  );

  // Erasure and review (DPO).
  app.post(
    '/v1/erasures',
    {
      schema: {
        summary:
          'Erase a subject or a record (DPO). Without delaySeconds: executed now, 201 with the signed certificate; with it: 202, scheduled, cancellable until executeAt',
        body: {
          oneOf: [
            {
              type: 'object',
              additionalProperties: false,
              required: ['subject'],
              properties: { subject: HASH, delaySeconds: DELAY },
            },
            {
              type: 'object',
              additionalProperties: false,
              required: ['recordId'],
              properties: { recordId: ID, delaySeconds: DELAY },
            },
          ],
        },
      },
    },
    async (request, reply) => {
      const { delaySeconds = 0, ...target } = request.body as ErasureTarget & { delaySeconds?: number };
      if (delaySeconds > 0) {
        return reply.code(202).send(await vault.erasures.file(member(request), target, delaySeconds * 1000));
      }
      const certificate = await vault.erasures.erase(member(request), target);
      metrics.erasures.inc(certificate.records.length);
      return reply.code(201).send(certificate);
    },
  );
  app.get('/v1/erasures', { schema: { summary: 'Erasure requests and their states (DPO)' } }, async (request) => ({
    erasures: vault.erasures.list(member(request)),
  }));
  app.get(
    '/v1/erasures/:id',
    { schema: { summary: "An executed erasure's certificate (DPO)", params: RECORD_PARAMS } },
    async (request) => vault.erasures.certificate(member(request), (request.params as { id: string }).id),
  );
  app.post(
    '/v1/erasures/:id/cancel',
    { schema: { summary: 'Cancel a scheduled erasure inside its window (DPO); anchored', params: RECORD_PARAMS } },
    async (request) => vault.erasures.cancel(member(request), (request.params as { id: string }).id),
  );
  app.post(
    '/v1/erasures/:id/cosign',
    {
      schema: {
        summary: "Ask the consortium's other nodes again for missing cosignatures (DPO)",
        params: RECORD_PARAMS,
      },
    },
    async (request) => vault.erasures.recollect(member(request), (request.params as { id: string }).id),
  );
  /**
   * A node-to-node route: what a peer asks is checked against public facts (the
   * document's signatures, the shared ledger) and this node's own holdings, so no
   * member signature is needed; rate-limited by address.
   */
  const peerRoute = (path: string, summary: string, field: string, handle: (document: unknown) => Promise<unknown>) =>
    app.post(
      path,
      {
        config: { public: true, rateLimit: { max: 60, timeWindow: 60_000 } },
        schema: {
          summary,
          body: {
            type: 'object',
            additionalProperties: false,
            required: [field],
            properties: { [field]: { type: 'object' } },
          },
        },
      },
      async (request) => handle((request.body as Record<string, unknown>)[field]),
    );
  peerRoute(
    '/v1/cosign',
    'A peer node asks this node to confirm and cosign an erasure it executed',
    'certificate',
    (certificate) => vault.erasures.cosign(certificate),
  );
  app.post(
    '/v1/checkpoints',
    { schema: { summary: "Checkpoint the ledger's head, cosigned by the peers that confirm it (admin, DPO)" } },
    async (request, reply) => {
      const checkpoint = await vault.checkpoints.create({ actor: member(request) });
      if (!checkpoint) fail('REQUEST_INVALID', 'the ledger is empty: nothing to checkpoint');
      return reply.code(201).send(checkpoint);
    },
  );
  app.get(
    '/v1/checkpoints/latest',
    { schema: { summary: 'The newest ledger checkpoint this node confirmed, with its signatures' } },
    async (request) => {
      const checkpoint = vault.checkpoints.latest(member(request));
      if (!checkpoint) fail('CHECKPOINT_NOT_FOUND');
      return checkpoint;
    },
  );
  peerRoute(
    '/v1/checkpoints/cosign',
    "A peer node asks this node to confirm its ledger checkpoint against this node's view",
    'checkpoint',
    (checkpoint) => vault.checkpoints.cosign(checkpoint),
  );
  app.get(
    '/v1/erasures/:id/sweep',
    {
      schema: {
        summary: "Sweep the node's stores, KMS, metadata, files and logs for any trace of an executed erasure (DPO)",
        params: RECORD_PARAMS,
      },
    },
    async (request) => vault.erasures.sweep(member(request), (request.params as { id: string }).id),
  );
  app.get(
    '/v1/reviews',
    {
      schema: {
        summary: 'The break-glass review queue (DPO)',
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { all: { type: 'string', enum: ['true', 'false'] } },
        },
      },
    },
    async (request) => ({
      reviews: vault.reviews(member(request), (request.query as { all?: string }).all !== 'true'),
    }),
  );
  app.post(
    '/v1/reviews/:id',
    {
      schema: {
        summary: 'Close a break-glass review (DPO)',
        params: RECORD_PARAMS,
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['outcome'],
          properties: { outcome: { type: 'string', enum: ['justified', 'unjustified'] } },
        },
      },
    },
    async (request, reply) => {
      const { outcome } = request.body as { outcome: 'justified' | 'unjustified' };
      vault.closeReview(member(request), (request.params as { id: string }).id, outcome);
      return reply.code(204).send();
    },
  );
  return app;
}

function authenticate(
  request: FastifyRequest,
  vault: Vault,
  state: { startedAt: number; window: number; seen: Map<string, number> },
): MemberRow {
  const header = (name: string) => {
    const value = request.headers[name];
    return typeof value === 'string' ? value : undefined;
  };
  const key = header(HEADER.key);
  const time = header(HEADER.time);
  const nonce = header(HEADER.nonce);
  const hash = header(HEADER.body);
  const signature = header(HEADER.signature);
  if (!key || !time || !nonce || !hash || !signature)
    fail('AUTH_REQUIRED', `send the ${Object.values(HEADER).join(', ')} headers`);
  if (!/^[0-9a-f]{32}$/.test(nonce) || !/^[0-9]{1,16}$/.test(time)) fail('AUTH_INVALID', 'malformed nonce or time');
  const at = Number(time);
  const now = Date.now();
  if (Math.abs(now - at) > state.window || at < state.startedAt) {
    fail('AUTH_EXPIRED', `signed at ${at}, the node's time is ${now}; sign each request when sending it`);
  }
  const member = vault.member(key);
  if (!member) fail('AUTH_INVALID', 'the key is not an active member key');
  const streamed = request.headers['content-type']?.startsWith('application/octet-stream');
  const expected = streamed ? UNSIGNED_PAYLOAD : bodyHash(request.rawBody ?? undefined);
  if (hash !== expected) fail('AUTH_INVALID', 'the body does not match its signed hash');
  const message = requestMessage({ method: request.method, path: request.url, time, nonce, bodyHash: hash });
  const valid = verifySignature(
    Buffer.from(member.signingKey, 'base64'),
    message,
    new Uint8Array(Buffer.from(signature, 'base64')),
  );
  if (!valid) fail('AUTH_INVALID');
  if (member.node !== null) checkForwarded(member, signature, header, vault);
  if (state.seen.has(nonce)) fail('AUTH_REPLAY');
  if (state.seen.size > 100_000) for (const [n, expiry] of state.seen) if (expiry < now) state.seen.delete(n);
  state.seen.set(nonce, now + 2 * state.window);
  return member;
}

/**
 * A member of another node reaches this node only through that node: the
 * request must carry that node's signature over the member's own (whose
 * signature the caller has checked), by the key this node knows for that peer.
 */
function checkForwarded(
  member: MemberRow,
  memberSignature: string,
  header: (name: string) => string | undefined,
  vault: Vault,
): void {
  const via = header(FORWARD_HEADER.via);
  const signature = header(FORWARD_HEADER.signature);
  if (!via || !signature) fail('AUTH_INVALID', `a member of node ${member.node}: send requests through that node`);
  if (via !== member.node) fail('AUTH_INVALID', `forwarded by ${via}, but the member belongs to node ${member.node}`);
  const key = vault.peers.get(via)?.signingKey; // checkPeers made sure it is that node's key
  if (!key) fail('AUTH_INVALID', `forwarded by ${via}, a node whose key this node is not configured with`);
  const valid = verifySignature(
    Buffer.from(key, 'base64'),
    forwardMessage(via, member.id, memberSignature),
    new Uint8Array(Buffer.from(signature, 'base64')),
  );
  if (!valid) fail('AUTH_INVALID', 'the forwarding signature does not verify');
}

/** Response headers a forwarded fetch passes back to the member. */
const RELAYED = [
  'content-type',
  'content-length',
  'medvault-header-length',
  'medvault-receipt',
  'medvault-content-receipt',
  'medvault-review-id',
];

/**
 * Runs `local` for record `id`; when this node has no such record, forwards
 * the request to the node holding it (the ledger says which) and returns
 * null, the answer relayed.
 */
async function here<T>(
  request: FastifyRequest,
  reply: FastifyReply,
  vault: Vault,
  id: string,
  local: () => Promise<T>,
): Promise<T | null> {
  try {
    return await local();
  } catch (err) {
    if (isMedvaultError(err, 'RECORD_NOT_FOUND') && (await forwardIfElsewhere(request, reply, vault, id))) return null;
    throw err;
  }
}

/**
 * Forwards a member's request about record `id`, which this node does not
 * hold, to the node holding it, when that is another node, and relays the
 * answer: true when it did; false when the ledger names no other node.
 */
async function forwardIfElsewhere(
  request: FastifyRequest,
  reply: FastifyReply,
  vault: Vault,
  id: string,
): Promise<boolean> {
  const actor = request.member as MemberRow;
  if (actor.node !== null) return false; // a forwarded request is not forwarded again
  const holder = await vault.holderElsewhere(id);
  if (!holder) return false;
  const peer = vault.peers.get(holder);
  if (!peer) fail('PEER_UNKNOWN', `record ${id} is held by node ${holder}`);
  const memberSignature = request.headers[HEADER.signature] as string;
  const headers: Record<string, string> = {
    [FORWARD_HEADER.via]: vault.nodeId,
    [FORWARD_HEADER.signature]: vault.signForward(actor.id, memberSignature),
  };
  for (const name of Object.values(HEADER)) headers[name] = request.headers[name] as string;
  // A JSON body (break-glass: the reason) goes as it came: the member's signature covers its hash.
  const body = request.rawBody ?? undefined;
  if (body) headers['content-type'] = 'application/json';
  let response: Response;
  try {
    response = await fetch(`${peer.url.replace(/\/$/, '')}${request.url}`, {
      method: request.method,
      headers,
      body,
      signal: AbortSignal.timeout(30_000),
    });
  } catch (err) {
    fail('PEER_UNAVAILABLE', `node ${holder} at ${peer.url}: ${(err as Error).message}`, { cause: err });
  }
  reply.code(response.status).header('medvault-held-by', holder);
  for (const name of RELAYED) {
    const value = response.headers.get(name);
    if (value !== null) reply.header(name, value);
  }
  // The reply is sent, not returned: a reply is thenable, and an async function would wait on it.
  void reply.send(response.body ? Readable.fromWeb(response.body as WebReadableStream) : undefined);
  return true;
}

function sendOpened(reply: FastifyReply, opened: Opened, metrics: ReturnType<typeof createMetrics>) {
  const header = Buffer.from(opened.header);
  reply
    .header('content-type', 'application/octet-stream')
    .header('content-length', String(header.length + opened.record.size))
    .header('medvault-header-length', String(header.length))
    .header('medvault-receipt', Buffer.from(JSON.stringify(opened.receipt)).toString('base64'))
    .header('medvault-content-receipt', Buffer.from(JSON.stringify(opened.content)).toString('base64'));
  const blob = opened.blob;
  const body = Readable.from(
    (async function* () {
      yield header;
      yield* blob;
    })(),
    { objectMode: false },
  );
  return reply.send(counted(body, metrics.bytes.labels('out')));
}

/**
 * An upload's body, counted as it is read. Not with a 'data' listener: that would set the
 * stream flowing at once, and bytes arriving while the upload awaits something before
 * reading its body (the ledger, for another node's readers) would be lost.
 */
async function* countedChunks(stream: Readable, counter: { inc(n: number): void }): AsyncIterable<Uint8Array> {
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    counter.inc(chunk.length);
    yield chunk;
  }
}

function counted(stream: Readable, counter: { inc(n: number): void }): Readable {
  stream.on('data', (chunk: Buffer) => counter.inc(chunk.length));
  return stream;
}

function toMedvaultError(err: unknown): MedvaultError {
  if (isMedvaultError(err)) return err;
  const e = err as { code?: string; statusCode?: number; message?: string; validation?: unknown };
  if (e?.validation) return new MedvaultError('REQUEST_INVALID', e.message);
  if (e?.code === 'ECONNRESET' || e?.message === 'aborted') {
    return new MedvaultError('REQUEST_INVALID', 'the client closed the connection mid-request');
  }
  if (e?.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return new MedvaultError('PAYLOAD_TOO_LARGE');
  if (e?.code && e.code in ERRORS) return new MedvaultError(e.code as ErrorCode, e.message);
  if (typeof e?.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return new MedvaultError('REQUEST_INVALID', e.message);
  }
  return new MedvaultError('INTERNAL', undefined, { cause: err });
}

function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'medvault_' });
  return {
    registry,
    requests: new Histogram({
      name: 'medvault_http_request_seconds',
      help: 'HTTP requests by route, method and status',
      labelNames: ['route', 'method', 'status'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    bytes: new Counter({
      name: 'medvault_ciphertext_bytes_total',
      help: 'Ciphertext bytes streamed in (uploads) and out (fetches)',
      labelNames: ['direction'],
      registers: [registry],
    }),
    erasures: new Counter({
      name: 'medvault_records_erased_total',
      help: 'Records erased',
      registers: [registry],
    }),
  };
}
