/** Ledger checkpoints: make one (admin, DPO), read the latest, and the peers' cosign route. */
import type { FastifyInstance } from 'fastify';
import { fail } from '../../../errors.ts';
import { member, peerRoute, type RouteContext } from '../context.ts';
import { CREATED } from '../schemas.ts';

export async function checkpointRoutes(app: FastifyInstance, { vault }: RouteContext): Promise<void> {
  app.post(
    '/v1/checkpoints',
    {
      schema: {
        summary: "Checkpoint the ledger's head, cosigned by the peers that confirm it (admin, DPO)",
        response: { 201: CREATED },
      },
    },
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
    app,
    vault,
    '/v1/checkpoints/cosign',
    "A peer node asks this node to confirm its ledger checkpoint against this node's view",
    'checkpoint',
    (checkpoint) => vault.checkpoints.cosign(checkpoint),
  );
}
