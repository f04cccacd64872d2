/**
 * Standing up a consortium on the suite's real 3-member etcd ledger: found,
 * request, invite, join. One subject key for every node (handed over sealed,
 * kept in each keystore, sealed again to each uploader), peers taken from the
 * ledger, and every way an invite can be wrong refused, leaving the joining
 * node's request as it was.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decrypt } from '../../crypto/age.ts';
import { LocalKms } from '../../kms/local-kms.ts';
import { readSealed, writeSealed } from '../../kms/sealed-file.ts';
import { inviteDigest, makeInvite, openInvite, openSecret, sealInvite } from '../../services/protocol/invites.ts';
import { signRequest } from '../../services/protocol/signing.ts';
import type { MemberRow } from '../../services/protocol/views.ts';
import { generateMemberKeys, parseMemberKeyFile, VaultClient } from '../../services/sdk/client.ts';
import { subjectOf } from '../../services/sdk/pseudonym.ts';
import { initNode, joinRequest, openNode } from '../../services/vault/node.ts';
import { bytes, codeOf, tempDir } from '../helpers.ts';
import { EtcdCluster } from '../servers/etcd.ts';
import { freePort } from '../servers/ports.ts';
import { joinNode, served, startNode, type TestNode, treatment } from './vault-fixture.ts';

let cluster: EtcdCluster;
let a: TestNode;
let b: TestNode;
const stopped: TestNode[] = [];

beforeAll(async () => {
  cluster = await EtcdCluster.start(3);
  a = await startNode({ overrides: { ledger: `${cluster.uri}/consortium` } });
  b = await joinNode(a);
}, 120_000);
afterAll(async () => {
  for (const n of [a, b, ...stopped]) await n?.stop();
  await cluster?.stop();
});

/** What a join request directory holds: the node's sealed keys and its public request, nothing else. */
const requestFiles = (dir: string) => readdirSync(dir).sort();
const REQUEST_FILES = ['join-request.json', 'keystore.key', 'keystore.sealed'];
/** Staging directories init left beside `dir` (none, after a success or a failure). */
const leftovers = (dir: string) => readdirSync(dirname(dir)).filter((f) => f.startsWith(`.${basename(dir)}.`));

