/** Operations: liveness, readiness, metrics, and the node's public facts. */
import type { FastifyInstance } from 'fastify';
import { fail } from '../../../errors.ts';
import { PUBLIC, type RouteContext } from '../context.ts';

const READY = {
  type: 'object',
  properties: {
    status: { enum: ['ready', 'unavailable'] },
    checks: {
      type: 'object',
      additionalProperties: { type: 'string' },
      description: "each dependency: 'ok' or why not",
    },
  },
};

export async function opsRoutes(app: FastifyInstance, { vault, metrics, metricsAllow }: RouteContext): Promise<void> {
  app.get(
    '/healthz',
    {
      ...PUBLIC,
      schema: {
        summary: 'Liveness: the process answers',
        response: { 200: { type: 'object', properties: { status: { const: 'ok' } } } },
      },
    },
    async () => ({ status: 'ok' }),
  );
  app.get(
    '/readyz',
    {
      ...PUBLIC,
      schema: {
        summary: 'Readiness: 200 when the ledger, store and key custody all answer, else 503 with each check',
        response: { 200: READY, 503: READY },
      },
    },
    async (_request, reply) => {
      const checks = await vault.ready();
      const ok = Object.values(checks).every((v) => v === 'ok');
      return reply.code(ok ? 200 : 503).send({ status: ok ? 'ready' : 'unavailable', checks });
    },
  );
  // For the monitoring host only (loopback by default): the counts tell outsiders too much.
  app.get(
    '/metrics',
    {
      ...PUBLIC,
      schema: {
        summary: 'Prometheus metrics (docs/configuration.md), only to the addresses in metricsAllow (else 403)',
        produces: ['text/plain'],
      },
    },
    async (request, reply) => {
      if (!metricsAllow.includes(request.ip)) fail('FORBIDDEN', `metrics are not served to ${request.ip}`);
      return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
    },
  );
  app.get(
    '/v1/node',
    { ...PUBLIC, schema: { summary: 'The node: its key id (the block and certificate signer)' } },
    async () => {
      const head = await vault.ledger.head();
      return {
        id: vault.nodeId,
        signingKey: vault.nodeKey,
        ledger: vault.ledger.kind,
        height: head?.height ?? null,
        // The consortium's other nodes: receipts of records they hold reach this node's readers forwarded.
        peers: vault.peers.ids,
        // Node keys replaced (node.key receipts): verifiers follow them (anchor/trusted-keys.ts).
        keyHistory: await vault.nodeKeyHistory(),
      };
    },
  );
}
