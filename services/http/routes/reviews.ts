/** The break-glass review queue (DPO). */
import type { FastifyInstance } from 'fastify';
import { idParam, member, type RouteContext } from '../context.ts';
import { ID_PARAMS } from '../schemas.ts';

export async function reviewRoutes(app: FastifyInstance, { vault, metrics }: RouteContext): Promise<void> {
  app.get(
    '/v1/reviews',
    {
      schema: {
        summary: 'The break-glass review queue (DPO)',
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: { all: { type: 'string', enum: ['true', 'false'] } },
        },
      },
    },
    async (request) => ({
      reviews: vault.reviews(member(request), (request.query as { all?: string }).all !== 'true'),
    }),
  );
  app.post(
    '/v1/reviews/:id',
    {
      schema: {
        summary: 'Close a break-glass review with its outcome (DPO); anchored as review.closed',
        params: ID_PARAMS,
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['outcome'],
          properties: { outcome: { type: 'string', enum: ['justified', 'unjustified'] } },
        },
      },
    },
    async (request) => {
      const { outcome } = request.body as { outcome: 'justified' | 'unjustified' };
      const closed = await vault.closeReview(member(request), idParam(request), outcome);
      metrics.openReviews.set(vault.openReviews());
      return closed;
    },
  );
}
