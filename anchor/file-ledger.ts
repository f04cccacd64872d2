/**
 * The embedded ledger: one append-only file of hash-linked blocks.
 *
 * Layout: the 8-byte magic "MVLEDG01", then one record per block:
 * u32 payload length | u32 CRC-32 of the payload | payload (block JSON).
 *
 * An append writes its record past the end and fdatasyncs before it
 * resolves, so an acknowledged block is on disk. At open the records are
 * scanned. A torn tail is only what a crash can leave: the last record cut
 * short or not yet fully on disk (its checksum fails), or zeros past the end,
 * with no complete record anywhere after it; it was never acknowledged and
 * is cut, with a log line saying what was cut. Anything else is damage and
 * the ledger refuses to open, naming the byte offset, and changes nothing: a
 * record whose length, checksum or JSON is wrong with a complete record after
 * it (found by searching the rest of the file for one), a complete record
 * that does not link, or a tail cut into a block the node had acknowledged
 * (`acknowledged`: the highest height the node's own records refer to).
 * `medvault ledger repair` copies the intact prefix aside; nothing is ever
 * cut in place but a torn tail.
 *
 * A read-only open (verification, `--ledger` checks) takes no lock and
 * writes nothing, so it works while a node runs; it reports a torn tail
 * (`tornTail`) instead of cutting it.
 * A lock file keeps a second writer from appending to the same file.
 */
