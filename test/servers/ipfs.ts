/**
 * A private IPFS node for the tests: js-ipfs from its own package under
 * test/ipfs-node (no kubo binary can be installed here), started with a
 * fresh repo and a fresh swarm key in a temp directory, API on 127.0.0.1 at a
 * free port, stopped by PID. MEDVAULT_IPFS_API=http://HOST:PORT points the
 * suite at a real kubo instead (then nothing is started or stopped).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../helpers.ts';

export interface IpfsTestNode {
  api: string;
  /** The node's process, to kill it mid-operation. */
  process: ChildProcess | null;
  stop(): Promise<void>;
}

export interface IpfsNodeOptions {
  /** Reuse this directory (repo and swarm key; kept on stop), to restart the same node. */
  directory?: string;
}

const LAUNCHER = join(ROOT, 'test/ipfs-node/launch.mjs');

export async function startIpfsNode(options: IpfsNodeOptions = {}): Promise<IpfsTestNode> {
  const external = process.env.MEDVAULT_IPFS_API;
  if (external && !options.directory) return { api: external, process: null, stop: async () => {} };
  if (!existsSync(join(ROOT, 'test/ipfs-node/node_modules/ipfs-core'))) {
    throw new Error('the test IPFS node is not installed: run scripts/setup.sh (npm ci --prefix test/ipfs-node)');
  }
  const dir = options.directory ?? mkdtempSync(join(tmpdir(), 'medvault-ipfs-'));
  const swarmKey = join(dir, 'swarm.key');
  if (!existsSync(swarmKey)) {
    writeFileSync(swarmKey, `/key/swarm/psk/1.0.0/\n/base16/\n${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  }
  const child: ChildProcess = spawn(process.execPath, [LAUNCHER, join(dir, 'repo'), swarmKey], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let errors = '';
  child.stderr?.on('data', (c: Buffer) => {
    errors += c.toString();
  });
  const api = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`the IPFS node did not start in 60 s: ${errors}`)), 60_000);
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (line) {
        clearTimeout(timer);
        resolve((JSON.parse(line) as { api: string }).api);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the IPFS node exited (${code}): ${errors}`));
    });
  });
  return {
    api,
    process: child,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(timer);
      }
      if (!options.directory) rmSync(dir, { recursive: true, force: true });
    },
  };
}
