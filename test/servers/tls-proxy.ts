/**
 * The TLS-terminating proxy an operator puts in front of kubo's RPC API (kubo serves it
 * over plain HTTP only): Debian's haproxy, really started on 127.0.0.1 with the very
 * configuration docker-compose.yml runs (deploy/kubo-tls.cfg), and stopped by its PID.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { ROOT, tempDir } from '../helpers.ts';
import { freePort } from './ports.ts';

export interface TlsProxy {
  port: number;
  stop(): Promise<void>;
}

const HAPROXY = '/usr/sbin/haproxy';

export async function startTlsProxy(target: number, identity: { cert: Buffer; key: Buffer }): Promise<TlsProxy> {
  const dir = tempDir('medvault-haproxy-');
  const pem = join(dir, 'kubo-tls.pem');
  writeFileSync(pem, Buffer.concat([identity.cert, identity.key]), { mode: 0o600 });
  const port = await freePort();
  const child: ChildProcess = spawn(HAPROXY, ['-db', '-f', join(ROOT, 'deploy', 'kubo-tls.cfg')], {
    env: { KUBO_TLS_BIND: `127.0.0.1:${port}`, KUBO_TLS_CERT: pem, KUBO_RPC: `127.0.0.1:${target}` },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const giveUp = Date.now() + 10_000;
  while (!(await listening(port))) {
    if (child.exitCode !== null || Date.now() > giveUp) {
      child.kill('SIGKILL');
      throw new Error(`haproxy did not start: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    stop: async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
