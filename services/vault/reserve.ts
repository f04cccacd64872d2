/**
 * The disk reserve: a file of a few MiB (`reserve.bin`) the node keeps in its data
 * directory so that it can still start on a disk that filled up while it was stopped
 * (SQLite needs room for its WAL and shared memory; the ledger and the keystore for a
 * few appends). At start on a full disk the reserve is released and the node runs
 * **read-only for new documents**: uploads (and re-encrypting revocations) are refused
 * STORAGE_FULL (507) and readiness says so, while fetches, grants, revocations,
 * erasures, reports and receipts go on in the space the reserve gave back. Once there
 * is room again for the reserve and the readiness margin, it is made again and uploads
 * resume, without a restart.
 */
import { open, rm, stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { fail, isDiskFull } from '../../errors.ts';
import { logger } from '../../log.ts';

export const RESERVE_FILE = 'reserve.bin';
export const DEFAULT_RESERVE_MIB = 8;
/** Less free space than this (64 MiB, or 5 % of a smaller disk) and a node's disk is reported full. */
export const minFree = (totalBytes: number) => Math.min(64 * 1024 * 1024, totalBytes * 0.05);
/** Less than this free even after releasing the reserve, and the node does not start at all. */
const TOO_FULL_TO_START = 1024 * 1024;

async function space(dir: string): Promise<{ free: number; total: number }> {
  const { bavail, blocks, bsize } = await statfs(dir);
  return { free: bavail * bsize, total: blocks * bsize };
}

export class DiskReserve {
  readonly #dir: string;
  readonly #path: string;
  readonly #bytes: number;
  #held = false;
  /** Released at start on a full disk: logged when space is back. */
  #released = false;

  private constructor(dir: string, bytes: number) {
    this.#dir = dir;
    this.#path = join(dir, RESERVE_FILE);
    this.#bytes = bytes;
  }

  /**
   * At start, before anything else writes to `dir`: on a full disk the reserve is released
   * (the node starts read-only for new documents); otherwise it is made if missing. A disk
   * too full to start even so is STORAGE_FULL naming the directory. `bytes` 0: no reserve.
   */
  static async open(dir: string, bytes: number): Promise<DiskReserve> {
    const reserve = new DiskReserve(dir, bytes);
    if (bytes === 0) {
      reserve.#held = true;
      return reserve;
    }
    const { free, total } = await space(dir);
    if (free >= minFree(total)) {
      await reserve.ensure();
      return reserve;
    }
    const released = await rm(reserve.#path).then(
      () => true,
      () => false,
    );
    const after = await space(dir);
    if (after.free < TOO_FULL_TO_START) {
      fail(
        'STORAGE_FULL',
        `${dir}: ${after.free} bytes free${released ? ' after releasing the reserve' : ' and no reserve to release'}; free space to start the node`,
      );
    }
    reserve.#released = true;
    logger.warn(
      { dir, free: after.free, released },
      'the data directory is full: started read-only for new documents (uploads refused STORAGE_FULL until space is freed)',
    );
    return reserve;
  }

  /** Whether the reserve is in place: the node takes new documents only then. */
  get held(): boolean {
    return this.#held;
  }

  /**
   * Makes the reserve if it is missing and there is room for it and the readiness margin;
   * returns whether it is in place.
   */
  async ensure(): Promise<boolean> {
    if (this.#held) return true;
    const existing = await stat(this.#path).catch(() => null);
    if (existing?.size === this.#bytes) {
      this.#held = true;
      return true;
    }
    const { free, total } = await space(this.#dir);
    if (free - this.#bytes + (existing?.size ?? 0) < minFree(total)) return false;
    const file = await open(this.#path, 'w', 0o600);
    try {
      const zeros = Buffer.alloc(Math.min(this.#bytes, 1024 * 1024));
      for (let written = 0; written < this.#bytes; written += zeros.length) {
        await file.write(zeros, 0, Math.min(zeros.length, this.#bytes - written));
      }
    } catch (err) {
      await file.close();
      await rm(this.#path, { force: true });
      if (isDiskFull(err)) return false;
      throw err;
    }
    await file.close();
    if (this.#released) logger.info({ dir: this.#dir }, 'space is back: disk reserve made again, new documents taken');
    this.#released = false;
    this.#held = true;
    return true;
  }

  /** Before taking a new document: STORAGE_FULL while the reserve is released and space has not come back. */
  async checkWritable(): Promise<void> {
    if (this.#held || (await this.ensure())) return;
    const { free } = await space(this.#dir);
    fail('STORAGE_FULL', `${this.#dir}: ${free} bytes free; the node takes no new documents until space is freed`);
  }
}
