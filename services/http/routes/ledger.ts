/** The ledger's blocks, newest first, for the explorer (admin, DPO): each verifiable by its reader. */
import type { FastifyInstance } from 'fastify';
import { member, type RouteContext } from '../context.ts';
import { STANDARD_ERRORS } from '../schemas.ts';

export async function ledgerRoutes(app: FastifyInstance, { vault }: RouteContext): Promise<void> {
  app.get(
    '/v1/ledger/blocks',
    {
      schema: {
        summary: "The ledger's blocks below a height, newest first, with their events (admin, DPO)",
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            before: { type: 'string', pattern: '^[0-9]{1,12}$' },
            limit: { type: 'string', pattern: '^[0-9]{1,3}$' },
          },
        },
        response: {
          200: {
            type: 'object',
            required: ['blocks', 'next'],
            properties: {
              blocks: { type: 'array', items: { type: 'object', additionalProperties: true } },
              next: { type: ['integer', 'null'] },
            },
          },
          ...STANDARD_ERRORS,
        },
      },
    },
    async (request) => {
      const q = request.query as { before?: string; limit?: string };
      const limit = Math.min(Math.max(Number(q.limit ?? 20), 1), 100);
      return vault.blocks(member(request), {
        limit,
        ...(q.before !== undefined ? { before: Number(q.before) } : {}),
      });
    },
  );
}
