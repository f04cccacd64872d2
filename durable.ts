/**
 * Durability helpers every layer uses (ledger, stores, keystore, CLI output).
 */
import { randomBytes } from 'node:crypto';
import { constants, type FileHandle, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** fsyncs a directory, so a file created, renamed or removed in it survives a crash. */
export async function fsyncDirectory(path: string): Promise<void> {
  const dir = await open(path, constants.O_RDONLY);
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}

/**
 * Writes `pieces` at the file's position with writev, again for what a short write left;
 * resolves with the bytes written. `position` (optional) writes from that offset instead.
 */
export async function writevAll(handle: FileHandle, pieces: readonly Uint8Array[], position?: number): Promise<number> {
  let total = 0;
  for (const piece of pieces) total += piece.length;
  let rest = pieces;
  let at = position;
  while (rest.length > 0) {
    let { bytesWritten } = await handle.writev(rest as Uint8Array[], at);
    if (at !== undefined) at += bytesWritten;
    const next: Uint8Array[] = [];
    for (const piece of rest) {
      if (bytesWritten >= piece.length) bytesWritten -= piece.length;
      else {
        next.push(bytesWritten > 0 ? piece.subarray(bytesWritten) : piece);
        bytesWritten = 0;
      }
    }
    rest = next;
  }
  return total;
}

/**
 * Replaces the file at `path` with `data` atomically and durably: a temp file
 * beside it (mode 0600), fsync, rename, directory fsync. A crash leaves the
 * old file or the new one, never a mix; no copy is left beside it.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(temp, 'wx', 0o600);
  try {
    await handle.writeFile(data);
    await handle.sync();
    await handle.close();
    await rename(temp, path);
    await fsyncDirectory(dirname(path));
  } catch (err) {
    await handle.close().catch(() => {});
    await rm(temp, { force: true });
    throw err;
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes the lock file `path` for this process (it holds the process id), or calls `held` with
 * the id of the live process that holds it. A lock whose process is gone is stale and taken over.
 */
export async function takeLock(path: string, held: (pid: number | null) => never): Promise<void> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(path, String(process.pid), { flag: 'wx' });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number((await readFile(path, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(pid) && pid > 0 && processAlive(pid)) held(pid);
      await rm(path, { force: true }); // stale: its process is gone
    }
  }
  held(null);
}