describe('found, invite, join', () => {
  it('the joined node and its founder know each other from the ledger, with the URLs they serve at', async () => {
    const nodes = await b.admin.client.consortiumNodes();
    expect(nodes.map((n) => [n.id, n.state, n.invitedBy, n.url])).toEqual([
      [a.vault.nodeId, 'joined', null, a.url],
      [b.vault.nodeId, 'joined', a.vault.nodeId, b.url],
    ]);
    await a.vault.peers.refresh(); // as each erasure, checkpoint and cosignature does first
    expect(a.vault.peers.list).toEqual([{ id: b.vault.nodeId, url: b.url, signingKey: b.vault.nodeKey }]);
    expect(b.vault.peers.list).toEqual([{ id: a.vault.nodeId, url: a.url, signingKey: a.vault.nodeKey }]);
    // Each node's config names the consortium's ledger and its block 0; no node holds a loose subject key.
    const config = (n: TestNode) => JSON.parse(readFileSync(join(n.data, 'medvault.json'), 'utf8'));
    expect(config(b).ledgerGenesis).toBe(config(a).ledgerGenesis);
    for (const n of [a, b]) expect(existsSync(join(n.data, 'pseudonym.key'))).toBe(false);
  });

  it('one subject identity: uploaders at either node derive the same pseudonym, the key sealed to each', async () => {
    const atA = await a.addMember('hospital-a', 'uploader');
    const atB = await b.addMember('hospital-b', 'uploader');
    const dpoB = await b.addMember('dpo-b', 'dpo');
    const subjects = await Promise.all([atA, atB, dpoB].map((m) => subjectOf('MRN-555', { client: m.client })));
    expect(new Set(subjects).size).toBe(1);
    expect(subjects[0]).toMatch(/^[0-9a-f]{64}$/);
    // Sealed to the member's own key: another member's key does not open it.
    const path = '/v1/consortium/subject-key';
    const answer = await fetch(`${a.url}${path}`, { headers: signRequest(atA.keys.signing, 'GET', path, undefined) });
    const { sealed } = (await answer.json()) as { sealed: string };
    expect(sealed).toMatch(/^-----BEGIN AGE ENCRYPTED FILE-----/);
    expect(Buffer.from(openSecret(sealed, atA.keys.identity))).toEqual(Buffer.from(await atA.client.subjectKey()));
    expect(codeOf(() => openSecret(sealed, atB.keys.identity))).toBe('AGE_NO_IDENTITY');
    // A reader never gets it; an uploader's key at one node is not a member at the other.
    const reader = await a.addMember('insurer-a', 'reader');
    await expect(reader.client.subjectKey()).rejects.toMatchObject({ code: 'FORBIDDEN' });
  });

  it('only an admin invites, and never into a file ledger', async () => {
    const request = await joinRequest(tempDir('medvault-join-'));
    const uploader = await a.addMember('hospital-invites', 'uploader');
    await expect(uploader.client.invite(request)).rejects.toMatchObject({ code: 'FORBIDDEN' });
    const alone = await startNode();
    stopped.push(alone);
    await expect(alone.admin.client.invite(request)).rejects.toMatchObject({ code: 'REQUEST_INVALID' });
    // A request whose id is not its key's is refused before anything is anchored.
    await expect(a.admin.client.invite({ ...request, node: 'f'.repeat(32) })).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
    });
  });

  it('refuses an invite for another node, an altered one, one never anchored, an expired one; the request stays', async () => {
    const dir = tempDir('medvault-join-');
    const request = await joinRequest(dir);
    const other = await joinRequest(tempDir('medvault-join-'));
    const { invite: forOther } = await a.admin.client.invite(other);
    const { invite } = await a.admin.client.invite(request);
    const identity = await nodeIdentity(dir);
    const genuine = openInvite(invite, identity, request.node);

    // Sealed to the right node, but with a subject key of the sender's choosing: not the anchored one.
    const altered = sealInvite({ ...genuine, subjectKey: 'e'.repeat(64) }, request.recipient);
    // Well formed and sealed to the node, but no node of the consortium anchored its digest.
    const unanchored = sealInvite(makeInvite({ ...genuine }), request.recipient);
    expect(inviteDigest(genuine)).not.toBe(inviteDigest(openInvite(unanchored, identity, request.node)));
    const expired = await a.vault.consortium.invite(a.vault.member(a.admin.id) as MemberRow, request, 1);
    await new Promise((r) => setTimeout(r, 5));

    for (const [name, text] of [
      ['for another node', forOther],
      ['altered', altered],
      ['never anchored', unanchored],
      ['expired', expired.invite],
      ['not an invite', 'hello'],
    ] as const) {
      const err = await initNode(dir, { join: text }).catch((e) => e);
      expect(err, name).toMatchObject({ code: 'INVITE_INVALID' });
      expect(requestFiles(dir), name).toEqual(REQUEST_FILES);
      expect(leftovers(dir), name).toEqual([]);
    }
    // The later genuine invite supersedes the first: only the newest anchored one opens the door.
    const { invite: newest } = await a.admin.client.invite(request);
    expect(await initNode(dir, { join: invite }).catch((e) => e.code)).toBe('INVITE_INVALID');
    const joined = await initNode(dir, { join: newest });
    expect(joined.nodeId).toBe(request.node);
    expect(existsSync(join(dir, 'join-request.json'))).toBe(false);
    expect(leftovers(dir)).toEqual([]);
    const vault = await openNode(dir);
    try {
      expect((await vault.consortium.nodes()).find((n) => n.id === request.node)?.state).toBe('joined');
    } finally {
      await vault.close();
    }
  });

  it('a join on another ledger is refused (LEDGER_MISMATCH); founding on a ledger with a consortium too', async () => {
    const dir = tempDir('medvault-join-');
    const request = await joinRequest(dir);
    const { invite } = await a.admin.client.invite(request);
    const elsewhere = `${cluster.uri}/another-consortium`;
    const founder = await startNode({ overrides: { ledger: elsewhere } });
    stopped.push(founder);
    const err = await initNode(dir, { join: invite, overrides: { ledger: elsewhere } }).catch((e) => e);
    expect(err).toMatchObject({ code: 'LEDGER_MISMATCH' });
    expect(requestFiles(dir)).toEqual(REQUEST_FILES);

    const second = tempDir('medvault-found-');
    const refused = await initNode(second, { overrides: { ledger: elsewhere } }).catch((e) => e);
    expect(refused).toMatchObject({ code: 'CONSORTIUM_EXISTS' });
    expect(readdirSync(second)).toEqual([]);
    expect(leftovers(second)).toEqual([]);
  });
});

