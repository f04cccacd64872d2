/**
 * The container entrypoint (deploy/entrypoint.sh) as processes, since this
 * machine has no Docker: a founding node's first start makes its data
 * directory and serves, a restart serves the same node without making it
 * again, and a joining node's first start prints its join request, waits
 * for the invite, joins the consortium and serves. On a real etcd ledger.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { get as httpsGet } from 'node:https';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseMemberKeyFile, VaultClient } from '../../services/sdk/client.ts';
import { CLI, ROOT, tempDir } from '../helpers.ts';
import { makeCa } from '../servers/certs.ts';
import { EtcdCluster } from '../servers/etcd.ts';
import { freePort } from '../servers/ports.ts';

let cluster: EtcdCluster;
const dir = tempDir('medvault-entrypoint-');
const running = new Set<ChildProcess>();

beforeAll(async () => {
  cluster = await EtcdCluster.start(1);
  // `medvault` on PATH, as the image links it.
  writeFileSync(join(dir, 'medvault'), `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`);
  chmodSync(join(dir, 'medvault'), 0o755);
}, 60_000);
afterAll(async () => {
  for (const p of running) p.kill('SIGTERM');
  await cluster?.stop();
});

/** Starts the entrypoint with `env`; resolves once the node answers /healthz at `port`. */
async function start(env: Record<string, string>, port: number, stderr: string[] = []): Promise<ChildProcess> {
  const child = spawn('sh', [join(ROOT, 'deploy/entrypoint.sh')], {
    env: {
      ...process.env,
      PATH: `${dir}:${process.env.PATH}`,
      MEDVAULT_HOST: '127.0.0.1',
      MEDVAULT_PORT: String(port),
      MEDVAULT_LEDGER: `${cluster.uri}/entrypoint`,
      MEDVAULT_LOG_LEVEL: 'warn',
      ...env,
    },
  });
  running.add(child);
  child.stderr?.on('data', (c: Buffer) => stderr.push(c.toString()));
  return child;
}

async function healthy(port: number): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (
      await fetch(`http://127.0.0.1:${port}/healthz`).then(
        (r) => r.ok,
        () => false,
      )
    )
      return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no node at ${port}`);
}

async function stop(child: ChildProcess): Promise<void> {
  await new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
  running.delete(child);
}

describe('the container entrypoint', () => {
  it('founds on first start, only serves on restart, and a second node joins by invite', async () => {
    const a = join(dir, 'a');
    const portA = await freePort();
    const first = await start({ MEDVAULT_DATA: a, MEDVAULT_NODE_NAME: 'hospital-a' }, portA);
    await healthy(portA);
    const admin = new VaultClient(
      `http://127.0.0.1:${portA}`,
      parseMemberKeyFile(readFileSync(join(a, 'admin.key'), 'utf8')),
    );
    const nodeId = (await admin.node()).id;
    await stop(first);
    const config = readFileSync(join(a, 'medvault.json'), 'utf8');
    const restarted = await start({ MEDVAULT_DATA: a }, portA);
    await healthy(portA);
    expect((await admin.node()).id).toBe(nodeId); // the same node, not made again
    expect(readFileSync(join(a, 'medvault.json'), 'utf8')).toBe(config);

    // A joining node: its first start prints the request and waits for the invite.
    const b = join(dir, 'b');
    const invite = join(dir, 'b.invite');
    const portB = await freePort();
    const said: string[] = [];
    await start({ MEDVAULT_DATA: b, MEDVAULT_JOIN: invite, MEDVAULT_URL: `http://127.0.0.1:${portB}` }, portB, said);
    for (let i = 0; i < 300 && !said.join('').includes('"signingKey"'); i++)
      await new Promise((r) => setTimeout(r, 100));
    expect(said.join('')).toContain(`waiting for the invite at ${invite}`);
    const request = JSON.parse(readFileSync(join(b, 'join-request.json'), 'utf8'));
    writeFileSync(invite, (await admin.invite(request)).invite);
    await healthy(portB);
    const nodes = await admin.consortiumNodes();
    expect(nodes.map((n) => [n.state, n.url])).toEqual([
      ['joined', `http://127.0.0.1:${portA}`],
      ['joined', `http://127.0.0.1:${portB}`],
    ]);
    await stop(restarted);
  }, 90_000);

  it('with MEDVAULT_TLS_CERT and MEDVAULT_TLS_KEY (as docker-compose.yml sets them) the node serves HTTPS with them', async () => {
    const ca = makeCa();
    const { cert, key } = ca.issue('hospital-tls');
    const data = join(dir, 'tls');
    const port = await freePort();
    const child = await start(
      { MEDVAULT_DATA: data, MEDVAULT_TLS_CERT: cert, MEDVAULT_TLS_KEY: key, MEDVAULT_LEDGER: `${cluster.uri}/tls` },
      port,
    );
    const served = await new Promise<string>((resolve, reject) => {
      const attempt = (left: number) => {
        const request = httpsGet(`https://127.0.0.1:${port}/healthz`, { ca: readFileSync(ca.cert) }, (res) => {
          res.resume();
          resolve(
            createHash('sha256')
              .update((res.socket as TLSSocket).getPeerCertificate().raw)
              .digest('hex'),
          );
        });
        request.on('error', (err) => (left > 0 ? setTimeout(() => attempt(left - 1), 100) : reject(err)));
      };
      attempt(300);
    });
    const der = new X509Certificate(readFileSync(cert)).raw;
    expect(served).toBe(createHash('sha256').update(der).digest('hex'));
    expect(JSON.parse(readFileSync(join(data, 'medvault.json'), 'utf8')).tls).toBeDefined();
    await stop(child);
  }, 60_000);
});
