/**
 * The vault's HTTP API (fastify): the server, its parsers, error handler,
 * authentication hook, OpenAPI and rate limits; the routes are one plugin
 * per resource (routes/). Every route validates its input with a JSON
 * schema, every error answers with the one error table's code, status and
 * message, and every request but the health, metrics, docs, node and
 * node-to-node routes must be signed by an active member's key (auth.ts).
 */
import fastifyRateLimit from '@fastify/rate-limit';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyRequest } from 'fastify';
import { ERRORS, type ErrorCode, isDiskFull, isMedvaultError, MedvaultError } from '../../errors.ts';
import { logger } from '../../log.ts';
import type { TlsIdentity } from '../protocol/tls.ts';
import type { MemberRow } from '../vault/metadata.ts';
import type { Vault } from '../vault/vault.ts';
import { authenticate, precheck } from './auth.ts';
import { consoleDirectory, consoleRoutes } from './console.ts';
import type { RouteContext } from './context.ts';
import { clientErrorHandler, installLimits, type LimitOptions } from './limits.ts';
import { createMetrics, OPERATIONS } from './metrics.ts';
import { completeDocument, OPENAPI_INFO, routeTransform } from './openapi.ts';
import { backupRoutes } from './routes/backups.ts';
import { checkpointRoutes } from './routes/checkpoints.ts';
import { consortiumRoutes } from './routes/consortium.ts';
import { erasureRoutes } from './routes/erasures.ts';
import { ledgerRoutes } from './routes/ledger.ts';
import { memberRoutes } from './routes/members.ts';
import { opsRoutes } from './routes/ops.ts';
import { recordRoutes } from './routes/records.ts';
import { reportRoutes } from './routes/reports.ts';
import { reviewRoutes } from './routes/reviews.ts';

export interface ServerOptions extends LimitOptions {
  /** How far a signed request's time may be from the node's clock, ms (default 60 s). */
  authWindowMs?: number;
  /** Requests per member per minute (default 600). */
  rateLimit?: number;
  /** The rate limit's window, ms (default a minute; tests shorten it). */
  rateWindowMs?: number;
  /** Largest JSON body, bytes (uploads stream and are not limited by this). */
  jsonLimit?: number;
  /** Addresses /metrics answers (default: loopback only; add the monitoring host's). */
  metricsAllow?: string[];
  /**
   * Serve HTTPS with this certificate and key. Clients may present a certificate (peers do:
   * mutual TLS, checked against the pin the ledger holds for them); members need none.
   */
  tls?: TlsIdentity;
  /** The built web console to serve at /console/ (default: found beside the code; null: none). */
  consoleDir?: string | null;
}

const LOOPBACK = ['127.0.0.1', '::1', '::ffff:127.0.0.1'];

