/**
 * A running vault node for tests: a fresh data directory (medvault init),
 * the HTTP API on 127.0.0.1 at a free port, an admin client, and a helper
 * that adds members with keys made here. One per suite.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { buildServer, type ServerOptions } from '../../services/http/server.ts';
import {
  generateMemberKeys,
  type MemberCredentials,
  memberKeyFileText,
  memberPublic,
  parseMemberKeyFile,
  VaultClient,
} from '../../services/sdk/client.ts';
import type { Role } from '../../services/vault/metadata.ts';
import { initNode, joinRequest, type NodeOverrides, openNode } from '../../services/vault/node.ts';
import type { Vault } from '../../services/vault/vault.ts';
import { tempDir } from '../helpers.ts';

export interface TestMember {
  name: string;
  id: string;
  keys: MemberCredentials;
  client: VaultClient;
  /** Path of its member key file (an age identity file too). */
  keyFile: string;
}

export interface TestNode {
  data: string;
  url: string;
  vault: Vault;
  app: FastifyInstance;
  admin: TestMember;
  addMember(name: string, role: Role): Promise<TestMember>;
  /** Stops the server and closes the vault (the data directory stays until the suite ends). */
  stop(): Promise<void>;
}

export const DAY = 86_400_000;
export const SUBJECT = 'a'.repeat(64);

/** The usual upload terms in tests: SUBJECT's record for `readers`, for treatment, for a day. */
export const treatment = (readers: string[]) => ({
  subject: SUBJECT,
  readers,
  purpose: 'treatment',
  expiresAt: Date.now() + DAY,
});

type NodeOptions = ServerOptions & {
  overrides?: NodeOverrides;
  dataDir?: string;
  /** On a ledger that already holds a consortium, without joining it (peers wired by hand). */
  unlisted?: boolean;
  /** The CA of the node's TLS certificate (overrides.tls), for its members' clients. */
  ca?: Buffer;
};

/** A node founding a consortium on its ledger (or, `unlisted`, beside one), serving. */
export async function startNode(options: NodeOptions = {}): Promise<TestNode> {
  const data = options.dataDir ?? tempDir('medvault-node-');
  const init = await initNode(data, { overrides: options.overrides, unlisted: options.unlisted === true });
  return serveNode(data, init, options);
}

/**
 * A node joining `founder`'s consortium as an operator would: its join request, an
 * invite made by the founder's admin, init --join; then serving, its URL announced.
 */
export async function joinNode(founder: TestNode, options: NodeOptions = {}): Promise<TestNode> {
  const data = options.dataDir ?? tempDir('medvault-node-');
  const request = await joinRequest(data);
  const { invite } = await founder.admin.client.invite(request);
  const init = await initNode(data, { overrides: options.overrides, join: invite });
  return serveNode(data, init, options);
}

/** The same node stopped and started again on its data directory (a new port; members' clients must follow). */
export async function restartNode(node: TestNode, options: NodeOptions = {}): Promise<TestNode> {
  await node.stop();
  return serveAgain(node, options);
}

/** A node stopped before (node.stop()) serving again on its data directory, on a new port. */
export function serveAgain(node: TestNode, options: NodeOptions = {}): Promise<TestNode> {
  return serveNode(node.data, { adminId: node.admin.id, adminKeyFile: node.admin.keyFile }, options);
}

async function serveNode(
  data: string,
  init: { adminId: string; adminKeyFile: string },
  options: NodeOptions,
): Promise<TestNode> {
  const vault = await openNode(data, options.overrides);
  const app = await buildServer(vault, { ...options, ...(vault.tls ? { tls: vault.tls } : {}) });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  const scheme = vault.tls ? 'https' : 'http';
  const url = `${scheme}://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  const clientOptions = options.ca ? { ca: options.ca } : {};
  await vault.consortium.reannounce(url); // as serve does: the port is only known now
  const adminKeys = parseMemberKeyFile(readFileSync(init.adminKeyFile, 'utf8'));
  const admin: TestMember = {
    name: 'admin',
    id: init.adminId,
    keys: adminKeys,
    client: new VaultClient(url, adminKeys, clientOptions),
    keyFile: init.adminKeyFile,
  };
  return {
    data,
    url,
    vault,
    app,
    admin,
    async addMember(name, role) {
      const keys = generateMemberKeys();
      const { member } = await admin.client.addMember({ name, role, ...memberPublic(keys) });
      const keyFile = join(data, `${name}.key`);
      const { writeFileSync } = await import('node:fs');
      writeFileSync(keyFile, memberKeyFileText(name, keys), { mode: 0o600 });
      return { name, id: member.id, keys, client: new VaultClient(url, keys, clientOptions), keyFile };
    },
    async stop() {
      await app.close();
      await vault.close();
    },
  };
}

/** The age file a member is served for a record (header then payload), whole. */
export async function served(member: TestMember, recordId: string): Promise<Buffer> {
  const { stream } = await member.client.fetchEncrypted(recordId);
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(Buffer.from(chunk));
  return Buffer.concat(parts);
}
