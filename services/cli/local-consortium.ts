/**
 * A local consortium in one command, for developers, demos and the
 * multi-node tests: `medvault consortium up --dir DIR --nodes N` starts, as
 * processes on this machine, a 3-member etcd cluster (Debian's etcd-server)
 * and N nodes on it, the first founding the consortium and the others
 * joining it by invite, each with its own data directory and fs store;
 * `consortium add` has one more node join; `consortium down` stops every
 * process it started, by PID. DIR/consortium.json says what runs where:
 *
 *   { "ledger": "etcd://…/medvault",
 *     "etcd":  [{ "name", "clientUrl", "peerUrl", "dataDir", "pid" }],
 *     "nodes": [{ "name", "url", "adminKey", "dataDir", "pid" }] }
 *
 * `up` on a directory that has one starts its processes again (the same
 * data, ports and keys). Everything listens on 127.0.0.1.
 */
import { spawn } from 'node:child_process';
import { existsSync, openSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { Etcd3 } from 'etcd3';
import { check, fail } from '../../errors.ts';
import { parseMemberKeyFile, VaultClient } from '../sdk/client.ts';
import { initNode, joinRequest } from '../vault/node.ts';

export interface EtcdMemberSpec {
  name: string;
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
}

export interface LocalConsortium {
  ledger: string;
  etcd: Array<EtcdMemberSpec & { pid: number }>;
  nodes: Array<{ name: string; url: string; adminKey: string; dataDir: string; pid: number }>;
}

/**
 * The command line of one etcd member of a cluster (`initialCluster`: name=peerUrl,…),
 * with `extra` flags (the tests' fast elections; README's sizing advice for a real one).
 */
export function etcdMemberArgs(
  member: EtcdMemberSpec,
  initialCluster: string,
  state: 'new' | 'existing',
  extra: readonly string[] = [],
): string[] {
  return [
    ...['--name', member.name, '--data-dir', member.dataDir],
    ...['--listen-client-urls', member.clientUrl, '--advertise-client-urls', member.clientUrl],
    ...['--listen-peer-urls', member.peerUrl, '--initial-advertise-peer-urls', member.peerUrl],
    ...['--initial-cluster', initialCluster, '--initial-cluster-state', state],
    ...['--initial-cluster-token', 'medvault', '--logger', 'zap', '--log-level', 'warn'],
    ...extra,
  ];
}

/** etcd reads every ETCD_* variable as a flag: the environment without them. */
export function etcdEnvironment(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ETCD_')));
}

/** docs/ledger.md's sizing for a cluster that holds a ledger: snapshots often, a large quota. */
const ETCD_SIZING = ['--snapshot-count', '10000', '--quota-backend-bytes', String(8 * 1024 ** 3)];
const STATE_FILE = 'consortium.json';
const HEALTHY_WITHIN_MS = 30_000;

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

/** A detached process whose output goes to `log`; its PID. */
function start(command: string, args: string[], log: string, env: NodeJS.ProcessEnv = process.env): number {
  const out = openSync(log, 'a');
  const child = spawn(command, args, { detached: true, stdio: ['ignore', out, out], env });
  child.unref();
  if (child.pid === undefined) fail('IO_ERROR', `${command} did not start`);
  return child.pid;
}

/** The running CLI, to start `medvault serve` with. */
function cliCommand(): string[] {
  return [...process.execArgv, process.argv[1] as string];
}

async function until(what: string, ready: () => Promise<boolean>): Promise<void> {
  const giveUp = Date.now() + HEALTHY_WITHIN_MS;
  while (!(await ready().catch(() => false))) {
    if (Date.now() > giveUp) fail('NODE_UNAVAILABLE', `${what} did not come up within ${HEALTHY_WITHIN_MS / 1000} s`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function startEtcd(dir: string, members: EtcdMemberSpec[], state: 'new' | 'existing') {
  const initialCluster = members.map((m) => `${m.name}=${m.peerUrl}`).join(',');
  const started = members.map((m) => ({
    ...m,
    pid: start(
      'etcd',
      etcdMemberArgs(m, initialCluster, state, ETCD_SIZING),
      join(dir, `${m.name}.log`),
      etcdEnvironment(),
    ),
  }));
  const client = new Etcd3({ hosts: members.map((m) => m.clientUrl), dialTimeout: 500 });
  try {
    await until('the etcd cluster', async () => {
      await client
        .put('medvault-up/health')
        .value('ok')
        .options({ deadline: Date.now() + 1000 });
      return true;
    });
  } finally {
    client.close();
  }
  return started;
}

async function startNode(dataDir: string, url: string, log: string): Promise<number> {
  const pid = start(process.execPath, [...cliCommand(), 'serve', '--data', dataDir], log);
  await until(`the node at ${url}`, async () => (await fetch(`${url}/healthz`)).ok);
  return pid;
}

async function save(dir: string, state: LocalConsortium): Promise<void> {
  await writeFile(join(dir, STATE_FILE), `${JSON.stringify(state, null, 2)}\n`);
}

export function readLocalConsortium(dir: string): LocalConsortium {
  const path = join(resolve(dir), STATE_FILE);
  if (!existsSync(path)) fail('INVALID_ARGUMENT', `${dir} holds no local consortium (medvault consortium up)`);
  return JSON.parse(readFileSync(path, 'utf8')) as LocalConsortium;
}

/** Founds (or, with a consortium.json, restarts) the local consortium in `dir`. */
export async function consortiumUp(dir: string, options: { nodes?: number } = {}): Promise<LocalConsortium> {
  dir = resolve(dir);
  if (existsSync(join(dir, STATE_FILE))) return restart(dir);
  const count = options.nodes ?? 3;
  check(Number.isSafeInteger(count) && count >= 1 && count <= 16, 'INVALID_ARGUMENT', '--nodes is 1 to 16');
  await mkdir(join(dir, 'etcd'), { recursive: true });
  const members: EtcdMemberSpec[] = [];
  for (let i = 0; i < 3; i++) {
    members.push({
      name: `etcd${i}`,
      clientUrl: `http://127.0.0.1:${await freePort()}`,
      peerUrl: `http://127.0.0.1:${await freePort()}`,
      dataDir: join(dir, 'etcd', `etcd${i}`),
    });
  }
  const state: LocalConsortium = {
    ledger: `etcd://${members.map((m) => m.clientUrl.replace('http://', '')).join(',')}/medvault`,
    etcd: await startEtcd(join(dir, 'etcd'), members, 'new'),
    nodes: [],
  };
  await save(dir, state);
  for (let i = 0; i < count; i++) await addNode(dir, state);
  return state;
}

/** One more node, founding the consortium if it is the first, else joining it by an invite from the first. */
export async function addNode(
  dir: string,
  state = readLocalConsortium(dir),
): Promise<LocalConsortium['nodes'][number]> {
  dir = resolve(dir);
  const name = `node-${String.fromCharCode(97 + state.nodes.length)}`; // node-a, node-b, …
  const dataDir = join(dir, name);
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const adminKey = join(dir, `${name}-admin.key`);
  const common = { name, port, url, adminKeyFile: adminKey, overrides: { ledger: state.ledger } };
  const founder = state.nodes[0];
  if (!founder) {
    await initNode(dataDir, common);
  } else {
    const request = await joinRequest(dataDir);
    const admin = new VaultClient(founder.url, parseMemberKeyFile(readFileSync(founder.adminKey, 'utf8')));
    const { invite } = await admin.invite(request, { expiresInDays: 1 });
    await initNode(dataDir, { ...common, join: invite });
  }
  const node = { name, url, adminKey, dataDir, pid: await startNode(dataDir, url, join(dir, `${name}.log`)) };
  state.nodes.push(node);
  await save(dir, state);
  return node;
}

async function restart(dir: string): Promise<LocalConsortium> {
  const state = readLocalConsortium(dir);
  check(
    [...state.etcd, ...state.nodes].every((p) => !alive(p.pid, p.dataDir)),
    'INVALID_ARGUMENT',
    `the consortium in ${dir} is running: medvault consortium down --dir ${dir} first`,
  );
  state.etcd = await startEtcd(join(dir, 'etcd'), state.etcd, 'existing');
  for (const node of state.nodes) node.pid = await startNode(node.dataDir, node.url, join(dir, `${node.name}.log`));
  await save(dir, state);
  return state;
}

/**
 * Whether process `pid` runs and is ours: its command line names `dataDir` (a PID reused by
 * another program after a reboot is never signalled).
 */
function alive(pid: number, dataDir: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(dataDir);
  } catch {
    return false;
  }
}

/**
 * Stops every process of the local consortium in `dir`: the nodes together, then the etcd
 * members one at a time (all at once, each waits seconds to hand over a leadership nobody
 * can take); SIGTERM, then SIGKILL after 10 s.
 */
export async function consortiumDown(dir: string): Promise<number[]> {
  const state = readLocalConsortium(dir);
  const stopped: number[] = [];
  for (const group of [state.nodes, ...state.etcd.map((m) => [m])]) {
    const running = group.filter((p) => alive(p.pid, p.dataDir));
    for (const p of running) process.kill(p.pid, 'SIGTERM');
    const giveUp = Date.now() + 10_000;
    for (const p of running) {
      while (alive(p.pid, p.dataDir)) {
        if (Date.now() > giveUp) process.kill(p.pid, 'SIGKILL');
        await new Promise((r) => setTimeout(r, 50));
      }
      stopped.push(p.pid);
    }
  }
  return stopped;
}
