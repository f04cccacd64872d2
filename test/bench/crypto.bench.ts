/**
 * npm run bench:crypto [-- --size MiB --rounds N --dir DIR --json]
 *
 * Encrypts and decrypts the same file, file to file, with medvault (the
 * built CLI), the Go `age` CLI and the `age-encryption` npm package (typage),
 * alternating them within each round so all three see the same machine
 * state. Every run starts from a synced disk with its output deleted, and its
 * output is fsync'd before the clock stops (medvault does it itself; the
 * others are followed by `sync FILE`). Reports the median MB/s per direction
 * and the peak RSS (GNU time). With --json the last line is one JSON object.
 * --tools medvault,age runs a subset (the ratio line needs both). Each tool's
 * CPU time (user + system, GNU time) per direction is reported beside its
 * speed, and its user-space part (on a VM whose host takes freed memory back, writing
 * into pages it must back again costs kernel time that depends on timing, not on the tool;
 * docs/benchmarks.md). --busy starts a CPU-bound neighbour process (one busy loop) for the
 * whole run, as a node shares its cores with other work: the ratios are then
 * those of a busy machine, where spare cores cannot hide CPU spent.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { X25519Identity } from '../../crypto/x25519.ts';

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '1024' },
    rounds: { type: 'string', default: '3' },
    dir: { type: 'string' },
    json: { type: 'boolean', default: false },
    tools: { type: 'string', default: 'medvault,age,typage' },
    busy: { type: 'boolean', default: false },
  },
});
const sizeMiB = Number(values.size);
const rounds = Number(values.rounds);
const root = new URL('../..', import.meta.url).pathname;
const dir = mkdtempSync(join(values.dir ?? tmpdir(), 'medvault-bench-'));
const log = (line: string) => process.stderr.write(`${line}\n`);

type Tool = 'medvault' | 'age' | 'typage';
const TOOLS = values.tools.split(',') as Tool[];

function command(tool: Tool, mode: 'encrypt' | 'decrypt', input: string, output: string): string {
  const key = mode === 'encrypt' ? recipient : identityFile;
  const node = `${root}scripts/node`;
  switch (tool) {
    case 'medvault':
      return mode === 'encrypt'
        ? `${node} ${root}bin/medvault.js encrypt -r ${key} -o ${output} ${input}`
        : `${node} ${root}bin/medvault.js decrypt -i ${key} -o ${output} ${input}`;
    case 'age':
      return mode === 'encrypt'
        ? `age -r ${key} -o ${output} ${input} && sync ${output}`
        : `age -d -i ${key} -o ${output} ${input} && sync ${output}`;
    case 'typage':
      return `${node} ${root}test/bench/typage-cli.mjs ${mode} ${key} ${input} ${output} && sync ${output}`;
  }
}

/** Runs one timed command from a clean state; returns seconds, CPU seconds (all, and in user space) and peak RSS. */
function timed(cmd: string, output: string): { seconds: number; cpu: number; user: number; rssMiB: number } {
  rmSync(output, { force: true });
  execFileSync('sync');
  const stats = join(dir, 'time.txt');
  const run = spawnSync('/usr/bin/time', ['-f', '%e %M %U %S', '-o', stats, 'sh', '-c', cmd], { stdio: 'inherit' });
  if (run.status !== 0) throw new Error(`failed: ${cmd}`);
  const [seconds, kib, user, system] = readFileSync(stats, 'utf8').trim().split(/\s+/).map(Number);
  return {
    seconds: seconds as number,
    cpu: (user as number) + (system as number),
    user: user as number,
    rssMiB: (kib as number) / 1024,
  };
}

async function sha256(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) hash.update(chunk);
  return hash.digest('hex');
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

execFileSync(`${root}scripts/node`, [`${root}node_modules/typescript/bin/tsc`, '-p', `${root}tsconfig.build.json`]);
const identity = X25519Identity.generate();
const recipient = identity.recipient.toString();
const identityFile = join(dir, 'identity.txt');
writeFileSync(identityFile, `${identity}\n`, { mode: 0o600 });

const plain = join(dir, 'plain.bin');
log(`writing ${sizeMiB} MiB of random data to ${plain}`);
{
  const block = randomBytes(1 << 20);
  const fd = await import('node:fs').then((fs) => fs.openSync(plain, 'w'));
  const fs = await import('node:fs');
  for (let i = 0; i < sizeMiB; i++) {
    block[0] = i & 0xff; // blocks differ
    fs.writeSync(fd, block);
  }
  fs.closeSync(fd);
}
const plainHash = await sha256(plain);
const bytes = sizeMiB * 1024 * 1024;

