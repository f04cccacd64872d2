/**
 * The vault on shared infrastructure: the ledger on a real 3-member etcd
 * cluster, the ciphertext replicated to the node's files, an S3 server and a
 * private IPFS node.
 * Then an outage: with the ledger down, an upload answers 503 and leaves no
 * blob in either store, and readiness says which part is down.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { Etcd3 } from 'etcd3';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Block, blockHash, buildBlock } from '../../anchor/block.ts';
import { verifyCheckpoint } from '../../anchor/checkpoint.ts';
import { EtcdLedger } from '../../anchor/etcd-ledger.ts';
import { verifyChain } from '../../anchor/ledger.ts';
import { SigningKey } from '../../crypto/ed25519.ts';
import { buildServer } from '../../services/http/server.ts';
import { verifyCertificate } from '../../services/protocol/certificate.ts';
import { forwardMessage, signRequest } from '../../services/protocol/signing.ts';
import { memberPublic, VaultClient } from '../../services/sdk/client.ts';
import { subjectOf } from '../../services/sdk/pseudonym.ts';
import { openNode } from '../../services/vault/node.ts';
import type { Vault } from '../../services/vault/vault.ts';
import { IpfsBlobStore } from '../../storage/ipfs-store.ts';
import { bytes, filesUnder, medvault, tempDir } from '../helpers.ts';
import { EtcdCluster } from '../servers/etcd.ts';
import { type IpfsTestNode, startIpfsNode } from '../servers/ipfs.ts';
import { freePort } from '../servers/ports.ts';
import { type S3TestServer, s3Options, startS3Server } from '../servers/s3.ts';
import { DAY, joinNode, SUBJECT, startNode, type TestMember, type TestNode } from './vault-fixture.ts';

let cluster: EtcdCluster;
let s3: S3TestServer;
let ipfs: IpfsTestNode;
let node: TestNode;
let hospital: TestMember;
let reader: TestMember;
let dpo: TestMember;
const local = tempDir('medvault-replica-');
const out = tempDir();

const s3Objects = () =>
  filesUnder(join(s3.directory, s3.bucket)).filter(
    (f) => f.endsWith('._S3rver_object') && !f.includes(`${s3.bucket}/tmp/`),
  );

/** The record's blob ref as the node stored it (rep:local=…,s3=…,ipfs=…). */
async function blobRefOf(recordId: string): Promise<string | null | undefined> {
  const { Metadata } = await import('../../services/vault/metadata.ts');
  const metadata = new Metadata(`${node.data}/metadata.db`);
  try {
    return metadata.record(recordId)?.blobRef;
  } finally {
    metadata.close();
  }
}

async function ipfsPins(): Promise<string[]> {
  const pins: string[] = [];
  for await (const ref of new IpfsBlobStore({ url: ipfs.api }).list()) pins.push(ref);
  return pins.sort();
}

/** An upload of `content` for SUBJECT, readable by `readers` for a day. */
const uploadFor = (uploader: TestMember, readers: string[], content: Uint8Array) =>
  uploader.client.upload(content, { subject: SUBJECT, readers, purpose: 'treatment', expiresAt: Date.now() + DAY });

/** A node's entry in another node's peer list. */
const asPeer = (n: TestNode) => ({ id: n.vault.nodeId, url: n.url, signingKey: n.vault.nodeKey });

/** Two nodes on the etcd ledger under `prefix`, each the other's peer; `forB`: more of B's settings. */
async function twoNodes(
  prefix: string,
  forB: { peerTimeoutSeconds?: number } = {},
): Promise<{ a: TestNode; b: TestNode; ledger: string }> {
  const ledger = `${cluster.uri}/${prefix}`;
  const a = await startNode({ overrides: { ledger } });
  const b = await startNode({ overrides: { ledger, ...forB }, unlisted: true }); // wired by hand, below
  a.vault.peers.set([asPeer(b)]);
  b.vault.peers.set([asPeer(a)]);
  return { a, b, ledger };
}