export async function buildServer(vault: Vault, options: ServerOptions = {}): Promise<FastifyInstance> {
  const startedAt = Date.now();
  const window = options.authWindowMs ?? 60_000;
  const seen = new Map<string, number>(); // nonce -> expiry
  const app = Fastify({
    loggerInstance: logger.child(
      { component: 'http' },
      // A request is logged by its path without the query, with any 64-hex segment (a subject
      // pseudonym) replaced: the query of an upload names the subject, and logs outlive erasures.
      { serializers: { req: (req: { method: string; url: string; id: string }) => logRequest(req) } },
    ) as FastifyBaseLogger,
    bodyLimit: options.jsonLimit ?? 1024 * 1024,
    ...(options.tls
      ? { https: { cert: options.tls.cert, key: options.tls.key, requestCert: true, rejectUnauthorized: false } }
      : {}),
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false } },
    keepAliveTimeout: 65_000,
    // A HEAD of a GET route would run it (a HEAD of a record's content anchored an access).
    exposeHeadRoutes: false,
    clientErrorHandler,
  });
  installLimits(app, options);
  const metrics = createMetrics({
    operatorState: () => vault.operatorState(),
    peersReachable: () => vault.peers.reachable(),
    ledgerHeight: async () => {
      const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('timeout')), 1000).unref());
      return (await Promise.race([vault.ledger.head(), timeout]))?.height ?? -1;
    },
  });
  vault.onAnchored((seconds, outcome) => metrics.anchors.observe({ outcome }, seconds));
  vault.onStoreOperation((operation, backend, outcome, seconds) =>
    metrics.store.observe({ backend, operation, outcome }, seconds),
  );

  app.decorateRequest('member', null);
  app.decorateRequest('rawBody', null);
  app.decorateRequest('errorCode', null);

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
    request.errorCode = mv.code;
    // An upload refused before its body was read: close the connection after the answer instead
    // of waiting for (or reading) the rest of a body that may be gigabytes long.
    if (!request.raw.complete) void reply.header('connection', 'close');
    if (mv.status >= 500) request.log.error({ code: mv.code, err: mv.cause ?? mv }, 'request failed');
    else request.log.info({ code: mv.code }, 'request refused');
    // The record, erasure request or member an answer is about (OUTCOME_PENDING: what to ask about later).
    const about = Object.fromEntries(
      (['recordId', 'requestId', 'memberId'] as const).flatMap((k) =>
        typeof mv.info?.[k] === 'string' ? [[k, mv.info[k]]] : [],
      ),
    );
    void reply.code(mv.status).send({ code: mv.code, message: mv.message, ...about });
  });
  app.setNotFoundHandler((_request, reply) => {
    void reply.code(404).send({ code: 'REQUEST_INVALID', message: 'no such route' });
  });

  // Authentication, in two steps: the signature headers' form, freshness and key before a
  // byte of the body is read (a request refused there is never parsed); the body's hash, the
  // signature and the nonce once it is (a JSON body's hash is checked), before validation.
  const auth = { startedAt, window, seen };
  const isPublic = (request: FastifyRequest) =>
    request.routeOptions.config.public ||
    request.routeOptions.url?.startsWith('/docs') ||
    request.routeOptions.url?.startsWith('/console/') ||
    !request.routeOptions.url;
  app.addHook('onRequest', async (request) => {
    if (isPublic(request)) return;
    request.member = await precheck(request, vault, auth);
  });
  app.addHook('preValidation', async (request) => {
    if (isPublic(request)) return;
    request.member = await authenticate(request, vault, auth, request.member as MemberRow);
  });
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unknown';
    metrics.requests.observe(
      { route, method: request.method, status: String(reply.statusCode) },
      reply.elapsedTime / 1000,
    );
    const operation = OPERATIONS[`${request.method} ${route}`];
    if (operation) {
      metrics.operations.inc({ operation, outcome: reply.statusCode < 400 ? 'ok' : (request.errorCode ?? 'INTERNAL') });
    }
  });

  await app.register(fastifySwagger, {
    openapi: OPENAPI_INFO,
    transform: routeTransform as never,
    transformObject: completeDocument,
  });
  await app.register(fastifySwaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list' } });
  await app.register(fastifyRateLimit, {
    global: true,
    hook: 'preHandler',
    max: options.rateLimit ?? 600,
    timeWindow: options.rateWindowMs ?? 60_000,
    keyGenerator: (request) => request.member?.id ?? request.ip,
    errorResponseBuilder: (_request, context) =>
      new MedvaultError('RATE_LIMITED', `retry in ${Math.ceil(context.ttl / 1000)} s`),
  });

  metrics.openReviews.set(vault.openReviews());
  vault.onEmergency(() => {
    metrics.breakGlass.inc();
    metrics.openReviews.set(vault.openReviews());
  });
  const context: RouteContext = { vault, metrics, metricsAllow: options.metricsAllow ?? LOOPBACK };
  await app.register(opsRoutes, context);
  await app.register(memberRoutes, context);
  await app.register(recordRoutes, context);
  await app.register(erasureRoutes, context);
  await app.register(checkpointRoutes, context);
  await app.register(reviewRoutes, context);
  await app.register(consortiumRoutes, context);
  await app.register(reportRoutes, context);
  await app.register(ledgerRoutes, context);
  await app.register(backupRoutes, context);
  await app.register(async (scope) =>
    consoleRoutes(scope, options.consoleDir === undefined ? consoleDirectory() : options.consoleDir),
  );
  return app;
}

function toMedvaultError(err: unknown): MedvaultError {
  if (isMedvaultError(err)) return err;
  if (isDiskFull(err)) return new MedvaultError('STORAGE_FULL', (err as Error).message, { cause: err });
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

/** How a request appears in the logs: method, path without its query, no pseudonym. */
export function logRequest(req: { method: string; url: string; id: string }) {
  const path = (req.url.split('?')[0] ?? '').replace(/\/[0-9a-f]{64}(?=\/|$)/g, '/:subject');
  return { method: req.method, url: path, id: req.id };
}
