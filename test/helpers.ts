/** Shared test helpers: temp directories and running the CLI and the age tools. */
import { type ChildProcess, type SpawnSyncReturns, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { type ErrorCode, isMedvaultError } from '../errors.ts';

export const ROOT = new URL('..', import.meta.url).pathname;
export const CLI = join(ROOT, 'services/cli/main.ts');

/** The temp directories this test file made (each test file loads this module anew). */
const made = new Set<string>();
// One hook, registered as this module loads, while the file's tests are collected: a hook
// registered from inside a running hook or test never runs, so every directory made there (a
// node's data directory from startNode, say) was left in /tmp, 300 of them a run. Hooks run as a
// stack: this one, registered first, runs after the file's own (its nodes stopped first).
afterAll(() => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  made.clear();
});

/**
 * Stops a child process the test started (SIGTERM; SIGKILL after `ms`) and resolves once it has
 * exited: a node still closing could otherwise write into its data directory as it is removed.
 */
export async function stopProcess(child: ChildProcess | undefined, ms = 10_000): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), ms);
  await exited;
  clearTimeout(timer);
}

/** A temp directory removed after the test file's last hook, wherever it was made. */
export function tempDir(prefix = 'medvault-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.add(dir);
  return dir;
}

export interface RunOptions {
  input?: Uint8Array | string;
  cwd?: string;
}

/** Runs the medvault CLI from source with the Node running the tests. */
export function medvault(args: string[], options: RunOptions = {}): SpawnSyncReturns<Buffer> {
  return spawnSync(process.execPath, [CLI, ...args], {
    input: options.input,
    cwd: options.cwd,
    maxBuffer: 1 << 30,
  });
}

/**
 * Runs the medvault CLI in another process without blocking this one (whose event loop may be
 * serving the node the CLI talks to); resolves with its exit code and output, never rejects.
 */
export function runCli(
  args: string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], { env });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * Runs `command` (argv) on a terminal of its own (util-linux `script`), for what asks on
 * /dev/tty (a passphrase, a confirmation) or draws on a terminal. `typed` is typed at once, or
 * each answer once the screen shows its prompt (as a person would: after the program turned
 * echo off). Resolves with the exit code and everything the terminal showed.
 */
export function onTerminal(
  command: string[],
  typed: string | Array<{ after: string; type: string }>,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ code: number | null; screen: string }> {
  const quoted = command.map((a) => `'${a.replaceAll("'", "'\\''")}'`).join(' ');
  return new Promise((resolve) => {
    const child = spawn('script', ['-qec', quoted, '/dev/null'], { env });
    let screen = '';
    const answers = typeof typed === 'string' ? [] : [...typed];
    let seen = 0; // where the next prompt is looked for
    const show = (c: Buffer) => {
      screen += c.toString();
      const next = answers[0];
      const at = next ? screen.indexOf(next.after, seen) : -1;
      if (next && at >= 0) {
        seen = at + next.after.length;
        answers.shift();
        child.stdin.write(next.type);
      }
    };
    child.stdout.on('data', show);
    child.stderr.on('data', show);
    if (typeof typed === 'string') child.stdin.write(typed);
    child.on('exit', (code) => resolve({ code, screen }));
  });
}

/** Runs a stock tool (age, age-keygen) and returns its result. */
export function tool(name: string, args: string[], options: RunOptions = {}): SpawnSyncReturns<Buffer> {
  return spawnSync(name, args, { input: options.input, cwd: options.cwd, maxBuffer: 1 << 30 });
}

/** Deterministic pseudo-random bytes (fast, no entropy needed in tests). */
export function bytes(length: number, seed = 1): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** XORs `mask` into byte `index` of `data` (in place) and returns `data`. */
export function flipBits<T extends Uint8Array>(data: T, index: number, mask = 1): T {
  data[index] = (data[index] as number) ^ mask;
  return data;
}

/** The stable error code `fn` throws, 'no error', or 'untyped error' for anything else. */
export function codeOf(fn: () => unknown): ErrorCode | 'no error' | 'untyped error' {
  try {
    fn();
    return 'no error';
  } catch (err) {
    return isMedvaultError(err) ? err.code : 'untyped error';
  }
}

/** Every file under `dir`, recursively, as paths. */
export function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name));
}