beforeAll(async () => {
  cluster = await EtcdCluster.start(3);
  s3 = await startS3Server();
  ipfs = await startIpfsNode();
  node = await startNode({
    overrides: {
      ledger: `etcd://${cluster.members.map((m) => m.clientUrl.replace('http://', '')).join(',')}/vault-test`,
      store: {
        kind: 'replicated',
        replicas: [
          { name: 'local', config: { kind: 'fs', root: local } },
          { name: 's3', config: { kind: 's3', ...s3Options(s3) } },
          { name: 'ipfs', config: { kind: 'ipfs', url: ipfs.api } },
        ],
      },
    },
  });
  hospital = await node.addMember('hospital', 'uploader');
  reader = await node.addMember('reader', 'reader');
  dpo = await node.addMember('dpo', 'dpo');
}, 120_000);
afterAll(async () => {
  await node?.stop();
  await s3?.stop();
  await ipfs?.stop();
  await cluster?.stop();
});

describe('a node pointed at another ledger', () => {
  it("refuses to start: block 0 is not the one it was made on, nor its records' blocks there", async () => {
    const made = await startNode({ overrides: { ledger: `${cluster.uri}/ledger-one` } });
    await made.addMember('someone', 'reader'); // anchored: this node now relies on that block
    await made.stop();
    const other = await startNode({ overrides: { ledger: `${cluster.uri}/ledger-three` } }); // a ledger with blocks
    await other.stop();
    for (const prefix of ['ledger-two', 'ledger-three']) {
      const err = await openNode(made.data, { ledger: `${cluster.uri}/${prefix}` }).catch((e) => e);
      expect(err, prefix).toMatchObject({ code: 'LEDGER_MISMATCH' });
    }
    // A node made before init recorded the genesis: its records' heights still give it away.
    const path = join(made.data, 'medvault.json');
    const { ledgerGenesis: _g, ...legacy } = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    writeFileSync(path, JSON.stringify(legacy));
    const err = await openNode(made.data, { ledger: `${cluster.uri}/ledger-two` }).catch((e) => e);
    expect(err).toMatchObject({ code: 'LEDGER_CORRUPT' });
    expect(err.message).toMatch(/not the ledger the node was made on/);
    const again = await openNode(made.data, { ledger: `${cluster.uri}/ledger-one` });
    await again.close();
  });
});

