/** What the benchmarks read of other processes in /proc: CPU time and resident memory. */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const ticksPerSecond = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** utime and stime (fields 14 and 15) of a /proc stat file, in clock ticks. */
function ticks(statFile: string): { user: number; system: number } {
  const fields = readFileSync(statFile, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return { user: Number(fields[11]), system: Number(fields[12]) };
}

/** CPU time of processes so far (utime + stime of /proc/<pid>/stat, in clock ticks), in µs: all, and in the kernel. */
export function processesCpuUs(pids: number[]): { all: number; system: number } {
  let user = 0;
  let system = 0;
  for (const pid of pids) {
    const t = ticks(`/proc/${pid}/stat`);
    user += t.user;
    system += t.system;
  }
  return { all: ((user + system) * 1e6) / ticksPerSecond, system: (system * 1e6) / ticksPerSecond };
}

/**
 * CPU time so far of a process's main thread alone (its JavaScript and its own system calls: a
 * Node process's serial part), in µs; the thread pool's and the GC helpers' are left out.
 */
export function mainThreadCpuUs(pid: number): number {
  const t = ticks(`/proc/${pid}/task/${pid}/stat`);
  return ((t.user + t.system) * 1e6) / ticksPerSecond;
}

/** Resident memory of processes, from /proc/<pid>/statm (pages), in MB. */
export const processesRssMb = (pids: number[]) =>
  Math.round(
    pids.reduce((mb, pid) => mb + Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]) * 4096, 0) / 1e6,
  );
