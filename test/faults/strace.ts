/**
 * Reading what strace (Debian's) saw a process do: the fault tests trace a real node's
 * writes, syncs and renames, with the file each fd names (`-y`), to check the order in
 * which data reaches the disk and acknowledgements leave.
 */
import { readFileSync } from 'node:fs';

export interface Call {
  call: string;
  /** The file (or socket) of the call's fd, or its first path argument. */
  path: string;
  text: string;
}

/** The syscalls the ordering tests look at. */
export const TRACED = 'trace=write,pwrite64,writev,pwritev,fsync,fdatasync,rename,renameat,renameat2,mkdir,mkdirat';

/** strace's flags for a log `readCalls` can read: threads followed, fds named, quiet, strings up to `size` bytes. */
export function straceFlags(log: string, size = 128): string[] {
  return ['-f', '-y', '-qq', '-s', String(size), '-e', TRACED, '-o', log];
}

/** The completed calls in a strace log, in order. */
export function readCalls(log: string): Call[] {
  const calls: Call[] = [];
  // A call another thread's output interrupted is printed in two lines, `… <unfinished ...>` then
  // `<... fdatasync resumed>…`: it counts where it completed, with the file named in its first line.
  const unfinished = new Map<string, Call>();
  for (const line of readFileSync(log, 'utf8').split('\n')) {
    const resumed = /^(\d+)\s+<\.\.\. (\w+) resumed>/.exec(line);
    if (resumed) {
      const started = unfinished.get(`${resumed[1]} ${resumed[2]}`);
      unfinished.delete(`${resumed[1]} ${resumed[2]}`);
      if (started) calls.push({ ...started, text: `${started.text} ${line}` });
      continue;
    }
    const m = /^(\d+)\s+(\w+)\((?:\d+<([^>]*)>|"([^"]*)")?/.exec(line);
    if (!m) continue;
    const call = { call: m[2] as string, path: (m[3] ?? m[4] ?? '') as string, text: line };
    if (line.includes('<unfinished')) unfinished.set(`${m[1]} ${call.call}`, call);
    else calls.push(call);
  }
  return calls;
}

export const isWrite = (c: Call) => /^p?writev?(64)?$/.test(c.call);
export const isSync = (c: Call) => c.call === 'fsync' || c.call === 'fdatasync';
