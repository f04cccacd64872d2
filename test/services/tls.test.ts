/**
 * TLS to and between nodes: members talk HTTPS to their node (a CA they are
 * given), nodes call each other over mutual TLS with the certificate the
 * ledger pins for each (node.joined `tls`), on the suite's real etcd ledger.
 * A peer presenting another certificate is not called; a forwarded request
 * without the forwarding node's own client certificate is refused.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Agent } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyCertificate } from '../../services/protocol/certificate.ts';
import { signRequest } from '../../services/protocol/signing.ts';
import { certFingerprint, type TlsIdentity } from '../../services/protocol/tls.ts';
import { VaultClient } from '../../services/sdk/client.ts';
import { subjectOf } from '../../services/sdk/pseudonym.ts';
import { bytes, CLI, medvault, runCli, stopProcess, tempDir } from '../helpers.ts';
import { makeCa, pem, type TestCa } from '../servers/certs.ts';
import { EtcdCluster } from '../servers/etcd.ts';
import { freePort } from '../servers/ports.ts';
import { DAY, joinNode, startNode, type TestMember, type TestNode } from './vault-fixture.ts';

let cluster: EtcdCluster;
let ca: TestCa;
let a: TestNode;
let b: TestNode;
let tlsA: TlsIdentity;
let tlsB: TlsIdentity;
let hospital: TestMember;
let readerB: TestMember;
let record: string;
const out = tempDir('medvault-tls-out-');

const identity = (name: string): TlsIdentity => {
  const files = ca.issue(name);
  return { cert: pem(files.cert), key: pem(files.key) };
};

beforeAll(async () => {
  cluster = await EtcdCluster.start(3);
  ca = makeCa();
  tlsA = identity('node-a');
  tlsB = identity('node-b');
  const caPem = pem(ca.cert);
  a = await startNode({ overrides: { ledger: `${cluster.uri}/tls-consortium`, tls: tlsA }, ca: caPem });
  b = await joinNode(a, { overrides: { tls: tlsB }, ca: caPem });
  hospital = await a.addMember('hospital', 'uploader');
  readerB = await b.addMember('reader-b', 'reader');
  await a.vault.peers.refresh();
  const subject = await subjectOf('MRN-777', { client: hospital.client });
  const readerAtA = (await hospital.client.members()).find((m) => m.signingKey === readerB.keys.signing.id);
  expect(readerAtA).toBeUndefined(); // by id below: the directory names another node's reader by its key id
  ({
    record: { id: record },
  } = await hospital.client.upload(bytes(300_000, 5), {
    subject,
    readers: [readerB.id],
    purpose: 'treatment',
    expiresAt: Date.now() + DAY,
  }));
}, 120_000);
afterAll(async () => {
  await b?.stop();
  await a?.stop();
  await cluster?.stop();
});

/**
 * Sends the same request to A with no client certificate and with one the CA issued to
 * another name (each must be refused 401 for the missing certificate), then with B's own:
 * that answer is returned.
 */
async function onlyWithB(send: (dispatcher: Agent) => Promise<Response>): Promise<Response> {
  const caPem = pem(ca.cert);
  const other = identity('not-node-b');
  for (const [name, dispatcher] of [
    ['no client certificate', new Agent({ connect: { ca: caPem } })],
    ["the CA's but not B's", new Agent({ connect: { ca: caPem, cert: other.cert, key: other.key } })],
  ] as const) {
    const answer = await send(dispatcher);
    expect(answer.status, name).toBe(401);
    expect(((await answer.json()) as { message: string }).message, name).toMatch(/TLS client certificate/);
    await dispatcher.close();
  }
  const own = new Agent({ connect: { ca: caPem, cert: tlsB.cert, key: tlsB.key } });
  const answer = await send(own);
  void own.close(); // closes once the answer has been read
  return answer;
}

