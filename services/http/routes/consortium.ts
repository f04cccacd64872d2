/** The consortium: its nodes as the ledger says, invites (admin), and the subject key sealed to a member. */
import type { FastifyInstance } from 'fastify';
import { idParam, member, type RouteContext } from '../context.ts';
import { errors, ID, ID_PARAMS, STANDARD_ERRORS, TIME } from '../schemas.ts';

const NODE = {
  type: 'object',
  properties: {
    id: ID,
    state: { enum: ['invited', 'joined', 'left', 'removed'] },
    invitedBy: { type: ['string', 'null'], description: 'the node that invited it (null: the founder)' },
    signingKey: { type: ['string', 'null'] },
    recipient: { type: ['string', 'null'] },
    url: { type: ['string', 'null'] },
    tls: {
      type: ['string', 'null'],
      description: 'SHA-256 of the TLS certificate it serves with, which its peers pin',
    },
    since: TIME,
  },
};

export async function consortiumRoutes(app: FastifyInstance, { vault }: RouteContext): Promise<void> {
  app.get(
    '/v1/consortium/nodes',
    {
      schema: {
        summary: "The consortium's nodes, as the ledger says (invited, joined, left)",
        response: {
          200: { type: 'object', properties: { nodes: { type: 'array', items: NODE } } },
          ...STANDARD_ERRORS,
        },
      },
    },
    async (request) => {
      member(request);
      return { nodes: await vault.consortium.nodes() };
    },
  );
  app.post(
    '/v1/consortium/invites',
    {
      schema: {
        summary: 'Invite a node (admin): the invite is sealed to its key, and anchored as node.invited with its digest',
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['node', 'signingKey', 'recipient'],
          properties: {
            node: ID,
            signingKey: { type: 'string', pattern: '^[A-Za-z0-9+/]{43}=$' },
            recipient: { type: 'string', pattern: '^age1[02-9ac-hj-np-z]{58}$' },
            expiresInDays: { type: 'integer', minimum: 1, maximum: 90 },
          },
        },
        response: {
          201: {
            type: 'object',
            additionalProperties: true,
            properties: { invite: { type: 'string' }, node: ID, expiresAt: TIME },
          },
          ...STANDARD_ERRORS,
          ...errors(409),
        },
      },
    },
    async (request, reply) => {
      const { expiresInDays, ...joining } = request.body as { expiresInDays?: number };
      const days = expiresInDays === undefined ? undefined : expiresInDays * 86_400_000;
      return reply.code(201).send(await vault.consortium.invite(member(request), joining, days));
    },
  );
  app.post(
    '/v1/consortium/leave',
    {
      schema: {
        summary:
          'This node leaves the consortium (admin); anchored as node.left. Its records stay: erase or hand them over first',
      },
    },
    async (request) => vault.consortium.leave(member(request)),
  );
  app.post(
    '/v1/consortium/nodes/:id/removal',
    {
      schema: {
        summary:
          'This node votes to remove another joined node (admin); anchored as node.removal. Once more than half of the other joined nodes voted, it is removed: no node takes it as a peer',
        params: ID_PARAMS,
        response: {
          200: {
            type: 'object',
            properties: {
              receipt: { type: 'object', additionalProperties: true },
              state: NODE.properties.state,
              votes: { type: 'integer', description: 'votes of the other joined nodes counted so far' },
              needed: { type: 'integer', description: 'how many it takes: more than half of the other joined nodes' },
            },
          },
          ...STANDARD_ERRORS,
        },
      },
    },
    async (request) => vault.consortium.voteRemoval(member(request), idParam(request)),
  );
  app.get(
    '/v1/consortium/subject-key',
    {
      schema: {
        summary:
          "The consortium's subject key, sealed (age, armored) to the caller's own recipient (uploader, DPO, admin)",
        response: { 200: { type: 'object', properties: { sealed: { type: 'string' } } }, ...STANDARD_ERRORS },
      },
    },
    async (request) => vault.consortium.subjectKeyFor(member(request)),
  );
}
