/** Erasure (DPO): execute or schedule, list, certificates, cancel, cosignatures, the sweep; and the peers' cosign route. */
import type { FastifyInstance } from 'fastify';
import type { ErasureTarget } from '../../vault/erasure.ts';
import { idParam, member, peerRoute, type RouteContext } from '../context.ts';
import { CREATED, DELAY, HASH, ID, ID_PARAMS } from '../schemas.ts';

export async function erasureRoutes(app: FastifyInstance, { vault, metrics }: RouteContext): Promise<void> {
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
        response: {
          201: { ...CREATED, description: 'executed now: the signed certificate' },
          202: { ...CREATED, description: 'scheduled: requestId, executeAt and the filing receipt' },
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
    { schema: { summary: "An executed erasure's certificate (DPO)", params: ID_PARAMS } },
    async (request) => vault.erasures.certificate(member(request), idParam(request)),
  );
  app.post(
    '/v1/erasures/:id/cancel',
    { schema: { summary: 'Cancel a scheduled erasure inside its window (DPO); anchored', params: ID_PARAMS } },
    async (request) => vault.erasures.cancel(member(request), idParam(request)),
  );
  app.post(
    '/v1/erasures/:id/cosign',
    {
      schema: {
        summary: "Ask the consortium's other nodes again for missing cosignatures (DPO)",
        params: ID_PARAMS,
      },
    },
    async (request) => vault.erasures.recollect(member(request), idParam(request)),
  );
  app.get(
    '/v1/erasures/:id/sweep',
    {
      schema: {
        summary: "Sweep the node's stores, KMS, metadata, files and logs for any trace of an executed erasure (DPO)",
        params: ID_PARAMS,
      },
    },
    async (request) => vault.erasures.sweep(member(request), idParam(request)),
  );
  peerRoute(
    app,
    vault,
    '/v1/erasures/order',
    "The node that executed a subject's erasure orders this node to erase its own records of the subject (signed by that node; the filing must be on the ledger)",
    'order',
    (order) => vault.erasures.receive(order),
  );
  peerRoute(
    app,
    vault,
    '/v1/cosign',
    'A peer node asks this node to confirm and cosign an erasure it executed',
    'certificate',
    (certificate) => vault.erasures.cosign(certificate),
  );
}
