/**
 * The embedded ledger: one append-only file of hash-linked blocks.
 *
 * Layout: the 8-byte magic "MVLEDG01", then one record per block:
 * u32 payload length | u32 CRC-32 of the payload | payload (block JSON).
 *
 * An append writes its record past the end and fdatasyncs before it
 * resolves, so an acknowledged block is on disk. At open, the records are
 * scanned; a torn tail (a record cut short, or a last record whose checksum,
 * JSON or link is wrong: a write the crash interrupted, never acknowledged)
 * is cut off with a log line saying what was cut; so is a tail of zeros (the
 * file grew but the data never reached the disk). A bad record with other data
 * after it is not a torn write but damage, and the ledger refuses to open.
 * A lock file keeps a second process from appending to the same file.
 */
import { type FileHandle, open, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { crc32 } from 'node:zlib';
import { fsyncDirectory } from '../durable.ts';
import { check, fail } from '../errors.ts';
import { type Logger, logger as processLogger } from '../log.ts';
import { type Block, type BlockHeader, blockHash, GENESIS_PREV, serializeBlock } from './block.ts';
import { checkRun, extendsHead, type Ledger } from './ledger.ts';

const MAGIC = Buffer.from('MVLEDG01');
const RECORD_HEADER = 8;
const MAX_RECORD = 64 * 1024 * 1024;

export interface FileLedgerOptions {
  /** Where the torn-tail line goes; the process logger (stderr) by default. */
  logger?: Logger;
}

/** True when bytes [from, to) of the file are all zero (a tail extended but never written). */
async function allZero(handle: FileHandle, from: number, to: number): Promise<boolean> {
  const buffer = Buffer.alloc(64 * 1024);
  for (let at = from; at < to; at += buffer.length) {
    const { bytesRead } = await handle.read(buffer, 0, Math.min(buffer.length, to - at), at);
    if (buffer.subarray(0, bytesRead).some((b) => b !== 0)) return false;
  }
  return true;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function acquireLock(lockPath: string): Promise<void> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(lockPath, String(process.pid), { flag: 'wx' });
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number((await readFile(lockPath, 'utf8').catch(() => '')).trim());
      if (Number.isInteger(pid) && pid > 0 && processAlive(pid)) fail('LEDGER_LOCKED', `held by process ${pid}`);
      await rm(lockPath, { force: true }); // stale: its process is gone
    }
  }
  fail('LEDGER_LOCKED', 'could not take the lock');
}

export class FileLedger implements Ledger {
  readonly kind = 'file' as const;
  readonly path: string;
  readonly #handle: FileHandle;
  readonly #offsets: number[];
  #size: number;
  #head: BlockHeader | null;
  #tail: Promise<unknown> = Promise.resolve();
  #closed = false;

  private constructor(path: string, handle: FileHandle, offsets: number[], size: number, head: BlockHeader | null) {
    this.path = path;
    this.#handle = handle;
    this.#offsets = offsets;
    this.#size = size;
    this.#head = head;
  }

  static async open(path: string, options: FileLedgerOptions = {}): Promise<FileLedger> {
    await acquireLock(`${path}.lock`);
    let handle: FileHandle;
    try {
      handle = await open(path, 'r+');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      handle = await open(path, 'wx+', 0o644);
      await handle.write(MAGIC, 0, MAGIC.length, 0);
      await handle.sync();
      await fsyncDirectory(dirname(path));
    }
    try {
      const { offsets, size, head } = await FileLedger.#scan(handle, path, options.logger ?? processLogger);
      return new FileLedger(path, handle, offsets, size, head);
    } catch (err) {
      await handle.close();
      await rm(`${path}.lock`, { force: true });
      throw err;
    }
  }

