/** What every route plugin is given, and the helpers they share. */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { MemberRow } from '../vault/metadata.ts';
import type { Vault } from '../vault/vault.ts';
import type { Metrics } from './metrics.ts';

export interface RouteContext {
  vault: Vault;
  metrics: Metrics;
  /** Addresses /metrics answers (its counts say how often break-glass and erasure happen). */
  metricsAllow: readonly string[];
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

/** Route options of a route anyone may call: no signature, no per-member rate limit. */
export const PUBLIC = { config: { public: true, rateLimit: false as const } };

/** The authenticated member of a signed request (the authentication hook set it). */
export const member = (request: FastifyRequest) => request.member as MemberRow;

/** The `:id` parameter of a route on one record, erasure, review or member. */
export const idParam = (request: FastifyRequest) => (request.params as { id: string }).id;

/** The largest document a peer may send (a certificate with its parts). */
const PEER_BODY_LIMIT = 256 * 1024 * 1024;

/**
 * A node-to-node route: what a peer asks is checked against public facts (the
 * document's signatures, the shared ledger) and this node's own holdings, so no
 * member signature is needed; rate-limited by address.
 */
export function peerRoute(
  app: FastifyInstance,
  path: string,
  summary: string,
  field: string,
  handle: (document: unknown) => Promise<unknown>,
): void {
  app.post(
    path,
    {
      config: { public: true, rateLimit: { max: 60, timeWindow: 60_000 } },
      // A certificate lists every record with its receipts: a subject with thousands of records
      // makes one of several MB (each peer's part inside it too).
      bodyLimit: PEER_BODY_LIMIT,
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
}
