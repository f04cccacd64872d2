/** Operations: liveness, readiness, metrics, and the node's public facts. */
import type { FastifyInstance } from 'fastify';
import { fail } from '../../../errors.ts';
import { PUBLIC, type RouteContext } from '../context.ts';

export async function opsRoutes(app: FastifyInstance, { vault, metrics, metricsAllow }: RouteContext): Promise<void> {
  app.get('/healthz', { ...PUBLIC, schema: { hide: true } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { ...PUBLIC, schema: { hide: true } }, async (_request, reply) => {
    const checks = await vault.ready();
    const ok = Object.values(checks).every((v) => v === 'ok');
    return reply.code(ok ? 200 : 503).send({ status: ok ? 'ready' : 'unavailable', checks });
  });
  // For the monitoring host only (loopback by default): the counts tell outsiders too much.
  app.get('/metrics', { ...PUBLIC, schema: { hide: true } }, async (request, reply) => {
    if (!metricsAllow.includes(request.ip)) fail('FORBIDDEN', `metrics are not served to ${request.ip}`);
    return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics());
  });
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
      };
    },
  );
}