describe('a consortium: an erasure filed at one node reaches every node', () => {
  /**
   * Three nodes on the etcd ledger under `prefix`, each with its own fs store: the first
   * founds the consortium, the others join it by invite; each learns its peers from the ledger.
   */
  async function threeNodes(prefix: string) {
    const ledger = `${cluster.uri}/${prefix}`;
    const founder = await startNode({ overrides: { ledger } });
    const nodes = [founder, await joinNode(founder), await joinNode(founder)];
    return { nodes: nodes as [TestNode, TestNode, TestNode], ledger };
  }

  /**
   * At each node: an uploader, a reader, a DPO, and one record of the patient readable by that
   * reader; the patient's identifier is pseudonymised on each uploader's side with the subject
   * key its own node sealed to it.
   */
  async function patientEverywhere(nodes: readonly TestNode[], patient: string, tag: string) {
    const out = [];
    for (const [i, n] of nodes.entries()) {
      const uploader = await n.addMember(`hospital-${tag}-${i}`, 'uploader');
      const reader = await n.addMember(`reader-${tag}-${i}`, 'reader');
      const officer = await n.addMember(`dpo-${tag}-${i}`, 'dpo');
      const subject = await subjectOf(patient, { client: uploader.client });
      const { record } = await uploader.client.upload(bytes(4000 + i, 40 + i), {
        subject,
        readers: [reader.id],
        purpose: 'treatment',
        expiresAt: Date.now() + DAY,
      });
      out.push({ node: n, uploader, reader, officer, record: record.id, subject });
    }
    return out;
  }

  it('every node erases its own records and key, the certificate lists them all and completes; nothing links back', async () => {
    const { nodes } = await threeNodes('erase-everywhere');
    try {
      const at = await patientEverywhere(nodes, 'MRN-555', 'x');
      const [a, b, c] = at as [(typeof at)[0], (typeof at)[0], (typeof at)[0]];
      // One consortium, one subject: every node's uploader derived the same pseudonym.
      const subject = await subjectOf('MRN-555', { client: a.officer.client });
      expect(at.map((x) => x.subject)).toEqual([subject, subject, subject]);
      const certificate = await a.officer.client.erase({ subject });
      const ids = nodes.map((n) => n.vault.nodeId);
      const verified = verifyCertificate(certificate, { trusted: ids, cosigners: ids.slice(1) });
      expect(verified).toMatchObject({ complete: true, missing: [], records: 3 });
      expect(verified.nodes.map((n) => [n.node, n.records, n.keyDestroyed])).toEqual(ids.map((id) => [id, 1, true]));
      expect(verified.cosigners.sort()).toEqual(ids.slice(1).sort());
      // Every node's record is gone, fetched through its own node.
      for (const x of [a, b, c]) {
        await expect(x.reader.client.fetch(x.record, { path: join(out, 'gone') })).rejects.toMatchObject({
          code: 'RECORD_ERASED',
        });
      }
      // Each node's own sweep finds nothing; no node keeps the pseudonym in any file (raw scan).
      expect((await a.officer.client.sweep(certificate.requestId)).findings).toEqual([]);
      for (const x of [b, c]) expect((await x.officer.client.sweep(certificate.requestId)).findings).toEqual([]);
      for (const n of nodes) {
        for (const file of filesUnder(n.data)) {
          expect(readFileSync(file).indexOf(Buffer.from(subject, 'latin1')), file).toBe(-1);
        }
      }
      expect(JSON.stringify(certificate)).not.toContain(subject);
      // A cosignature means "I erased my part": a node that had not is refused (checked at B).
      const forged = { ...certificate, requestId: '9'.repeat(32) };
      expect(() => verifyCertificate(forged)).toThrow();
    } finally {
      for (const n of nodes) await n.stop();
    }
  }, 90_000);

  it('with a node down the certificate says incomplete and names it; the node erases once back, and it completes', async () => {
    const { nodes, ledger } = await threeNodes('erase-while-down');
    const [a, b, c] = nodes;
    let restarted: { app: FastifyInstance; vault: Vault; url: string } | null = null;
    try {
      const subject = '8'.repeat(64);
      const at = await patientEverywhere(nodes, subject, 'y');
      const cRecord = at[2]?.record as string;
      const cReader = at[2]?.reader as TestMember;
      await c.stop(); // C is down when A erases
      const first = await (at[0] as (typeof at)[0]).officer.client.erase({ subject });
      const verified = verifyCertificate(first);
      expect(verified.complete).toBe(false);
      expect(verified.missing).toEqual([c.vault.nodeId]);
      expect(verified.nodes.map((n) => n.node)).toEqual([a.vault.nodeId, b.vault.nodeId]);
      // C comes back (another port), still holding its record until A asks again.
      const vault = await openNode(c.data, { ledger });
      const app = await buildServer(vault);
      await app.listen({ host: '127.0.0.1', port: 0 });
      const address = app.server.address();
      const url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
      restarted = { app, vault, url };
      await vault.consortium.reannounce(url); // as serve does: A learns C's new address from the ledger
      const readerAtC = new VaultClient(url, cReader.keys);
      expect((await readerAtC.record(cRecord)).state).toBe('active');
      // A cosignature says "I erased my part": C, which has not yet, refuses to give one.
      const asked = await fetch(`${url}/v1/cosign`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ certificate: first }),
      });
      expect(asked.status).toBe(409);
      expect(((await asked.json()) as { code: string }).code).toBe('COSIGN_REFUSED');
      const completed = await (at[0] as (typeof at)[0]).officer.client.completeErasure(first.requestId);
      const now = verifyCertificate(completed);
      expect(now).toMatchObject({ complete: true, missing: [], records: 3 });
      await expect(readerAtC.fetch(cRecord, { path: join(out, 'gone-c') })).rejects.toMatchObject({
        code: 'RECORD_ERASED',
      });
      for (const file of filesUnder(a.data)) {
        expect(readFileSync(file).indexOf(Buffer.from(subject, 'latin1')), file).toBe(-1);
      }
    } finally {
      await a.stop();
      await b.stop();
      if (restarted) {
        await restarted.app.close();
        await restarted.vault.close();
      }
    }
  }, 90_000);
});

