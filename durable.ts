/**
 * Durability helpers every layer uses (ledger, stores, keystore, CLI output).
 */
import { randomBytes } from 'node:crypto';
import { constants, open, rename, rm } from 'node:fs/promises';
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
