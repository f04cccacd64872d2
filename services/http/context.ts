/** What every route plugin is given, and the helpers they share. */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { fail } from '../../errors.ts';
import { peerFingerprint } from '../protocol/tls.ts';
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
    /** The code of the error the request was answered with (the operations metric's outcome). */
    errorCode: string | null;
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
 * member signature is needed; rate-limited by address. A peer that serves TLS
 * calls over mutual TLS with the certificate the ledger pins for it (checkPeerCaller).
 */
export function peerRoute(
  app: FastifyInstance,
  vault: Vault,
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
    async (request) => {
      const document = (request.body as Record<string, unknown>)[field];
      await checkPeerCaller(vault, document, request.raw.socket);
      return handle(document);
    },
  );
}

/**
 * A document a peer sends is signed by that node (an order, a certificate) or by it among
 * others (a checkpoint's signatures). If any of its signers is a peer the ledger pins a TLS
 * certificate for, the caller must have presented one of those certificates: a stolen
 * signed document cannot be replayed from elsewhere, and an outsider does not reach the
 * route's work at all. Signers this node does not know are left to the route, which refuses
 * them by its own rules.
 */
async function checkPeerCaller(vault: Vault, document: unknown, socket: unknown): Promise<void> {
  const d = document as { signer?: unknown; signatures?: unknown };
  const signers = [d.signer, ...(Array.isArray(d.signatures) ? d.signatures.map((s) => s?.signer) : [])].filter(
    (s): s is string => typeof s === 'string',
  );
  if (signers.length === 0) return;
  const presented = peerFingerprint(socket) ?? '';
  const refused = () => {
    const pins = signers.flatMap((id) => vault.peers.get(id)?.tls ?? []);
    return pins.length > 0 && !pins.includes(presented);
  };
  // The ledger is read again only when the pins this node knows refuse the caller (a node that
  // joined or changed its certificate since the last look); the route's own work reads it anyway.
  if (!refused()) return;
  await vault.peers.refresh();
  if (refused()) {
    fail('AUTH_INVALID', 'a node-to-node call without the TLS client certificate the ledger names for its signer');
  }
}
