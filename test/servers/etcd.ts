/**
 * A real 3-member etcd cluster (Debian's etcd-server) for tests: members on
 * 127.0.0.1 with free ports and temp data dirs, fast elections, started once
 * per suite and stopped by PID. Members can be killed and restarted.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { etcdEnvironment, etcdMemberArgs } from '../../services/cli/local-consortium.ts';
import { freePort } from './ports.ts';

export interface EtcdMember {
  name: string;
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  process: ChildProcess | null;
}

export interface EtcdTls {
  ca: string;
  server: { cert: string; key: string };
  client: { cert: string; key: string };
}

/** A member's process ended while the cluster was starting (its log's last lines in the message). */
class MemberExited extends Error {}

export class EtcdCluster {
  readonly members: EtcdMember[];
  readonly #root: string;
  readonly #initialCluster: string;

  readonly #flags: string[];
  /** With TLS: the CA, and the certificate the test's own clients use. */
  readonly tls: EtcdTls | undefined;

  private constructor(root: string, members: EtcdMember[], flags: string[], tls?: EtcdTls) {
    this.#flags = flags;
    this.tls = tls;
    this.#root = root;
    this.members = members;
    this.#initialCluster = members.map((m) => `${m.name}=${m.peerUrl}`).join(',');
  }

  /**
   * `flags`: more etcd flags for every member (say, a small --quota-backend-bytes). `tls`:
   * clients speak TLS to members whose certificate `tls.server` signed by `tls.ca`, and must
   * present a certificate signed by that CA (--client-cert-auth); `tls.client` is the one the
   * cluster's own health checks use.
   */
  static async start(size = 3, flags: string[] = [], tls?: EtcdTls): Promise<EtcdCluster> {
    // A free port can be taken by another suite between our look and etcd's bind: a member
    // that exits while the cluster starts is taken for that, and the cluster tried again.
    for (let attempt = 1; ; attempt++) {
      const cluster = await EtcdCluster.#startOnce(size, flags, tls);
      try {
        await cluster.waitHealthy();
        return cluster;
      } catch (err) {
        await cluster.stop();
        if (!(err instanceof MemberExited) || attempt === 3) throw err;
      }
    }
  }

  static async #startOnce(size: number, flags: string[], tls?: EtcdTls): Promise<EtcdCluster> {
    const root = mkdtempSync(join(tmpdir(), 'medvault-etcd-'));
    const members: EtcdMember[] = [];
    const tlsFlags = tls
      ? [
          '--cert-file',
          tls.server.cert,
          '--key-file',
          tls.server.key,
          '--trusted-ca-file',
          tls.ca,
          '--client-cert-auth',
        ]
      : [];
    for (let i = 0; i < size; i++) {
      members.push({
        name: `m${i}`,
        clientUrl: `${tls ? 'https' : 'http'}://127.0.0.1:${await freePort()}`,
        peerUrl: `http://127.0.0.1:${await freePort()}`,
        dataDir: join(root, `m${i}`),
        process: null,
      });
    }
    const cluster = new EtcdCluster(root, members, [...flags, ...tlsFlags], tls);
    for (const m of members) cluster.#spawn(m, 'new');
    return cluster;
  }

  get hosts(): string[] {
    return this.members.map((m) => m.clientUrl);
  }

  /** The ledger URI form: etcd://host:port,… (etcds:// with TLS) */
  get uri(): string {
    return `etcd${this.tls ? 's' : ''}://${this.hosts.map((h) => h.replace(/^https?:\/\//, '')).join(',')}`;
  }

  /** A client of the cluster, with the TLS client certificate when it has TLS. */
  client(options: { auth?: { username: string; password: string } } = {}): Etcd3 {
    return new Etcd3({
      hosts: this.hosts,
      dialTimeout: 500,
      ...(this.tls
        ? {
            credentials: {
              rootCertificate: readFileSync(this.tls.ca),
              certChain: readFileSync(this.tls.client.cert),
              privateKey: readFileSync(this.tls.client.key),
            },
          }
        : {}),
      ...options,
    });
  }

  #spawn(member: EtcdMember, state: 'new' | 'existing'): void {
    mkdirSync(member.dataDir, { recursive: true });
    const log = openSync(join(member.dataDir, '..', `${member.name}.log`), 'a');
    const fast = ['--heartbeat-interval', '25', '--election-timeout', '250'];
    member.process = spawn('etcd', etcdMemberArgs(member, this.#initialCluster, state, [...fast, ...this.#flags]), {
      env: etcdEnvironment(),
      stdio: ['ignore', log, log],
    });
  }

  /**
   * Waits until a write through the whole cluster succeeds (a new client each try: a client's
   * circuit breaker, open after the first refusals, would keep refusing); throws MemberExited
   * at once when a member's process is gone.
   */
  async waitHealthy(timeoutMs = 30_000): Promise<void> {
    const giveUp = Date.now() + timeoutMs;
    for (;;) {
      const gone = this.members.find((m) => m.process && m.process.exitCode !== null);
      if (gone) {
        const log = readFileSync(join(this.#root, `${gone.name}.log`), 'utf8')
          .split('\n')
          .slice(-5)
          .join('\n');
        throw new MemberExited(`etcd member ${gone.name} exited (${gone.process?.exitCode}) while starting:\n${log}`);
      }
      const client = this.client();
      try {
        await client
          .put('medvault-test/health')
          .value('ok')
          .options({ deadline: Date.now() + 1000 });
        return;
      } catch (err) {
        if (Date.now() > giveUp) throw new Error(`etcd cluster not healthy: ${(err as Error).message}`);
        await new Promise((r) => setTimeout(r, 100));
      } finally {
        client.close();
      }
    }
  }

  /** The member currently leading: each live member reports its own id and the leader's. */
  async leader(): Promise<EtcdMember> {
    const ids = new Map<string, EtcdMember>();
    let leaderId: string | null = null;
    for (const m of this.members) {
      if (!m.process) continue;
      const client = new Etcd3({ hosts: [m.clientUrl], dialTimeout: 500 });
      try {
        const status = await client.maintenance.status();
        ids.set(String(status.header.member_id), m);
        if (String(status.leader) !== '0') leaderId = String(status.leader);
      } catch {
        // a member that does not answer cannot be asked
      } finally {
        client.close();
      }
    }
    const leader = leaderId === null ? undefined : ids.get(leaderId);
    if (!leader) throw new Error('no live etcd member is the leader');
    return leader;
  }

  /** The raft index a member has applied. */
  async raftIndex(member: EtcdMember): Promise<number> {
    const client = new Etcd3({ hosts: [member.clientUrl], dialTimeout: 500 });
    try {
      return Number((await client.maintenance.status()).raftIndex);
    } finally {
      client.close();
    }
  }

  kill(member: EtcdMember): void {
    member.process?.kill('SIGKILL');
    member.process = null;
  }

  restart(member: EtcdMember): void {
    this.#spawn(member, 'existing');
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.members.map(
        (m) =>
          new Promise<void>((resolve) => {
            const p = m.process;
            m.process = null;
            if (!p || p.exitCode !== null) return resolve();
            p.once('exit', () => resolve());
            p.kill('SIGTERM');
            setTimeout(() => p.kill('SIGKILL'), 3000).unref();
          }),
      ),
    );
    rmSync(this.#root, { recursive: true, force: true });
  }
}
