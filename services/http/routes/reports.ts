/** Subject access reports (DPO), and the peers' route for their parts. */
import type { FastifyInstance } from 'fastify';
import { member, peerRoute, type RouteContext } from '../context.ts';
import { HASH, STANDARD_ERRORS } from '../schemas.ts';

export async function reportRoutes(app: FastifyInstance, { vault }: RouteContext): Promise<void> {
  app.post(
    '/v1/subject-reports',
    {
      schema: {
        summary:
          "A subject access report (DPO): every record of the subject on every node, with its ledger trail's receipts and the members' names",
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['subject'],
          properties: { subject: { ...HASH, description: "the subject's pseudonym, computed on the DPO's side" } },
        },
        response: { 200: { type: 'object', additionalProperties: true }, ...STANDARD_ERRORS },
      },
    },
    async (request) => vault.reports.report(member(request), (request.body as { subject: string }).subject),
  );
  peerRoute(
    app,
    vault,
    '/v1/subject-reports/part',
    "A peer node asks, for its DPO's subject access report, for this node's records of the subject (a signed report order)",
    'order',
    (order) => vault.reports.receive(order),
  );
}
