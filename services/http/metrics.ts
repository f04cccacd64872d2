/** The node's Prometheus metrics, and byte counting on streamed bodies. */
import type { Readable } from 'node:stream';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

export type Metrics = ReturnType<typeof createMetrics>;

/** What the node reports about itself at each scrape (services/vault/vault.ts operatorState, the ledger's head). */
export interface NodeState {
  operatorState(): { pendingUploads: number; pendingChanges: number; scheduledErasures: number; peers: number };
  ledgerHeight(): Promise<number>;
  /** Each peer and whether it answered its liveness check just now. */
  peersReachable(): Promise<Array<{ id: string; up: boolean }>>;
}

export function createMetrics(node?: NodeState) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'medvault_' });
  if (node) {
    const gauge = (name: string, help: string, value: () => number | Promise<number>) =>
      new Gauge({
        name,
        help,
        registers: [registry],
        async collect() {
          this.set(await value());
        },
      });
    gauge('medvault_ledger_height', "The ledger head's height as this node reads it (-1: unreadable now)", () =>
      node.ledgerHeight().catch(() => -1),
    );
    gauge(
      'medvault_pending_uploads',
      'Uploads whose anchoring outcome the ledger has not settled yet',
      () => node.operatorState().pendingUploads,
    );
    gauge(
      'medvault_pending_acl_changes',
      'Grants and revocations whose anchoring outcome is not settled yet',
      () => node.operatorState().pendingChanges,
    );
    gauge(
      'medvault_erasures_scheduled',
      'Erasures filed with a cancel window, not yet run',
      () => node.operatorState().scheduledErasures,
    );
    gauge('medvault_peers', 'The consortium nodes this node knows as peers', () => node.operatorState().peers);
    new Gauge({
      name: 'medvault_peer_up',
      help: 'Whether each peer answered its liveness check (GET /healthz, 1 s) at this scrape: 1 up, 0 not',
      labelNames: ['peer'],
      registers: [registry],
      async collect() {
        this.reset(); // a peer no longer in the consortium is no longer reported
        for (const { id, up } of await node.peersReachable()) this.set({ peer: id }, up ? 1 : 0);
      },
    });
  }
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
    breakGlass: new Counter({
      name: 'medvault_break_glass_total',
      help: 'Break-glass accesses, counted the moment each is anchored (alert on any increase)',
      registers: [registry],
    }),
    anchors: new Histogram({
      name: 'medvault_ledger_append_seconds',
      help: "Time from submitting an event to its block being durable on the ledger, by outcome ('ok' or the error code)",
      labelNames: ['outcome'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15],
      registers: [registry],
    }),
    store: new Histogram({
      name: 'medvault_store_operation_seconds',
      help: "Blob store operations by backend (a replicated store's replicas one by one: KIND/NAME), operation and outcome ('ok' or the error code)",
      labelNames: ['backend', 'operation', 'outcome'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60],
      registers: [registry],
    }),
    operations: new Counter({
      name: 'medvault_operations_total',
      help: "What members asked of this node, by operation (upload, fetch, grant, revoke, break_glass, erasure, key_rotation) and outcome ('ok' or the error code)",
      labelNames: ['operation', 'outcome'],
      registers: [registry],
    }),
    openReviews: new Gauge({
      name: 'medvault_reviews_open',
      help: 'Break-glass accesses waiting for a DPO review',
      registers: [registry],
    }),
  };
}

/**
 * An upload's body, counted as it is read. Not with a 'data' listener: that would set the
 * stream flowing at once, and bytes arriving while the upload awaits something before
 * reading its body (the ledger, for another node's readers) would be lost.
 */
export async function* countedChunks(stream: Readable, counter: { inc(n: number): void }): AsyncIterable<Uint8Array> {
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    counter.inc(chunk.length);
    yield chunk;
  }
}

/** A stream the reply sends, counted as it flows. */
export function counted(stream: Readable, counter: { inc(n: number): void }): Readable {
  stream.on('data', (chunk: Buffer) => counter.inc(chunk.length));
  return stream;
}

/** The routes whose outcomes medvault_operations_total counts, by method and route. */
export const OPERATIONS: Readonly<Record<string, string>> = {
  'POST /v1/records': 'upload',
  'GET /v1/records/:id/content': 'fetch',
  'POST /v1/records/:id/grants': 'grant',
  'DELETE /v1/records/:id/grants/:reader': 'revoke',
  'POST /v1/records/:id/emergency': 'break_glass',
  'POST /v1/erasures': 'erasure',
  'PUT /v1/members/:id/keys': 'key_rotation',
};
