/**
 * A real `medvault serve` for the fault tests: one node made with initNode, two members
 * (an uploading hospital and its reader), started and stopped as a process (optionally
 * under strace), and what it keeps read back beside it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { openLedger } from '../../anchor/open.ts';
import {
  generateMemberKeys,
  type MemberCredentials,
  memberPublic,
  parseMemberKeyFile,
} from '../../services/protocol/member-keys.ts';
import { VaultClient } from '../../services/sdk/client.ts';
import { initNode } from '../../services/vault/node.ts';
import { bytes, CLI, filesUnder } from '../helpers.ts';
import { freePort } from '../servers/ports.ts';
import { DAY, SUBJECT } from '../services/vault-fixture.ts';

export class ServedNode {
  child: ChildProcess | null = null;
  hospitalKeys: MemberCredentials = generateMemberKeys();
  readerKeys: MemberCredentials = generateMemberKeys();
  readerId = '';
  #wrapped = false;

  readonly data: string;
  readonly port: number;

  private constructor(data: string, port: number) {
    this.data = data;
    this.port = port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** A node in `data` serving with its hospital and reader added (left running). */
  static async create(data: string): Promise<ServedNode> {
    const node = new ServedNode(data, await freePort());
    const init = await initNode(data, { port: node.port });
    // The fault tests' loads make more than the default 600 signed requests a minute.
    const config = JSON.parse(readFileSync(join(data, 'medvault.json'), 'utf8'));
    writeFileSync(join(data, 'medvault.json'), JSON.stringify({ ...config, rateLimit: 100_000 }));
    await node.start();
    const admin = new VaultClient(node.url, parseMemberKeyFile(readFileSync(init.adminKeyFile, 'utf8')));
    await admin.addMember({ name: 'hospital', role: 'uploader', ...memberPublic(node.hospitalKeys) });
    const reader = await admin.addMember({ name: 'reader', role: 'reader', ...memberPublic(node.readerKeys) });
    node.readerId = reader.member.id;
    return node;
  }

  /**
   * Starts `medvault serve` (with `env` added; run by `wrapper` when given, e.g. strace and its
   * flags); resolves once it listens.
   */
  async start(options: { env?: Record<string, string>; wrapper?: string[] } = {}): Promise<ChildProcess> {
    const env = { ...process.env, ...options.env };
    const command = [process.execPath, CLI, 'serve', '--data', this.data, '--port', String(this.port)];
    const [file, ...args] = [...(options.wrapper ?? []), ...command] as [string, ...string[]];
    const child = spawn(file, args, { env });
    let logs = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      logs += chunk.toString('utf8');
    });
    await new Promise<void>((resolve, reject) => {
      let out = '';
      child.stdout?.on('data', (chunk: Buffer) => {
        out += chunk.toString('utf8');
        if (out.includes('listening on')) resolve();
      });
      child.on('exit', (code, signal) => reject(new Error(`serve exited (${code ?? signal}): ${logs.slice(-2000)}`)));
    });
    this.child = child;
    this.#wrapped = options.wrapper !== undefined;
    return child;
  }

  /** The node's own process id (under a wrapper such as strace, the wrapper's child). */
  get pid(): number {
    const child = this.child;
    if (!child?.pid) throw new Error('the node is not running');
    if (!this.#wrapped) return child.pid;
    const children = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(' ');
    return Number(children[0]);
  }

  /**
   * Sends `signal` to the node (if it is still running) and waits until it is gone: the signal
   * it died of. A wrapper is left to end with it (strace given a command ignores signals).
   */
  async stop(signal: NodeJS.Signals = 'SIGKILL'): Promise<NodeJS.Signals | null> {
    const child = this.child;
    if (!child) return null;
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      process.kill(this.pid, signal);
      await exited;
    }
    this.child = null;
    return child.signalCode;
  }

  client(keys: MemberCredentials = this.hospitalKeys): VaultClient {
    return new VaultClient(this.url, keys);
  }

  /** A 4,000-byte document (its bytes from `seed`) for the reader. */
  upload(seed: number, idempotencyKey?: string, size = 4000) {
    return this.client().upload(bytes(size, seed), {
      subject: SUBJECT,
      readers: [this.readerId],
      purpose: 'treatment',
      expiresAt: Date.now() + DAY,
      ...(idempotencyKey ? { idempotencyKey } : {}),
    });
  }

  /** The ids of every record the node lists to its hospital, page after page. */
  async recordIds(): Promise<Set<string>> {
    const ids = new Set<string>();
    for await (const r of this.client().allRecords()) ids.add(r.id);
    return ids;
  }

  /**
   * What the node keeps (read stopped or running: the read-only ledger open takes no lock):
   * record.created per record on the ledger, and the blob files and temporaries in its store.
   */
  async leftovers(): Promise<{ created: Map<string, number>; blobs: number; temporaries: number }> {
    const ledger = await openLedger(`file:${join(this.data, 'ledger.mvl')}`, { readOnly: true });
    const created = new Map<string, number>();
    for await (const block of ledger.blocks(0)) {
      for (const e of block.events) {
        if (e.type === 'record.created')
          created.set(e.recordId as string, (created.get(e.recordId as string) ?? 0) + 1);
      }
    }
    await ledger.close();
    return {
      created,
      blobs: filesUnder(join(this.data, 'blobs', 'blobs')).length,
      temporaries: filesUnder(join(this.data, 'blobs', 'tmp')).length,
    };
  }
}