describe('a consortium: a reader fetches through its own node from the node holding the record', () => {
  it('node B forwards its reader’s fetch to node A (the ledger says A holds it); A checks the grant, B’s signature and the reader’s own', async () => {
    const { a, b } = await twoNodes('forward-test');
    try {
      const peerA = asPeer(a);
      const aHospital = await a.addMember('hospital-a', 'uploader');
      const bReader = await b.addMember('reader-b', 'reader');
      const bStranger = await b.addMember('stranger-b', 'reader');
      // A knows B's readers by their public keys only, as members of node B.
      for (const m of [bReader, bStranger]) {
        const { member } = await a.admin.client.addMember({
          name: m.name,
          role: 'reader',
          ...memberPublic(m.keys),
          node: b.vault.nodeId,
        });
        expect(member.node).toBe(b.vault.nodeId);
      }
      await expect(
        a.admin.client.addMember({ name: 'x', role: 'uploader', ...memberPublic(bReader.keys), node: b.vault.nodeId }),
      ).rejects.toMatchObject({ code: 'REQUEST_INVALID' });
      const content = bytes(200_000, 9);
      const { record } = await uploadFor(aHospital, [bReader.id], content);

      // The reader asks its own node, which holds nothing of the record: B forwards to A.
      const path = join(out, 'forwarded.bin');
      const fetched = await bReader.client.fetch(record.id, { path });
      expect(readFileSync(path)).toEqual(Buffer.from(content));
      expect(fetched.access.block.signer).toBe(a.vault.nodeId); // A anchored the access
      expect(fetched.access.event).toMatchObject({ type: 'record.accessed', reader: bReader.id, node: a.vault.nodeId });
      expect((await bReader.client.record(record.id)).ciphertextHash).toBe(record.ciphertextHash);
      const trail = await aHospital.client.audit(record.id);
      expect(trail.map((r) => r.event.type)).toContain('record.accessed');

      // B's other reader has no grant at A: refused there, and the refusal comes back through B.
      await expect(bStranger.client.fetch(record.id, { path: join(out, 'stranger.bin') })).rejects.toMatchObject({
        code: 'NO_GRANT',
      });
      // Break-glass is for the holding node's own members: B's reader, even one B's admin gave
      // break-glass at B, is refused at A through B, and A anchors nothing and queues nothing.
      const aDpo = await a.addMember('dpo-a', 'dpo');
      await b.admin.client.setEmergencyAccess(bStranger.id, true);
      const headBefore = await a.vault.ledger.head();
      await expect(
        bStranger.client.emergency(record.id, 'unconscious patient in our ER, allergies unknown', {
          path: join(out, 'urgent.bin'),
        }),
      ).rejects.toMatchObject({ code: 'FORBIDDEN' });
      expect(await a.vault.ledger.head()).toEqual(headBefore);
      expect(await aDpo.client.reviews()).toEqual([]);
      // A member of B cannot go to A directly...
      const direct = new VaultClient(a.url, bReader.keys);
      await expect(direct.fetch(record.id, { path: join(out, 'direct.bin') })).rejects.toMatchObject({
        code: 'AUTH_INVALID',
      });
      // ...nor with a forwarding signature by a key that is not B's.
      const contentPath = `/v1/records/${record.id}/content`;
      const readerHeaders = signRequest(bReader.keys.signing, 'GET', contentPath, undefined);
      const rogue = SigningKey.generate();
      const forged = await fetch(`${a.url}${contentPath}`, {
        headers: {
          ...readerHeaders,
          'medvault-via': b.vault.nodeId,
          'medvault-via-signature': Buffer.from(
            rogue.sign(forwardMessage(b.vault.nodeId, bReader.id, readerHeaders['medvault-signature'] as string)),
          ).toString('base64'),
        },
      });
      expect(forged.status).toBe(401);
      expect(((await forged.json()) as { code: string }).code).toBe('AUTH_INVALID');

      // A record the ledger does not know is not forwarded anywhere; one held by a node B has
      // no address for is a clear 502.
      await expect(bReader.client.record('f'.repeat(32))).rejects.toMatchObject({ code: 'RECORD_NOT_FOUND' });
      const anchored = (await aHospital.client.audit(record.id)).length;
      b.vault.peers.set([]);
      b.vault.peers.setAnnounced([]); // (A founded the ledger's consortium: B knows it from there too)
      await expect(bReader.client.fetch(record.id, { path: join(out, 'nowhere.bin') })).rejects.toMatchObject({
        code: 'PEER_UNKNOWN',
      });
      // A peer that is down: 503, and nothing is anchored for it.
      b.vault.peers.set([{ ...peerA, url: `http://127.0.0.1:${await freePort()}` }]);
      await expect(bReader.client.fetch(record.id, { path: join(out, 'down.bin') })).rejects.toMatchObject({
        code: 'PEER_UNAVAILABLE',
      });
      expect((await aHospital.client.audit(record.id)).length).toBe(anchored);
    } finally {
      await a.stop();
      await b.stop();
    }
  }, 60_000);
});

