/**
 * `medvault consortium up / add / down`: a local consortium as processes on
 * this machine (a real 3-member etcd cluster and medvault nodes), driven
 * through the CLI as a developer would: nodes found and join by invite, a
 * reader of one node fetches another node's record through its own, a node
 * added later is a peer of every node (they cosign its checkpoint), the
 * whole consortium stops and starts again on the same data (one node with
 * a new key, `medvault node rotate-key`), and `down` leaves no process behind.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { consortiumDown, type LocalConsortium } from '../../services/cli/local-consortium.ts';
import { parseMemberKeyFile, VaultClient } from '../../services/sdk/client.ts';
import { bytes, runCli, tempDir } from '../helpers.ts';
import { DAY } from './vault-fixture.ts';

const dir = join(tempDir('medvault-local-'), 'consortium');
afterAll(async () => {
  if (existsSync(join(dir, 'consortium.json'))) await consortiumDown(dir); // whatever a failure left running
});

/** The CLI in another process, quiet logs. */
const medvault = (...args: string[]) => runCli(args, { ...process.env, MEDVAULT_LOG_LEVEL: 'warn' });

const state = () => JSON.parse(readFileSync(join(dir, 'consortium.json'), 'utf8')) as LocalConsortium;
const adminOf = (node: LocalConsortium['nodes'][number]) =>
  new VaultClient(node.url, parseMemberKeyFile(readFileSync(node.adminKey, 'utf8')));
/** Whether any of `pids` still runs. */
const running = (pids: number[]) =>
  pids.filter((pid) => existsSync(`/proc/${pid}`) && readFileSync(`/proc/${pid}/cmdline`).length > 0);

describe('a local consortium in one command', () => {
  it('up, a fetch across nodes, a node added later, down and up again, down: no process left', async () => {
    const up = await medvault('consortium', 'up', '--dir', dir, '--nodes', '2');
    expect(up.code, up.stderr).toBe(0);
    const first = state();
    expect(first.etcd).toHaveLength(3);
    expect(first.nodes.map((n) => n.name)).toEqual(['node-a', 'node-b']);
    expect(up.stdout).toContain(first.nodes[1]?.url);
    const [a, b] = first.nodes as [LocalConsortium['nodes'][number], LocalConsortium['nodes'][number]];

    // An uploader at A, a reader at B (published on the ledger): B's reader fetches A's record through B.
    const { generateMemberKeys, memberPublic } = await import('../../services/sdk/client.ts');
    const hospitalKeys = generateMemberKeys();
    const readerKeys = generateMemberKeys();
    await adminOf(a).addMember({ name: 'hospital', role: 'uploader', ...memberPublic(hospitalKeys) });
    const { member: reader, receipt: enrolled } = await adminOf(b).addMember({
      name: 'insurer',
      role: 'reader',
      ...memberPublic(readerKeys),
    });
    const content = bytes(150_000, 12);
    const { record } = await new VaultClient(a.url, hospitalKeys).upload(content, {
      subject: 'c'.repeat(64),
      readers: [reader.id],
      purpose: 'claims.review',
      expiresAt: Date.now() + DAY,
    });
    const out = tempDir('medvault-local-out-');
    await new VaultClient(b.url, readerKeys).fetch(record.id, { path: join(out, 'through-b') });
    expect(readFileSync(join(out, 'through-b')).equals(Buffer.from(content))).toBe(true);

    // Node C joins later by invite: every node cosigns its checkpoint, so each took it as a peer.
    const added = await medvault('consortium', 'add', '--dir', dir);
    expect(added.code, added.stderr).toBe(0);
    const c = state().nodes[2] as LocalConsortium['nodes'][number];
    const checkpoint = await adminOf(c).checkpoint();
    const ids = await Promise.all([a, b, c].map(async (n) => (await adminOf(n).node()).id));
    expect(checkpoint.signatures.map((s) => s.signer).sort()).toEqual([...ids].sort());
    expect((await adminOf(a).consortiumNodes()).map((n) => n.state)).toEqual(['joined', 'joined', 'joined']);

    // B stopped replaces its key (the ledger up); down, up again on the same data: the record is
    // still there, fetched through B, which forwards under its new key; every node knows B by it.
    const pids = [...state().etcd, ...state().nodes].map((p) => p.pid);
    const bPid = state().nodes[1]?.pid as number;
    process.kill(bPid, 'SIGTERM');
    while (running([bPid]).length > 0) await new Promise((r) => setTimeout(r, 50));
    const rotated = await medvault('node', 'rotate-key', '--data', b.dataDir);
    expect(rotated.code, rotated.stderr).toBe(0);
    expect((await medvault('consortium', 'down', '--dir', dir)).stdout).toContain('stopped 5 processes');
    expect(running(pids)).toEqual([]);
    const again = await medvault('consortium', 'up', '--dir', dir);
    expect(again.code, again.stderr).toBe(0);
    await new VaultClient(b.url, readerKeys).fetch(record.id, { path: join(out, 'after-restart') });
    expect(readFileSync(join(out, 'after-restart')).equals(Buffer.from(content))).toBe(true);
    const bId = (await adminOf(b).node()).id;
    expect(rotated.stdout).toContain(`handed over to ${bId}`);
    for (const n of state().nodes) {
      const known = (await adminOf(n).consortiumNodes()).map((row) => row.id);
      expect(known).toContain(bId);
      expect(known).not.toContain(ids[1]);
    }
    // The reader's enrolment, signed by B's old key, verifies against B's id today.
    await expect(new VaultClient(b.url, readerKeys).verify(enrolled)).resolves.toBeDefined();
    // C voted out from the command line by the admins of A and B (B under its new key): the first vote is not enough.
    const [a2, b2, c2] = state().nodes as Array<LocalConsortium['nodes'][number]>;
    const cId = ids[2] as string;
    const remove = (n: typeof a, ...more: string[]) =>
      medvault('consortium', 'remove', cId, '--node', n.url, '--key', n.adminKey, ...more);
    const unconfirmed = await remove(a2 as typeof a);
    expect(unconfirmed.code).not.toBe(0);
    expect(unconfirmed.stderr).toMatch(/--yes/);
    const oneVote = await remove(a2 as typeof a, '--yes', '--json');
    expect(oneVote.code, oneVote.stderr).toBe(0);
    expect(JSON.parse(oneVote.stdout)).toMatchObject({ state: 'joined', votes: 1, needed: 2 });
    const twoVotes = await remove(b2 as typeof a, '--yes');
    expect(twoVotes.stdout).toContain(`node ${cId} is removed from the consortium`);
    expect((await adminOf(c2 as typeof a).consortiumNodes()).find((n) => n.id === cId)?.state).toBe('removed');
    // `up` on a running consortium is refused; `down` stops it all.
    expect((await medvault('consortium', 'up', '--dir', dir)).stderr).toMatch(/is running/);
    const restarted = [...state().etcd, ...state().nodes].map((p) => p.pid);
    await medvault('consortium', 'down', '--dir', dir);
    expect(running(restarted)).toEqual([]);
  }, 120_000);
});