describe('leaving', () => {
  it("a node that leaves is no node's peer any more: checkpoints and erasures no longer ask it", async () => {
    const c = await joinNode(a);
    stopped.push(c);
    await a.vault.peers.refresh();
    expect(a.vault.peers.ids).toContain(c.vault.nodeId);
    const reader = await c.addMember('reader-c', 'reader');
    await expect(reader.client.leaveConsortium()).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await c.admin.client.leaveConsortium();
    expect((await a.admin.client.consortiumNodes()).find((n) => n.id === c.vault.nodeId)?.state).toBe('left');
    expect(a.vault.peers.ids).not.toContain(c.vault.nodeId);
    expect(a.vault.peers.ids).toContain(b.vault.nodeId);
    const checkpoint = await a.admin.client.checkpoint();
    expect(checkpoint.signatures.map((x) => x.signer).sort()).toEqual([a.vault.nodeId, b.vault.nodeId].sort());
    await expect(c.admin.client.leaveConsortium()).rejects.toMatchObject({ code: 'REQUEST_INVALID' });
  });
});

describe('peers in the metrics', () => {
  /** medvault_peer_up of `node`'s /metrics, by peer id. */
  const peerUp = async (node: TestNode) => {
    const text = await (await fetch(`${node.url}/metrics`)).text();
    return Object.fromEntries(
      [...text.matchAll(/^medvault_peer_up\{peer="([0-9a-f]{32})"\} (\d)$/gm)].map((m) => [m[1], Number(m[2])]),
    );
  };

  it('each peer is up (1) when it answers its liveness check, down (0) when nothing answers', async () => {
    expect((await peerUp(a))[b.vault.nodeId]).toBe(1);
    const silent = 'ab'.repeat(16);
    const lonely = await startNode({
      overrides: { peers: [{ id: silent, url: `http://127.0.0.1:${await freePort()}` }] },
    });
    stopped.push(lonely);
    expect(await peerUp(lonely)).toEqual({ [silent]: 0 });
  });
});

describe('a node removed by a vote of the others', () => {
  it('stays a peer until more than half of the other joined nodes voted; then its readers reach nothing', async () => {
    const d = await joinNode(a);
    stopped.push(d);
    const uploader = await a.addMember('removal-uploader', 'uploader');
    const readerD = await d.addMember('removal-reader', 'reader');
    const { record } = await uploader.client.upload(bytes(2_000, 61), treatment([readerD.id]));
    const fetchAtA = () => readerD.client.fetch(record.id, { path: join(tempDir(), 'f') });
    expect((await fetchAtA()).bytes).toBe(2_000); // forwarded by D to A
    // Who may not vote: a non-admin, a node about itself, about a node that is not joined.
    await expect(uploader.client.voteNodeRemoval(d.vault.nodeId)).rejects.toMatchObject({ code: 'FORBIDDEN' });
    await expect(a.admin.client.voteNodeRemoval(a.vault.nodeId)).rejects.toMatchObject({ code: 'REQUEST_INVALID' });
    await expect(a.admin.client.voteNodeRemoval('c'.repeat(32))).rejects.toMatchObject({ code: 'PEER_UNKNOWN' });
    // The other joined nodes are A and B: one vote is not enough.
    const first = await a.admin.client.voteNodeRemoval(d.vault.nodeId);
    expect(first).toMatchObject({ state: 'joined', votes: 1, needed: 2 });
    expect(first.receipt.event).toMatchObject({ type: 'node.removal', node: d.vault.nodeId, by: a.admin.id });
    await a.vault.peers.refresh();
    expect(a.vault.peers.ids).toContain(d.vault.nodeId);
    expect((await fetchAtA()).bytes).toBe(2_000);
    const second = await b.admin.client.voteNodeRemoval(d.vault.nodeId);
    expect(second).toMatchObject({ state: 'removed', votes: 2, needed: 2 });
    await a.vault.peers.refresh();
    expect(a.vault.peers.ids).not.toContain(d.vault.nodeId);
    expect((await a.admin.client.consortiumNodes()).find((n) => n.id === d.vault.nodeId)?.state).toBe('removed');
    // D's reader no longer reaches A's record through D; D votes no more.
    await expect(fetchAtA()).rejects.toMatchObject({ code: 'AUTH_INVALID' });
    await expect(d.admin.client.voteNodeRemoval(b.vault.nodeId)).rejects.toMatchObject({ code: 'REQUEST_INVALID' });
  });
});

