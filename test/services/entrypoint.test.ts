/**
 * The container entrypoint (deploy/entrypoint.sh) as processes, since this
 * machine has no Docker: a founding node's first start makes its data
 * directory and serves, a restart serves the same node without making it
 * again, and a joining node's first start prints its join request, waits
 * for the invite, joins the consortium and serves. On a real etcd ledger.
 * With TLS files it serves HTTPS; with a PKCS#11 library and token (SoftHSM2)
 * the subjects' custodian keys live on the token.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { get as httpsGet } from 'node:https';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateMemberKeys, memberPublic, parseMemberKeyFile, VaultClient } from '../../services/sdk/client.ts';
import { bytes, CLI, ROOT, runCli, stopProcess, tempDir } from '../helpers.ts';
import { makeCa } from '../servers/certs.ts';
import { EtcdCluster } from '../servers/etcd.ts';
import { freePort } from '../servers/ports.ts';
import { freshToken } from '../servers/softhsm.ts';
import { treatment } from './vault-fixture.ts';

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
  await Promise.all([...running].map((p) => stopProcess(p)));
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
  await stopProcess(child);
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

  it('with MEDVAULT_PKCS11_LIBRARY, _TOKEN and _PIN_FILE the custodian keys live on that token (SoftHSM2)', async () => {
    const token = freshToken('medvault-entrypoint'); // SOFTHSM2_CONF, set here, reaches the children
    const pinFile = join(dir, 'pkcs11.pin');
    writeFileSync(pinFile, `${token.pin}\n`, { mode: 0o600 });
    const data = join(dir, 'hsm');
    const port = await freePort();
    const pkcs11 = {
      MEDVAULT_PKCS11_LIBRARY: token.library,
      MEDVAULT_PKCS11_TOKEN: token.token,
      MEDVAULT_PKCS11_PIN_FILE: pinFile,
    };
    const child = await start({ MEDVAULT_DATA: data, MEDVAULT_LEDGER: 'file:ledger.mvl', ...pkcs11 }, port);
    await healthy(port);
    const config = JSON.parse(readFileSync(join(data, 'medvault.json'), 'utf8'));
    expect(config.kms).toEqual({ backend: 'pkcs11', library: token.library, token: token.token });
    const url = `http://127.0.0.1:${port}`;
    const admin = new VaultClient(url, parseMemberKeyFile(readFileSync(join(data, 'admin.key'), 'utf8')));
    const [hospital, reader] = [generateMemberKeys(), generateMemberKeys()];
    await admin.addMember({ name: 'hospital', role: 'uploader', ...memberPublic(hospital) });
    const { member } = await admin.addMember({ name: 'reader', role: 'reader', ...memberPublic(reader) });
    const document = bytes(4_000, 33);
    const { record } = await new VaultClient(url, hospital).upload(document, treatment([member.id]));
    const out = join(dir, 'hsm-fetched');
    await new VaultClient(url, reader).fetch(record.id, { path: out });
    expect(readFileSync(out).equals(document)).toBe(true);
    expect(existsSync(join(data, 'custodians.pkcs11.json'))).toBe(true); // the token's wrapped custodian keys
    await stop(child);
    // Without its PIN the node does not start, and says why.
    const refused = await runCli(['serve', '--data', data, '--port', String(port)], {
      ...process.env,
      MEDVAULT_PKCS11_PIN_FILE: join(dir, 'no-such-pin'),
    });
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(
      /MEDVAULT_PKCS11_PIN_FILE.*INVALID_ARGUMENT|INVALID_ARGUMENT.*MEDVAULT_PKCS11_PIN_FILE/s,
    );
  }, 60_000);
});
