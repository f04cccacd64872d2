/**
 * Limits that hold before (and whatever) authentication: deadlines on headers and bodies,
 * a minimum transfer rate for streamed uploads, and a per-address limit on failed requests.
 * Node answers malformed and oversized requests itself; those answers are in the same
 * {code, message} form as every other (clientErrorHandler).
 */
import type { Socket } from 'node:net';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ERRORS, type ErrorCode, fail } from '../../errors.ts';

export interface LimitOptions {
  /** Time to receive a request's headers, ms (default 10 s). */
  headersTimeoutMs?: number;
  /** Time to receive a JSON (non-streamed) body once the headers are in, ms (default 10 s). */
  bodyTimeoutMs?: number;
  /** Slowest a streamed upload may arrive, bytes per second over each 5 s (default 16 KiB/s). */
  minUploadBytesPerSecond?: number;
  /** Failed (401) requests one address may make per minute before it is refused (default 60). */
  failuresPerMinute?: number;
}

const RATE_WINDOW_MS = 5_000;

/** A raw HTTP answer in the {code, message} form, for a socket no reply can be sent on. */
export function rawAnswer(code: ErrorCode, detail?: string): string {
  const { status, message } = ERRORS[code];
  const body = JSON.stringify({ code, message: detail ? `${message}: ${detail}` : message });
  return (
    `HTTP/1.1 ${status} ${code}\r\ncontent-type: application/json; charset=utf-8\r\n` +
    `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`
  );
}

/** What Node's own parser errors become (fastify's clientErrorHandler). */
export function clientErrorHandler(err: Error & { code?: string }, socket: Socket): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const code: ErrorCode =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? 'HEADERS_TOO_LARGE'
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' || err.code === 'ERR_HTTP_HEADERS_TIMEOUT'
        ? 'REQUEST_TIMEOUT'
        : err.code === 'HPE_URI_TOO_LONG'
          ? 'URI_TOO_LONG'
          : 'REQUEST_INVALID';
  socket.end(rawAnswer(code));
}

export function installLimits(app: FastifyInstance, options: LimitOptions = {}): void {
  const bodyTimeoutMs = options.bodyTimeoutMs ?? 10_000;
  const minRate = options.minUploadBytesPerSecond ?? 16 * 1024;
  const failuresPerMinute = options.failuresPerMinute ?? 60;
  app.server.headersTimeout = options.headersTimeoutMs ?? 10_000;
  // Streamed uploads may take as long as they keep their rate: no fixed total time.
  app.server.requestTimeout = 0;

  const failures = new Map<string, { count: number; resetAt: number }>();
  const failing = (ip: string) => {
    const entry = failures.get(ip);
    if (!entry || entry.resetAt < Date.now()) return 0;
    return entry.count;
  };
  // First of all hooks: an address that keeps failing is refused before anything else runs.
  app.addHook('onRequest', async (request) => {
    if (failing(request.ip) >= failuresPerMinute) {
      fail('ADDRESS_LIMITED', 'try again in a minute');
    }
    watchBody(request, bodyTimeoutMs, minRate);
  });
  app.addHook('onResponse', async (request, reply) => {
    if (reply.statusCode !== 401) return;
    const now = Date.now();
    const entry = failures.get(request.ip);
    if (!entry || entry.resetAt < now) failures.set(request.ip, { count: 1, resetAt: now + 60_000 });
    else entry.count++;
    if (failures.size > 100_000) for (const [ip, e] of failures) if (e.resetAt < now) failures.delete(ip);
  });
}

/**
 * A body that does not arrive in time ends its connection with a 408: a JSON body within
 * `bodyTimeoutMs`; a streamed upload at `minRate` bytes per second over each window, counted
 * only while the node waits for it (not while the node itself holds the stream back).
 */
function watchBody(request: FastifyRequest, bodyTimeoutMs: number, minRate: number): void {
  const raw = request.raw;
  const hasBody = raw.headers['transfer-encoding'] !== undefined || Number(raw.headers['content-length'] ?? 0) > 0;
  if (!hasBody || raw.complete) return;
  const socket = raw.socket;
  const refuse = (detail: string) => {
    request.log.info({ code: 'REQUEST_TIMEOUT' }, 'request body too slow: connection closed');
    if (!raw.complete) {
      if (socket.writable && !request.raw.socket.destroyed) socket.end(rawAnswer('REQUEST_TIMEOUT', detail));
      setTimeout(() => socket.destroy(), 1_000).unref();
    }
  };
  let timer: NodeJS.Timeout;
  if (String(raw.headers['content-type'] ?? '').startsWith('application/octet-stream')) {
    let last = socket.bytesRead;
    timer = setInterval(() => {
      const now = socket.bytesRead;
      // Nothing buffered: the node is waiting for the client (when the node is the slow one,
      // the stream holds data back and the client is not blamed).
      const waiting = raw.readableLength === 0;
      if (waiting && now - last < (minRate * RATE_WINDOW_MS) / 1000) refuse(`under ${minRate} bytes/s`);
      last = now;
    }, RATE_WINDOW_MS);
  } else {
    timer = setTimeout(() => refuse(`the body took over ${bodyTimeoutMs} ms`), bodyTimeoutMs);
  }
  timer.unref();
  const done = () => clearTimeout(timer);
  raw.once('end', done);
  raw.once('close', done);
}