/**
 * A TCP relay to `port` whose answers trickle, 64 KiB every 30 ms (~2 MB/s); `pauseAfter`
 * makes each new connection's answers stop once, for `ms`, after `after` bytes.
 */
async function trickleRelay(port: number) {
  const pause = { after: Number.POSITIVE_INFINITY, ms: 0 };
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    sockets.add(client);
    const upstream = connect(port, '127.0.0.1');
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => {
      upstream.destroy();
      sockets.delete(client);
    });
    let sent = 0;
    let paused = false;
    const trickle = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        (async () => {
          for (let at = 0; at < chunk.length; at += 65_536) {
            if (!paused && sent >= pause.after) {
              paused = true;
              await sleep(pause.ms);
            }
            const slice = chunk.subarray(at, at + 65_536);
            this.push(slice);
            sent += slice.length;
            await sleep(30);
          }
        })().then(() => done(), done);
      },
    });
    client.pipe(upstream);
    upstream.pipe(trickle).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return {
    url: `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`,
    /** For new connections (open ones are closed: the next request opens one). */
    async pauseAfter(after: number, ms: number) {
      Object.assign(pause, { after, ms });
      for (const s of sockets) s.destroy();
      await sleep(50);
    },
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

describe('a consortium: a forwarded fetch of a large record over a slow way between nodes', () => {
  it('is relayed whole however long it takes while it keeps coming (past the peer timeout); a pause longer than the timeout cuts it, leaving the reader nothing', async () => {
    const { a, b } = await twoNodes('forward-slow', { peerTimeoutSeconds: 1 });
    const relay = await trickleRelay(Number(new URL(a.url).port));
    try {
      const aHospital = await a.addMember('hospital-a', 'uploader');
      const bReader = await b.addMember('reader-b', 'reader');
      await a.admin.client.addMember({
        name: bReader.name,
        role: 'reader',
        ...memberPublic(bReader.keys),
        node: b.vault.nodeId,
      });
      const content = bytes(3_000_000, 5);
      const { record } = await uploadFor(aHospital, [bReader.id], content);
      b.vault.peers.set([{ ...asPeer(a), url: relay.url }]); // B reaches A through the relay
      const started = Date.now();
      const path = join(out, 'trickled.bin');
      await bReader.client.fetch(record.id, { path });
      expect(Date.now() - started).toBeGreaterThan(1_200); // longer than B's peer timeout, in all
      expect(readFileSync(path)).toEqual(Buffer.from(content));
      // The same fetch, with A's answer stopping for 2.5 s after its first MB: B gives up on A
      // after its 1 s, and the reader's fetch is cut, with no file, whole or partial.
      await relay.pauseAfter(1_000_000, 2_500);
      const stalled = join(out, 'stalled.bin');
      const err = await bReader.client.fetch(record.id, { path: stalled }).catch((e) => e);
      expect(err).toMatchObject({ code: 'NODE_UNAVAILABLE' });
      expect(existsSync(stalled)).toBe(false);
    } finally {
      await relay.close();
      await a.stop();
      await b.stop();
    }
  }, 60_000);

  it('a peer timeout that is not 1 to 3600 whole seconds refuses the start', async () => {
    for (const peerTimeoutSeconds of [0, 1.5, 3601]) {
      await expect(startNode({ overrides: { peerTimeoutSeconds } }), String(peerTimeoutSeconds)).rejects.toMatchObject({
        code: 'INVALID_ARGUMENT',
        message: /peerTimeoutSeconds/,
      });
    }
  });
});

describe('a consortium: the member directory on the ledger', () => {
  it("node A learns node B's readers from the ledger: A's uploader names one, who fetches through B; B's removal reaches A", async () => {
    const { a, b } = await twoNodes('directory-test');
    try {
      const aHospital = await a.addMember('hospital-a', 'uploader');
      const bReader = await b.addMember('reader-b', 'reader');
      await b.addMember('uploader-b', 'uploader'); // only readers are published: no other role is of use elsewhere
      // No one registers B's reader at A: A reads it from B's member.added (public keys, no name).
      const directory = await aHospital.client.members();
      const row = directory.find((m) => m.id === bReader.id);
      expect(row).toMatchObject({ role: 'reader', node: b.vault.nodeId, name: `${bReader.id}@${b.vault.nodeId}` });
      expect(row?.recipient).toBe(memberPublic(bReader.keys).recipient);
      expect(directory.filter((m) => m.node === b.vault.nodeId)).toHaveLength(1);
      expect(JSON.stringify(directory)).not.toContain('reader-b'); // its name never left B

      const content = bytes(150_000, 11);
      const { record } = await uploadFor(aHospital, [bReader.id], content);
      const path = join(out, 'directory.bin');
      const fetched = await bReader.client.fetch(record.id, { path });
      expect(readFileSync(path)).toEqual(Buffer.from(content));
      expect(fetched.access.block.signer).toBe(a.vault.nodeId);

      // B removes its reader: A's directory says so at its next read, and an upload naming it is refused.
      await b.admin.client.removeMember(bReader.id);
      const after = (await aHospital.client.members()).find((m) => m.id === bReader.id);
      expect(after?.removedAt).toEqual(expect.any(Number));
      await expect(uploadFor(aHospital, [bReader.id], bytes(1000, 12))).rejects.toMatchObject({
        code: 'MEMBER_NOT_FOUND',
      });
      // ...and its fetches stop at its own node.
      await expect(bReader.client.fetch(record.id, { path: join(out, 'removed.bin') })).rejects.toMatchObject({
        code: 'AUTH_INVALID',
      });
    } finally {
      await a.stop();
      await b.stop();
    }
  }, 60_000);

  it("a reader B publishes after A last read the ledger is learnt when B forwards that reader's first request", async () => {
    const { a, b } = await twoNodes('directory-late-test');
    try {
      const aHospital = await a.addMember('hospital-a', 'uploader');
      const early = await b.addMember('reader-early', 'reader');
      const { record } = await uploadFor(aHospital, [early.id], bytes(2000, 13));
      const late = await b.addMember('reader-late', 'reader'); // A has not read this block
      // Through B, the late reader reaches A, which reads the ledger, knows the member, and answers
      // with what that member may see: no grant.
      await expect(late.client.fetch(record.id, { path: join(out, 'late.bin') })).rejects.toMatchObject({
        code: 'NO_GRANT',
      });
      await aHospital.client.grant(record.id, late.id, { purpose: 'treatment', expiresAt: Date.now() + DAY });
      await late.client.fetch(record.id, { path: join(out, 'late.bin') });
      expect(readFileSync(join(out, 'late.bin'))).toEqual(Buffer.from(bytes(2000, 13)));
    } finally {
      await a.stop();
      await b.stop();
    }
  }, 60_000);
});

describe('a consortium: ledger checkpoints cosigned by every node', () => {
  it('both nodes sign; after history is rewritten consistently in etcd, neither signs or appends again and a saved checkpoint exposes it', async () => {
    const { a, b, ledger } = await twoNodes('checkpoint-test');
    const etcd = new Etcd3({ hosts: cluster.hosts });
    const shared = new EtcdLedger({ hosts: cluster.hosts, prefix: 'checkpoint-test' });
    try {
      const nodes = [a.vault.nodeId, b.vault.nodeId];
      const aHospital = await a.addMember('hospital-a', 'uploader');
      const upload = () => uploadFor(aHospital, [], bytes(3000, 2));
      await upload();
      const first = await a.admin.client.checkpoint();
      expect(verifyCheckpoint(first, { trusted: nodes, quorum: 2 }).signers).toEqual(nodes);
      await upload();
      const bDpo = await b.addMember('dpo-b', 'dpo');
      const second = await bDpo.client.checkpoint(); // B's, cosigned by A
      expect(second.height).toBeGreaterThan(first.height);
      expect(verifyCheckpoint(second, { trusted: nodes, quorum: 2 }).signers).toEqual([nodes[1], nodes[0]]);
      expect((await a.admin.client.latestCheckpoint()).height).toBe(second.height);
      const saved = join(out, 'checkpoint.json');
      writeFileSync(saved, JSON.stringify(first));
      const before = medvault(['verify', saved, '--ledger', ledger]);
      expect(before.stdout.toString()).toMatch(/checkpoint OK: block \d+ .*the ledger still holds that block/);

      // Someone with write access to etcd rewrites history from block 1 up, consistently: every
      // block re-linked and re-signed (by a key of their own), so the chain itself still verifies.
      const blocks: Block[] = [];
      for await (const block of shared.blocks(0)) blocks.push(block);
      const rogue = SigningKey.generate();
      let previous = (blocks[0] as Block).header;
      for (const block of blocks.slice(1)) {
        const events = block.header.height === 1 ? block.events.slice(1) : block.events; // an event dropped
        const forged = buildBlock(previous, events.length ? events : block.events, rogue, {
          time: block.header.time,
        }).block;
        await etcd
          .put(`checkpoint-test/blocks/${String(forged.header.height).padStart(16, '0')}`)
          .value(JSON.stringify(forged));
        previous = forged.header;
      }
      await etcd
        .put('checkpoint-test/head')
        .value(JSON.stringify({ height: previous.height, hash: blockHash(previous) }));
      expect((await verifyChain(shared)).blocks).toBe(blocks.length); // links, roots and signatures all check out

      await expect(a.admin.client.checkpoint()).rejects.toMatchObject({ code: 'LEDGER_REWRITTEN' });
      await expect(bDpo.client.checkpoint()).rejects.toMatchObject({ code: 'LEDGER_REWRITTEN' });
      await expect(b.vault.checkpoints.cosign(first)).rejects.toMatchObject({ code: 'LEDGER_REWRITTEN' });
      // Nor will a node append on top of the rewritten history: the upload fails and leaves no record.
      const headBefore = await shared.head();
      await expect(upload()).rejects.toMatchObject({ code: 'LEDGER_REWRITTEN' });
      expect(await shared.head()).toEqual(headBefore);
      const after = medvault(['verify', saved, '--ledger', ledger]);
      expect(after.status).toBe(1);
      expect(after.stderr.toString()).toMatch(/LEDGER_REWRITTEN/);
    } finally {
      etcd.close();
      await shared.close();
      await a.stop();
      await b.stop();
    }
  }, 60_000);
});

describe('etcd ledger and replicated fs + S3 + IPFS store', () => {
  it('upload, fetch, erase: all three copies written, all deleted, each confirmed in the certificate', async () => {
    expect((await reader.client.node()).ledger).toBe('etcd');
    const document = bytes(9 * 1024 * 1024 + 5, 8); // over one S3 part
    const { record } = await uploadFor(hospital, [reader.id], document);
    expect(filesUnder(local).some((f) => f.endsWith(record.ciphertextHash))).toBe(true);
    expect(s3Objects().length).toBeGreaterThan(0);
    const ipfsRef = /ipfs=([^,]+)/.exec(String(await blobRefOf(record.id)))?.[1];
    expect(await ipfsPins()).toContain(ipfsRef);
    const fetched = await reader.client.fetch(record.id, { path: join(out, 'doc') });
    expect(fetched.bytes).toBe(document.length);
    const certificate = await dpo.client.erase({ recordId: record.id });
    const [erased] = certificate.records;
    expect(erased?.stores.every((s) => s.removed)).toBe(true);
    const confirmed = erased?.stores.map((s) => s.confirmed).join(' ') ?? '';
    for (const replica of ['local', 's3', 'ipfs']) expect(confirmed).toContain(replica);
    expect(confirmed).toMatch(/none of its \d+ blocks left/);
    expect(certificate.kms).toBeNull(); // record scope: the subject keeps its custodian key
    expect(filesUnder(local).some((f) => f.endsWith(record.ciphertextHash))).toBe(false);
    expect(s3Objects()).toEqual([]);
    expect(await ipfsPins()).not.toContain(ipfsRef);
    expect((await dpo.client.sweep(certificate.requestId)).findings).toEqual([]);
  });

  it('with the ledger down an upload answers 503 and leaves no blob in any store', async () => {
    for (const member of cluster.members) member.process?.kill('SIGSTOP');
    try {
      const state = async () => ({ local: filesUnder(local), s3: s3Objects(), ipfs: await ipfsPins() });
      const before = await state();
      await expect(uploadFor(hospital, [reader.id], bytes(300_000, 2))).rejects.toMatchObject({
        code: 'LEDGER_UNAVAILABLE',
        info: { status: 503 },
      });
      expect(await state()).toEqual(before);
      // The member directory still answers, with what the node already knew.
      expect((await hospital.client.members()).map((m) => m.id)).toContain(reader.id);
      const ready = await fetch(`${node.url}/readyz`);
      expect(ready.status).toBe(503);
      expect(((await ready.json()) as { checks: Record<string, string> }).checks).toMatchObject({
        ledger: expect.stringMatching(/^(LEDGER_UNAVAILABLE|TIMEOUT)$/),
        store: 'ok',
      });
    } finally {
      for (const member of cluster.members) member.process?.kill('SIGCONT');
    }
  }, 60_000);
});