describe('a reader of one node rotating its keys', () => {
  it('keeps its grants at the other node, which takes its new keys from the ledger and rewraps', async () => {
    const uploader = await a.addMember('rotation-uploader', 'uploader');
    const reader = await b.addMember('rotation-reader', 'reader');
    const document = bytes(4_000, 60);
    const { record } = await uploader.client.upload(document, treatment([reader.id]));
    const old = reader.keys;
    expect(Buffer.from(decrypt([old.identity], await served(reader, record.id))).equals(document)).toBe(true);
    const { keys } = await reader.client.rotateKeys(generateMemberKeys());
    // Its next fetch, through node B, reaches node A signed by the new key: A reads the rotation
    // from the ledger (signed by B), and rewraps its header before serving it.
    const file = await served(reader, record.id);
    expect(codeOf(() => decrypt([old.identity], file))).toBe('AGE_NO_IDENTITY');
    expect(Buffer.from(decrypt([keys.identity], file)).equals(document)).toBe(true);
    expect(a.vault.member(reader.id)?.keyId).toBe(keys.signing.id);
    await expect(new VaultClient(b.url, old).fetch(record.id, { path: join(tempDir(), 'old') })).rejects.toMatchObject({
      code: 'AUTH_INVALID',
    });
  });
});

describe('the subject key of a node made before it lived in the keystore', () => {
  it('is moved from pseudonym.key into the sealed keystore, unchanged, and the file removed', async () => {
    const data = tempDir('medvault-legacy-');
    const { adminId } = await initNode(data);
    // As such a node was: no subject key in the keystore, the key in a file beside it.
    const path = join(data, 'keystore.sealed');
    const secret = { keyFile: new Uint8Array(readFileSync(join(data, 'keystore.key'))) };
    const store = (await readSealed<Record<string, unknown>>(path, secret)) as Record<string, unknown>;
    delete store.shared;
    await writeSealed(path, secret, store);
    const old = Buffer.alloc(32, 9);
    writeFileSync(join(data, 'pseudonym.key'), `${old.toString('hex')}\n`, { mode: 0o600 });
    const vault = await openNode(data);
    try {
      expect(existsSync(join(data, 'pseudonym.key'))).toBe(false);
      const keys = parseMemberKeyFile(readFileSync(join(data, 'admin.key'), 'utf8'));
      const sealed = vault.consortium.subjectKeyFor(vault.member(adminId) as MemberRow).sealed;
      expect(Buffer.from(openSecret(sealed, keys.identity))).toEqual(old);
    } finally {
      await vault.close();
    }
  });
});

/** The joining node's own age identity, from its request directory's keystore. */
async function nodeIdentity(dir: string) {
  const keystore = await LocalKms.open(join(dir, 'keystore.sealed'), {
    keyFile: new Uint8Array(readFileSync(join(dir, 'keystore.key'))),
  });
  return keystore.memberKeys('node').identity;
}
