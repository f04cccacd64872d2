/** What the benchmarks read of other processes in /proc: CPU time and resident memory. */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const ticksPerSecond = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout.trim()) || 100;

/** CPU time of processes so far (utime + stime of /proc/<pid>/stat, in clock ticks), in µs: all, and in the kernel. */
export function processesCpuUs(pids: number[]): { all: number; system: number } {
  let user = 0;
  let system = 0;
  for (const pid of pids) {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    user += Number(fields[11]); // utime and stime: fields 14 and 15 of stat
    system += Number(fields[12]);
  }
  return { all: ((user + system) * 1e6) / ticksPerSecond, system: (system * 1e6) / ticksPerSecond };
}

/** Resident memory of processes, from /proc/<pid>/statm (pages), in MB. */
export const processesRssMb = (pids: number[]) =>
  Math.round(
    pids.reduce((mb, pid) => mb + Number(readFileSync(`/proc/${pid}/statm`, 'utf8').split(' ')[1]) * 4096, 0) / 1e6,
  );