describe('TLS', () => {
  it('members reach their node over HTTPS with its CA; without it, or over plain HTTP, nothing answers', async () => {
    expect(a.url).toMatch(/^https:/);
    await readerB.client.fetch(record, { path: join(out, 'via-b.bin') });
    expect(readFileSync(join(out, 'via-b.bin')).equals(Buffer.from(bytes(300_000, 5)))).toBe(true);
    const noCa = new VaultClient(a.url, hospital.keys);
    await expect(noCa.members()).rejects.toMatchObject({ code: 'NODE_UNAVAILABLE' });
    const plain = new VaultClient(a.url.replace('https:', 'http:'), hospital.keys);
    await expect(plain.members()).rejects.toMatchObject({ code: 'NODE_UNAVAILABLE' });
  });

  it('each node announces its certificate on the ledger, and peers pin it', async () => {
    const nodes = await a.admin.client.consortiumNodes();
    expect(nodes.map((n) => [n.id, n.url, n.tls])).toEqual([
      [a.vault.nodeId, a.url, certFingerprint(tlsA.cert)],
      [b.vault.nodeId, b.url, certFingerprint(tlsB.cert)],
    ]);
    expect(a.vault.peers.get(b.vault.nodeId)?.tls).toBe(certFingerprint(tlsB.cert));
    // An erasure across both nodes: the order and the cosignature go over mutual TLS.
    const dpo = await a.addMember('dpo', 'dpo');
    const target = await hospital.client.upload(bytes(1000, 9), {
      subject: await subjectOf('MRN-778', { client: hospital.client }),
      readers: [],
      purpose: 'treatment',
      expiresAt: Date.now() + DAY,
    });
    const certificate = await dpo.client.erase({ subject: target.record.subject });
    expect(verifyCertificate(certificate)).toMatchObject({ complete: true, missing: [] });
    expect(verifyCertificate(certificate).cosigners).toEqual([b.vault.nodeId]);
  });

  it('a peer presenting a certificate other than the pinned one is not called (nothing anchored)', async () => {
    const anchored = (await hospital.client.audit(record)).length;
    const pinned = b.vault.peers.get(a.vault.nodeId);
    b.vault.peers.set([{ ...(pinned as NonNullable<typeof pinned>), tls: certFingerprint(identity('impostor').cert) }]);
    try {
      await expect(readerB.client.fetch(record, { path: join(out, 'impostor.bin') })).rejects.toMatchObject({
        code: 'PEER_UNAVAILABLE',
      });
    } finally {
      b.vault.peers.set([]);
    }
    expect((await hospital.client.audit(record)).length).toBe(anchored);
    await readerB.client.fetch(record, { path: join(out, 'again.bin') }); // the pinned one again
  });

  it("a forwarded request without the forwarding node's own client certificate is refused", async () => {
    const path = `/v1/records/${record}/content`;
    const forwarded = () => {
      const headers = signRequest(readerB.keys.signing, 'GET', path, undefined);
      return {
        ...headers,
        'medvault-via': b.vault.nodeId,
        'medvault-via-signature': b.vault.signForward(readerB.id, headers['medvault-signature'] as string),
      };
    };
    // B's own certificate, the same request: served.
    const answer = await onlyWithB((dispatcher) =>
      fetch(`${a.url}${path}`, { headers: forwarded(), dispatcher } as RequestInit),
    );
    expect(answer.status).toBe(200);
    await answer.arrayBuffer();
  });

  it("a node-to-node call without its signing node's client certificate is refused before any work", async () => {
    // B's checkpoint, signed by B (and cosigned by A): B asks A to confirm it, as B's timer does.
    const checkpoint = await b.vault.checkpoints.create();
    const cosign = (dispatcher: Agent) =>
      fetch(`${a.url}/v1/checkpoints/cosign`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ checkpoint }),
        dispatcher,
      } as RequestInit);
    const answer = await onlyWithB(cosign);
    expect(answer.status).toBe(200);
    expect(((await answer.json()) as { signer: string }).signer).toBe(a.vault.nodeId);
  });
});

describe('TLS from the CLI', () => {
  it('init --tls-cert/--tls-key makes a node that serves HTTPS; member commands reach it with --ca', async () => {
    const dir = tempDir('medvault-tls-cli-');
    const files = ca.issue('cli-node');
    const data = join(dir, 'node');
    const port = await freePort();
    const made = medvault([
      'init',
      '--data',
      data,
      '--port',
      String(port),
      '--tls-cert',
      files.cert,
      '--tls-key',
      files.key,
    ]);
    expect(made.status, made.stderr.toString()).toBe(0);
    const serve = spawn(process.execPath, [CLI, 'serve', '--data', data]);
    try {
      const line = await new Promise<string>((resolve, reject) => {
        let text = '';
        serve.stdout.on('data', (c: Buffer) => {
          text += c.toString();
          if (text.includes('listening on')) resolve(text);
        });
        serve.on('exit', (code) => reject(new Error(`serve exited ${code}`)));
      });
      expect(line).toContain(`listening on https://127.0.0.1:${port}`);
      const url = `https://127.0.0.1:${port}`;
      const key = join(data, 'admin.key');
      const listed = await runCli(['member', 'list', '--node', url, '--key', key, '--ca', ca.cert, '--json']);
      expect(listed.code, listed.stderr).toBe(0);
      expect(JSON.parse(listed.stdout)).toHaveLength(1);
      const refused = await runCli(['member', 'list', '--node', url, '--key', key]);
      expect(refused.stderr).toMatch(/NODE_UNAVAILABLE/);
    } finally {
      await stopProcess(serve);
    }
  });
});
