/** The member directory: list, add and remove members. */
import type { FastifyInstance } from 'fastify';
import { SCHEMA } from '../../../formats.ts';
import type { KeyRotationInput } from '../../vault/key-rotation.ts';
import type { Vault } from '../../vault/vault.ts';
import { idParam, member, type RouteContext } from '../context.ts';
import { CREATED, ID, ID_PARAMS, MEMBER, ROLE, STANDARD_ERRORS } from '../schemas.ts';

const SIGNING_KEY = { type: 'string', pattern: '^[A-Za-z0-9+/]{43}=$' };
const RECIPIENT = { type: 'string', pattern: '^age1[02-9ac-hj-np-z]{58}$' };

export async function memberRoutes(app: FastifyInstance, { vault }: RouteContext): Promise<void> {
  app.get(
    '/v1/members',
    {
      schema: {
        summary: 'The member directory',
        response: {
          200: { type: 'object', properties: { members: { type: 'array', items: MEMBER } } },
          ...STANDARD_ERRORS,
        },
      },
    },
    async (request) => ({
      members: await vault.listMembers(member(request)),
    }),
  );
  app.post(
    '/v1/members',
    {
      schema: {
        summary: 'Add a member (admin); anchored as member.added',
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['name', 'role', 'signingKey', 'recipient'],
          properties: {
            name: SCHEMA.memberName,
            role: ROLE,
            signingKey: SIGNING_KEY,
            recipient: RECIPIENT,
            node: { ...ID, description: 'For a reader of another node: that node, which forwards its fetches' },
          },
        },
        response: { 201: CREATED },
      },
    },
    async (request, reply) => {
      const body = request.body as Parameters<Vault['addMember']>[1];
      return reply.code(201).send(await vault.addMember(member(request), body));
    },
  );
  for (const [method, granted] of [
    ['PUT', true],
    ['DELETE', false],
  ] as const) {
    app.route({
      method,
      url: '/v1/members/:id/emergency-access',
      schema: {
        summary: `${granted ? 'Give' : 'Withdraw'} break-glass access (admin; this node's uploaders and readers only); anchored as member.capability`,
        params: ID_PARAMS,
      },
      handler: async (request) => vault.setEmergencyAccess(member(request), idParam(request), granted),
    });
  }
  app.put(
    '/v1/members/:id/keys',
    {
      schema: {
        summary:
          "Replace a member's keys: the member itself, or an admin for any member of this node (a lost key); anchored as key.rotated. The id stays, the previous key signs nothing again, and every record granted to the member is rewrapped to the new recipient",
        params: ID_PARAMS,
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['signingKey', 'recipient', 'proof'],
          properties: {
            signingKey: SIGNING_KEY,
            recipient: RECIPIENT,
            proof: {
              type: 'string',
              pattern: '^[A-Za-z0-9+/]{86}==$',
              description:
                'base64 Ed25519 signature by the new signing key of "medvault-key-rotation-v1\\n" MEMBER-ID "\\n" SIGNING-KEY "\\n" RECIPIENT',
            },
          },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              member: MEMBER,
              receipt: { type: 'object', additionalProperties: true },
              rewrapped: { type: 'integer', description: 'records rewrapped to the new recipient' },
              rewrapsPending: {
                type: 'boolean',
                description: 'some headers are still to be rewrapped (the node finishes them)',
              },
            },
          },
          ...STANDARD_ERRORS,
        },
      },
    },
    async (request) => vault.rotations.rotate(member(request), idParam(request), request.body as KeyRotationInput),
  );
  app.delete(
    '/v1/members/:id',
    { schema: { summary: 'Remove a member (admin); anchored as member.removed', params: ID_PARAMS } },
    async (request) => vault.removeMember(member(request), idParam(request)),
  );
}
