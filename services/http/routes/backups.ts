/** Backups of the node (admin): take one, list the backup keys (services/vault/backup.ts). */
import type { FastifyInstance } from 'fastify';
import { fail } from '../../../errors.ts';
import { authorize } from '../../vault/policy.ts';
import { member, type RouteContext } from '../context.ts';
import { CREATED } from '../schemas.ts';

export async function backupRoutes(app: FastifyInstance, { vault }: RouteContext): Promise<void> {
  const backups = () => vault.backups ?? fail('REQUEST_INVALID', 'this node has no data directory to back up');
  app.post(
    '/v1/backups',
    {
      schema: {
        summary:
          'Take a backup of the node (admin) into its backup directory: its secrets and database age-encrypted to the current backup key',
        response: { 201: CREATED },
      },
    },
    async (request, reply) => reply.code(201).send(await backups().create(member(request))),
  );
  app.get(
    '/v1/backups/keys',
    { schema: { summary: 'The backup keys the node keeps, with when each is destroyed (admin)' } },
    async (request) => {
      authorize(member(request), 'backup');
      return { keys: backups().keys(), directory: backups().directory };
    },
  );
}
