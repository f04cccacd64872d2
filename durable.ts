/**
 * Durability helpers every layer uses (ledger, stores, keystore, CLI output).
 */
import { constants, open } from 'node:fs/promises';

/** fsyncs a directory, so a file created, renamed or removed in it survives a crash. */
export async function fsyncDirectory(path: string): Promise<void> {
  const dir = await open(path, constants.O_RDONLY);
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