import { type FileHandle, open, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { crc32 } from 'node:zlib';
import { fsyncDirectory, takeLock } from '../durable.ts';
import { check, fail, isDiskFull } from '../errors.ts';
import { type Logger, logger as processLogger } from '../log.ts';
import { type Block, type BlockHeader, blockHash, GENESIS_PREV, serializeBlock } from './block.ts';
import { checkRun, extendsHead, type Ledger } from './ledger.ts';

const MAGIC = Buffer.from('MVLEDG01');
const RECORD_HEADER = 8;
const MAX_RECORD = 64 * 1024 * 1024;

export interface FileLedgerOptions {
  /** Where the torn-tail line goes; the process logger (stderr) by default. */
  logger?: Logger;
  /** Open to read only: no lock, nothing cut or written (a torn tail is reported in `tornTail`). */
  readOnly?: boolean;
  /**
   * The highest block height the node acknowledged and still refers to: a ledger that ends
   * below it lost acknowledged blocks, and is refused rather than cut.
   */
  acknowledged?: number;
}

/** A torn tail found at open: where it starts, how long it is, and what was wrong. */
export interface TornTail {
  offset: number;
  bytes: number;
  problem: string;
}

/** What a scan of the file found. */
interface Scan {
  offsets: number[];
  /** The end of the intact records. */
  size: number;
  head: BlockHeader | null;
  tornTail: TornTail | null;
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

/**
 * Whether a complete record (a length that fits, a matching checksum, a block as JSON) starts
 * anywhere in (from, to): proof that what is at `from` is damage, not a torn tail, since a crash
 * leaves nothing complete after the record it interrupted. Candidates are the positions whose
 * payload would start with '{'.
 */
async function completeRecordAfter(handle: FileHandle, from: number, to: number): Promise<number | null> {
  const chunk = Buffer.alloc(1 << 20);
  const header = Buffer.alloc(RECORD_HEADER);
  for (let base = from + 1; base + RECORD_HEADER < to; base += chunk.length - RECORD_HEADER) {
    const { bytesRead } = await handle.read(chunk, 0, Math.min(chunk.length, to - base), base);
    const view = chunk.subarray(0, bytesRead);
    for (let at = view.indexOf(0x7b, RECORD_HEADER); at >= 0; at = view.indexOf(0x7b, at + 1)) {
      const start = base + at - RECORD_HEADER;
      if (start <= from) continue;
      await handle.read(header, 0, RECORD_HEADER, start);
      const length = header.readUInt32BE(0);
      if (length === 0 || length > MAX_RECORD || start + RECORD_HEADER + length > to) continue;
      const payload = Buffer.alloc(length);
      await handle.read(payload, 0, length, start + RECORD_HEADER);
      if (crc32(payload) !== header.readUInt32BE(4)) continue;
      try {
        if ((JSON.parse(payload.toString('utf8')) as Block).header) return start;
      } catch {}
    }
    if (base + bytesRead >= to) break;
  }
  return null;
}

const REPAIR =
  '; the file is left as it is: `medvault ledger repair --ledger file:PATH -o COPY` copies the intact blocks aside';

/** LEDGER_CORRUPT when the intact blocks end below a height the node acknowledged. */
function checkAcknowledged(path: string, blocks: number, acknowledged: number | undefined): void {
  if (acknowledged === undefined || acknowledged < blocks) return;
  fail(
    'LEDGER_CORRUPT',
    `${path}: ends at block ${blocks - 1}, but this node acknowledged block ${acknowledged}: acknowledged blocks are missing${REPAIR}`,
  );
}

async function acquireLock(lockPath: string): Promise<void> {
  await takeLock(lockPath, (pid) =>
    fail('LEDGER_LOCKED', pid === null ? 'could not take the lock' : `held by process ${pid}`),
  );
}

/**
 * Reads the records from the start while each is whole, checksummed and a block that links to
 * the one before. `problem` says what stopped the walk at `end`: `complete` when it is a whole
 * record with a good checksum (written whole, so no crash made it: damage wherever it is),
 * otherwise a record cut short or not checksummed (a torn write, if nothing complete follows).
 */
async function walkRecords(
  handle: FileHandle,
  path: string,
): Promise<{
  offsets: number[];
  head: BlockHeader | null;
  end: number;
  size: number;
  problem: { text: string; complete: boolean } | null;
}> {
  const { size } = await handle.stat();
  const magic = Buffer.alloc(MAGIC.length);
  await handle.read(magic, 0, MAGIC.length, 0);
  check(magic.equals(MAGIC), 'LEDGER_CORRUPT', `${path} is not a medvault ledger file`);
  const offsets: number[] = [];
  let head: BlockHeader | null = null;
  let offset = MAGIC.length;
  const recordHeader = Buffer.alloc(RECORD_HEADER);
  const stop = (text: string, complete = false) => ({ offsets, head, end: offset, size, problem: { text, complete } });
  while (offset < size) {
    if (size - offset < RECORD_HEADER) return stop('a record header cut short');
    await handle.read(recordHeader, 0, RECORD_HEADER, offset);
    const length = recordHeader.readUInt32BE(0);
    if (length === 0 || length > MAX_RECORD) return stop(`an impossible record length ${length}`);
    if (offset + RECORD_HEADER + length > size) return stop('a record cut short');
    const payload = Buffer.alloc(length);
    await handle.read(payload, 0, length, offset + RECORD_HEADER);
    if (crc32(payload) !== recordHeader.readUInt32BE(4)) return stop('a record whose checksum does not match');
    let block: Block;
    try {
      block = JSON.parse(payload.toString('utf8')) as Block;
    } catch {
      return stop('a record that is not JSON', true);
    }
    if (block.header?.height !== offsets.length || block.header.prev !== (head ? blockHash(head) : GENESIS_PREV)) {
      return stop(`a block that does not link to block ${offsets.length - 1}`, true);
    }
    offsets.push(offset);
    head = block.header;
    offset += RECORD_HEADER + length;
  }
  return { offsets, head, end: offset, size, problem: null };
}

export class FileLedger implements Ledger {
  readonly kind = 'file' as const;
  readonly path: string;
  /** A torn tail a read-only open found (and left); null when there is none or it was cut. */
  readonly tornTail: TornTail | null;
  readonly #handle: FileHandle;
  readonly #offsets: number[];
  readonly #readOnly: boolean;
  #size: number;
  #head: BlockHeader | null;
  #tail: Promise<unknown> = Promise.resolve();
  #closed = false;

  private constructor(path: string, handle: FileHandle, scan: Scan, readOnly: boolean) {
    this.path = path;
    this.#handle = handle;
    this.#offsets = scan.offsets;
    this.#size = scan.size;
    this.#head = scan.head;
    this.#readOnly = readOnly;
    this.tornTail = readOnly ? scan.tornTail : null;
  }

  static async open(path: string, options: FileLedgerOptions = {}): Promise<FileLedger> {
    if (options.readOnly) {
      const handle = await open(path, 'r').catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') fail('LEDGER_EMPTY', `${path} does not exist`);
        throw err;
      });
      try {
        return new FileLedger(path, handle, await FileLedger.#scan(handle, path, options), true);
      } catch (err) {
        await handle.close();
        throw err;
      }
    }
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
      const scan = await FileLedger.#scan(handle, path, options);
      if (scan.tornTail) {
        await handle.truncate(scan.size);
        await handle.sync();
        (options.logger ?? processLogger).warn(
          {
            ledger: path,
            offset: scan.tornTail.offset,
            cutBytes: scan.tornTail.bytes,
            problem: scan.tornTail.problem,
            blocks: scan.offsets.length,
          },
          'file ledger: cut a torn tail that was never acknowledged',
        );
      }
      return new FileLedger(path, handle, scan, false);
    } catch (err) {
      await handle.close();
      await rm(`${path}.lock`, { force: true });
      throw err;
    }
  }

  /**
   * Reads every record and checks its checksum and link; finds a torn tail (to cut, or to
   * report when read-only) and refuses damage (LEDGER_CORRUPT naming the byte offset).
   */
  static async #scan(handle: FileHandle, path: string, options: FileLedgerOptions): Promise<Scan> {
    const walk = await walkRecords(handle, path);
    const { offsets, head, end, size, problem } = walk;
    if (problem?.complete) fail('LEDGER_CORRUPT', `${path}: ${problem.text} at byte ${end}${REPAIR}`);
    if (problem) {
      const after = (await allZero(handle, end, size)) ? null : await completeRecordAfter(handle, end, size);
      if (after !== null) {
        fail(
          'LEDGER_CORRUPT',
          `${path}: ${problem.text} at byte ${end}, with a complete record at byte ${after} after it: damage, not a torn write${REPAIR}`,
        );
      }
    }
    checkAcknowledged(path, offsets.length, options.acknowledged);
    return {
      offsets,
      size: end,
      head,
      tornTail: problem ? { offset: end, bytes: size - end, problem: problem.text } : null,
    };
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
    check(!this.#readOnly, 'LEDGER_UNAVAILABLE', 'the ledger is open to read only');
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
      // A full disk is said as such (as etcd's quota is): no retry helps until space is freed.
      if (isDiskFull(err))
        fail('LEDGER_FULL', `the disk of ${this.path} is full: ${(err as Error).message}`, { cause: err });
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
    if (!this.#readOnly) await rm(`${this.path}.lock`, { force: true });
  }
}

/**
 * Copies the intact blocks of the file ledger at `path` (every record from the start that
 * verifies and links) to a new file `output`, fsync'd; `path` is only read. What the scan of a
 * damaged ledger would refuse is left out, and said.
 */
export async function repairFileLedger(
  path: string,
  output: string,
): Promise<{ blocks: number; bytes: number; leftOut: number; damageAt: number; problem: string }> {
  const handle = await open(path, 'r');
  try {
    const { offsets, end, size, problem } = await walkRecords(handle, path);
    const out = await open(output, 'wx', 0o644);
    try {
      const copy = Buffer.alloc(1 << 20);
      for (let at = 0; at < end; at += copy.length) {
        const { bytesRead } = await handle.read(copy, 0, Math.min(copy.length, end - at), at);
        await out.write(copy, 0, bytesRead, at);
      }
      await out.sync();
    } finally {
      await out.close();
    }
    await fsyncDirectory(dirname(output));
    return {
      blocks: offsets.length,
      bytes: end,
      leftOut: size - end,
      damageAt: end,
      problem: problem?.text ?? 'nothing: the ledger is intact',
    };
  } finally {
    await handle.close();
  }
}