  /** Reads every record, checks its checksum and link, and cuts a torn tail. */
  static async #scan(handle: FileHandle, path: string, logger: Logger) {
    const { size } = await handle.stat();
    const magic = Buffer.alloc(MAGIC.length);
    await handle.read(magic, 0, MAGIC.length, 0);
    check(magic.equals(MAGIC), 'LEDGER_CORRUPT', `${path} is not a medvault ledger file`);
    const offsets: number[] = [];
    let head: BlockHeader | null = null;
    let offset = MAGIC.length;
    const recordHeader = Buffer.alloc(RECORD_HEADER);
    while (offset < size) {
      const problem = await (async (): Promise<string | null> => {
        if (size - offset < RECORD_HEADER) return 'a record header cut short';
        await handle.read(recordHeader, 0, RECORD_HEADER, offset);
        const length = recordHeader.readUInt32BE(0);
        if (length === 0 || length > MAX_RECORD) return `an impossible record length ${length}`;
        if (offset + RECORD_HEADER + length > size) return 'a record cut short';
        const payload = Buffer.alloc(length);
        await handle.read(payload, 0, length, offset + RECORD_HEADER);
        if (crc32(payload) !== recordHeader.readUInt32BE(4)) return 'a record whose checksum does not match';
        let block: Block;
        try {
          block = JSON.parse(payload.toString('utf8')) as Block;
        } catch {
          return 'a record that is not JSON';
        }
        const expectedPrev = head ? blockHash(head) : GENESIS_PREV;
        if (block.header?.height !== offsets.length || block.header.prev !== expectedPrev) {
          return `a block that does not link to block ${offsets.length - 1}`;
        }
        offsets.push(offset);
        head = block.header;
        offset += RECORD_HEADER + length;
        return null;
      })();
      if (problem === null) continue;
      const length = size - offset >= RECORD_HEADER ? recordHeader.readUInt32BE(0) : 0;
      const isTail = offset + RECORD_HEADER + length >= size || (await allZero(handle, offset, size));
      if (!isTail) fail('LEDGER_CORRUPT', `${path}: ${problem} at byte ${offset}, with data after it`);
      await handle.truncate(offset);
      await handle.sync();
      logger.warn(
        { ledger: path, offset, cutBytes: size - offset, reason: problem, blocks: offsets.length },
        'file ledger: cut a torn tail that was never acknowledged',
      );
      return { offsets, size: offset, head };
    }
    return { offsets, size, head };
  }

  async head(): Promise<BlockHeader | null> {
    return this.#head;
  }

  async get(height: number): Promise<Block | null> {
    if (!Number.isSafeInteger(height) || height < 0 || height >= this.#offsets.length) return null;
    const offset = this.#offsets[height] as number;
    const recordHeader = Buffer.alloc(RECORD_HEADER);
    await this.#handle.read(recordHeader, 0, RECORD_HEADER, offset);
    const payload = Buffer.alloc(recordHeader.readUInt32BE(0));
    await this.#handle.read(payload, 0, payload.length, offset + RECORD_HEADER);
    return JSON.parse(payload.toString('utf8')) as Block;
  }

  async *blocks(from = 0): AsyncIterable<Block> {
    const last = this.#offsets.length;
    for (let height = Math.max(0, from); height < last; height++) yield (await this.get(height)) as Block;
  }

  append(blocks: readonly Block[]): Promise<void> {
    const run = this.#tail.then(() => this.#append(blocks));
    this.#tail = run.catch(() => {});
    return run;
  }

  async #append(blocks: readonly Block[]): Promise<void> {
    check(!this.#closed, 'LEDGER_UNAVAILABLE', 'the ledger is closed');
    checkRun(blocks);
    const first = blocks[0] as Block;
    if (!extendsHead(first, this.#head)) {
      fail('LEDGER_CONFLICT', `block ${first.header.height} does not extend head ${this.#head?.height ?? 'none'}`);
    }
    const records: Buffer[] = [];
    const offsets: number[] = [];
    let at = this.#size;
    for (const block of blocks) {
      const payload = serializeBlock(block);
      const header = Buffer.alloc(RECORD_HEADER);
      header.writeUInt32BE(payload.length, 0);
      header.writeUInt32BE(crc32(payload), 4);
      records.push(header, payload);
      offsets.push(at);
      at += RECORD_HEADER + payload.length;
    }
    const record = Buffer.concat(records);
    try {
      let written = 0;
      while (written < record.length) {
        const { bytesWritten } = await this.#handle.write(
          record,
          written,
          record.length - written,
          this.#size + written,
        );
        written += bytesWritten;
      }
      await this.#handle.datasync();
    } catch (err) {
      await this.#handle.truncate(this.#size).catch(() => {});
      fail('LEDGER_UNAVAILABLE', `cannot append to ${this.path}: ${(err as Error).message}`, { cause: err });
    }
    this.#offsets.push(...offsets);
    this.#size += record.length;
    this.#head = (blocks.at(-1) as Block).header;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#tail;
    await this.#handle.close();
    await rm(`${this.path}.lock`, { force: true });
  }
}