interface Samples {
  enc: number[];
  dec: number[];
  encCpu: number[];
  decCpu: number[];
  encUser: number[];
  decUser: number[];
  rss: number;
}
const samples = Object.fromEntries(
  TOOLS.map((t) => [t, { enc: [], dec: [], encCpu: [], decCpu: [], encUser: [], decUser: [], rss: 0 } as Samples]),
);
// The neighbour: one busy loop for the whole run (--busy), stopped by its PID at the end.
const neighbour = values.busy ? spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }) : null;
if (neighbour) log(`a CPU-bound neighbour runs as PID ${neighbour.pid}`);
try {
  for (let round = 0; round < rounds; round++) {
    // Rotate the order each round so no tool always runs first.
    const order = TOOLS.map((_, i) => TOOLS[(i + round) % TOOLS.length] as Tool);
    for (const tool of order) {
      const enc = join(dir, `${tool}.age`);
      const dec = join(dir, `${tool}.out`);
      const e = timed(command(tool, 'encrypt', plain, enc), enc);
      const d = timed(command(tool, 'decrypt', enc, dec), dec);
      if (round === 0 && (await sha256(dec)) !== plainHash) throw new Error(`${tool} round trip mismatch`);
      const s = samples[tool] as Samples;
      s.enc.push(e.seconds);
      s.dec.push(d.seconds);
      s.encCpu.push(e.cpu);
      s.decCpu.push(d.cpu);
      s.encUser.push(e.user);
      s.decUser.push(d.user);
      s.rss = Math.max(s.rss, e.rssMiB, d.rssMiB);
      log(
        `round ${round + 1} ${tool.padEnd(8)} encrypt ${e.seconds.toFixed(2)} s (CPU ${e.cpu.toFixed(2)} s, user ${e.user.toFixed(2)})  decrypt ${d.seconds.toFixed(2)} s (CPU ${d.cpu.toFixed(2)} s, user ${d.user.toFixed(2)})`,
      );
      rmSync(enc, { force: true });
      rmSync(dec, { force: true });
    }
  }
} finally {
  neighbour?.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
}

const mbps = (seconds: number) => Math.round(bytes / 1e6 / seconds);
const result = Object.fromEntries(
  TOOLS.map((t) => {
    const s = samples[t] as Samples;
    const cpu = (xs: number[]) => Math.round(median(xs) * 100) / 100;
    return [
      t,
      {
        encryptMBps: mbps(median(s.enc)),
        decryptMBps: mbps(median(s.dec)),
        peakRssMiB: Math.round(s.rss),
        encryptCpuSeconds: cpu(s.encCpu),
        decryptCpuSeconds: cpu(s.decCpu),
        encryptUserSeconds: cpu(s.encUser),
        decryptUserSeconds: cpu(s.decUser),
      },
    ];
  }),
) as Record<
  Tool,
  {
    encryptMBps: number;
    decryptMBps: number;
    peakRssMiB: number;
    encryptCpuSeconds: number;
    decryptCpuSeconds: number;
    encryptUserSeconds: number;
    decryptUserSeconds: number;
  }
>;

console.log(
  `\n${sizeMiB} MiB file to file, fsync'd, median of ${rounds} alternating rounds${values.busy ? ', beside a CPU-bound neighbour' : ''}`,
);
console.log('tool       encrypt MB/s  decrypt MB/s  peak RSS MiB  encrypt CPU s  decrypt CPU s  (user: enc / dec)');
for (const t of TOOLS) {
  const r = result[t];
  console.log(
    `${t.padEnd(10)} ${String(r.encryptMBps).padStart(12)}  ${String(r.decryptMBps).padStart(12)}  ${String(r.peakRssMiB).padStart(12)}  ${r.encryptCpuSeconds.toFixed(2).padStart(13)}  ${r.decryptCpuSeconds.toFixed(2).padStart(13)}  (${r.encryptUserSeconds.toFixed(2)} / ${r.decryptUserSeconds.toFixed(2)})`,
  );
}
const ratio = (a: number, b: number) => (a / b).toFixed(2);
if (result.medvault && result.age)
  console.log(
    `medvault/age: encrypt ${ratio(result.medvault.encryptMBps, result.age.encryptMBps)}x, decrypt ${ratio(result.medvault.decryptMBps, result.age.decryptMBps)}x`,
  );
if (values.json) console.log(JSON.stringify(result));
