/**
 * The consortium ledger on an etcd cluster (Raft): each member organisation
 * runs an etcd member, and every vault node appends through the cluster.
 *
 * Keys under a prefix: `<prefix>/head` holds {height, hash} of the newest
 * block; `<prefix>/blocks/<height, 16 digits>` holds each block. An append (a
 * run of blocks) is one transaction: if the head is still the one the run
 * extends (or, for the first block, absent), put the blocks and move the
 * head; so concurrent
 * nodes can never fork the chain, and a committed append is replicated to a
 * majority before etcd answers.
 *
 * Faults: every call has a deadline (1 s by default). When an append's
 * outcome is unknown (deadline, lost connection, leader change) or its
 * compare failed, the block at that height is read back: ours means the
 * append happened (no duplicate), another block means a real conflict, none
 * means it has not happened yet and is retried, with short backoff, until the
 * overall deadline. Then, if any attempt may have reached the cluster, the
 * append fails with LEDGER_OUTCOME_UNKNOWN (its heights in `info`): a leader
 * that lost its quorum keeps the proposal and may commit it when the quorum
 * returns, so the caller must settle it by reading the ledger later, never
 * treat it as failed. LEDGER_UNAVAILABLE is kept for appends that never left. etcd3's own retries are off so these rules hold. At the
 * cluster's backend quota the append fails at once with LEDGER_FULL (after
 * the same check), as no retry can succeed until an operator acts.
 */
import { promisify } from 'node:util';
import { constants, zstdCompress as zstdCompressCallback, zstdDecompressSync } from 'node:zlib';
import { ConsecutiveBreaker, circuitBreaker, handleWhen, noop } from 'cockatiel';
import { Etcd3, EtcdAuthenticationFailedError, EtcdPermissionDeniedError, isRecoverableError, Range } from 'etcd3';
import { fail, MedvaultError } from '../errors.ts';
import { type Block, type BlockHeader, blockHash, serializeBlock } from './block.ts';
import { checkRun, type Ledger } from './ledger.ts';

export interface EtcdLedgerOptions {
  /** Client URLs of the etcd members, e.g. http://127.0.0.1:2379. */
  hosts: string[];
  /** Key prefix of this ledger (several ledgers can share a cluster). */
  prefix?: string;
  /** Deadline of each etcd call, ms. */
  callTimeoutMs?: number;
  /** How long an append keeps retrying an unknown outcome before giving up, ms. */
  appendTimeoutMs?: number;
  /** How long a read keeps retrying (through a leader election) before LEDGER_UNAVAILABLE, ms. */
  readTimeoutMs?: number;
  /** Blocks per range read (responses must stay under gRPC's 4 MiB; a compressed 1,000-event block is ~150 KB). */
  pageSize?: number;
  /**
   * Most block bytes in one transaction: etcd refuses requests over its
   * --max-request-bytes (1.5 MiB by default), so a larger run is committed
   * as several transactions, each a compare-and-swap on the one before.
   */
  maxRequestBytes?: number;
  /**
   * TLS (hosts https://…): the CA that signed the members' certificates and, for a cluster
   * run with --client-cert-auth, this client's certificate and key (PEM).
   */
  tls?: { ca: Buffer; cert?: Buffer; key?: Buffer };
  /** etcd's own authentication (a cluster with auth enabled): a user and its password. */
  auth?: { username: string; password: string };
}

const zstdCompress = promisify(zstdCompressCallback);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Blocks are stored as zstd-compressed JSON: about 2.8x smaller for 1.4 ms per
 * 1,000 events, which is less for every member to replicate and store. A
 * value starting with "{" is read as plain JSON.
 */
function encodeBlock(block: Block): Promise<Buffer> {
  // On libuv's thread pool: compressing overlaps the next run being built.
  // One output chunk of 512 KiB holds a compressed 1,000-event block (~160 KB): the
  // compression is then one job on the pool, not a main-thread round trip per 16 KiB.
  return zstdCompress(serializeBlock(block), {
    chunkSize: 512 * 1024,
    params: { [constants.ZSTD_c_compressionLevel]: 1 },
  });
}

/** etcd's answer at its backend quota (gRPC RESOURCE_EXHAUSTED, "mvcc: database space exceeded"). */
/**
 * An error raised before the request could reach the cluster (the client's circuit breaker is
 * open, no connection could be made): such an attempt cannot commit later.
 */
function isNeverSent(err: unknown): boolean {
  const e = err as { name?: string; message?: string };
  return (
    e?.name === 'BrokenCircuitError' ||
    /ECONNREFUSED|connect failed|No connection established|Waiting for LB pick/i.test(e?.message ?? '')
  );
}

/**
 * LEDGER_UNAUTHORIZED at once when etcd refused the user's password or its permissions:
 * no retry can succeed (and nothing refused was committed).
 */
function refuseCredentials(err: unknown): void {
  if (err instanceof EtcdAuthenticationFailedError || err instanceof EtcdPermissionDeniedError) {
    fail('LEDGER_UNAUTHORIZED', `etcd: ${err.message}`, { cause: err });
  }
}

function isQuotaExceeded(err: unknown): boolean {
  return err instanceof Error && err.message.includes('database space exceeded');
}

function decodeBlock(value: Buffer): Block {
  const json = value[0] === 0x7b ? value : zstdDecompressSync(value);
  return JSON.parse(json.toString('utf8')) as Block;
}

interface HeadValue {
  height: number;
  hash: string;
}

export class EtcdLedger implements Ledger {
  readonly kind = 'etcd' as const;
  readonly #client: Etcd3;
  readonly #prefix: string;
  readonly #appendTimeoutMs: number;
  readonly #readTimeoutMs: number;
  readonly #pageSize: number;
  readonly #maxRequestBytes: number;
  #lastAppend: Promise<unknown> = Promise.resolve();
  /** Blocks being encoded ahead of their append (prepare). */
  readonly #encoded = new WeakMap<Block, Promise<Buffer>>();

  constructor(options: EtcdLedgerOptions) {
    const callTimeoutMs = options.callTimeoutMs ?? 1000;
    this.#prefix = options.prefix ?? 'medvault/ledger';
    this.#appendTimeoutMs = options.appendTimeoutMs ?? 15_000;
    this.#readTimeoutMs = options.readTimeoutMs ?? 3_000;
    this.#pageSize = options.pageSize ?? 8;
    this.#maxRequestBytes = options.maxRequestBytes ?? 1_400_000;
    this.#client = new Etcd3({
      hosts: options.hosts,
      ...(options.tls
        ? {
            credentials: {
              rootCertificate: options.tls.ca,
              ...(options.tls.cert ? { certChain: options.tls.cert } : {}),
              ...(options.tls.key ? { privateKey: options.tls.key } : {}),
            },
          }
        : {}),
      ...(options.auth ? { auth: options.auth } : {}),
      dialTimeout: callTimeoutMs,
      defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + callTimeoutMs }),
      faultHandling: {
        global: noop,
        // A member that fails is skipped for a moment, so retries go to the others.
        // (Not at the quota: every member refuses writes then, and reads must still work.)
        host: () =>
          circuitBreaker(
            handleWhen((err) => isRecoverableError(err) && !isQuotaExceeded(err)),
            { halfOpenAfter: 500, breaker: new ConsecutiveBreaker(1) },
          ),
      },
    });
  }

  #blockKey(height: number): string {
    return `${this.#prefix}/blocks/${String(height).padStart(16, '0')}`;
  }

  get #headKey(): string {
    return `${this.#prefix}/head`;
  }

  /** Runs a read with retries until the read deadline; reads are idempotent. */
  async #read<T>(what: string, op: () => Promise<T>): Promise<T> {
    const giveUpAt = Date.now() + this.#readTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      try {
        return await op();
      } catch (err) {
        refuseCredentials(err);
        if (Date.now() > giveUpAt)
          fail('LEDGER_UNAVAILABLE', `etcd: ${what}: ${(err as Error).message}`, { cause: err });
        await sleep(Math.min(25 * 2 ** attempt, 250));
      }
    }
  }

  async #headValue(): Promise<HeadValue | null> {
    const text = await this.#read('read head', () => this.#client.get(this.#headKey).string());
    return text === null ? null : (JSON.parse(text) as HeadValue);
  }

  async head(): Promise<BlockHeader | null> {
    const head = await this.#headValue();
    if (head === null) return null;
    const block = await this.get(head.height);
    if (!block) fail('LEDGER_CORRUPT', `etcd: the head names block ${head.height}, which is missing`);
    return block.header;
  }

  async get(height: number): Promise<Block | null> {
    if (!Number.isSafeInteger(height) || height < 0) return null;
    const value = await this.#read('read block', () => this.#client.get(this.#blockKey(height)).buffer());
    return value === null ? null : decodeBlock(value);
  }

  async *blocks(from = 0): AsyncIterable<Block> {
    const head = await this.#headValue();
    if (head === null) return;
    const end = Range.prefix(`${this.#prefix}/blocks/`).end;
    for (let next = Math.max(0, from); next <= head.height; ) {
      const page = await this.#read('read blocks', () =>
        this.#client
          .getAll()
          .inRange({ start: this.#blockKey(next), end })
          .sort('Key', 'Ascend')
          .limit(Math.min(this.#pageSize, head.height - next + 1))
          .buffers(),
      );
      const keys = Object.keys(page).sort();
      if (keys.length === 0) fail('LEDGER_CORRUPT', `etcd: block ${next} is missing`);
      for (const key of keys) {
        const block = decodeBlock(page[key] as Buffer);
        if (block.header.height !== next) fail('LEDGER_CORRUPT', `etcd: block ${next} is missing`);
        yield block;
        next++;
      }
    }
  }

  /** Starts compressing blocks that a later append will carry. */
  prepare(blocks: readonly Block[]): void {
    for (const block of blocks) {
      if (this.#encoded.has(block)) continue;
      const encoding = encodeBlock(block);
      encoding.catch(() => {}); // an error is met again by the append that uses it
      this.#encoded.set(block, encoding);
    }
  }

  /**
   * Appends go to etcd in the order they are called: a pipelined run is
   * encoded at once but sent only when the append before it has settled, as
   * a later, smaller transaction could otherwise reach the cluster first and
   * fail its compare against a head that is merely behind.
   */
  append(blocks: readonly Block[]): Promise<void> {
    try {
      checkRun(blocks);
    } catch (err) {
      return Promise.reject(err);
    }
    const encoding = Promise.all(blocks.map((b) => this.#encoded.get(b) ?? encodeBlock(b)));
    encoding.catch(() => {}); // observed below
    const before = this.#lastAppend;
    const run = before.then(async () => this.#appendEncoded(blocks, await encoding));
    this.#lastAppend = run.catch(() => {});
    return run;
  }

  async #appendEncoded(blocks: readonly Block[], values: Buffer[]): Promise<void> {
    // Transactions under the request limit, in order; a run that fits is one transaction.
    let from = 0;
    while (from < blocks.length) {
      let to = from;
      for (let bytes = 0; to < blocks.length && bytes + (values[to] as Buffer).length <= this.#maxRequestBytes; to++) {
        bytes += (values[to] as Buffer).length;
      }
      if (to === from) {
        const height = (blocks[from] as Block).header.height;
        fail(
          'INVALID_ARGUMENT',
          `block ${height} is ${(values[from] as Buffer).length} bytes stored, over the etcd request limit`,
        );
      }
      try {
        await this.#commit(blocks.slice(from, to), values.slice(from, to));
      } catch (err) {
        // Blocks before `from` are committed: say so, so that the caller acknowledges them.
        if (from === 0 || !(err instanceof MedvaultError)) throw err;
        throw new MedvaultError(err.code, err.message.slice(err.shortMessage.length + 2), {
          cause: err.cause,
          info: { ...err.info, committedBlocks: from },
        });
      }
      from = to;
    }
  }

  /** Commits a run of blocks as one compare-and-swap transaction on the head. */
  async #commit(blocks: readonly Block[], values: readonly Buffer[]): Promise<void> {
    const first = (blocks[0] as Block).header;
    const last = (blocks.at(-1) as Block).header;
    // The head the run extends, as the head key would hold it.
    const expected = first.height === 0 ? null : JSON.stringify({ height: first.height - 1, hash: first.prev });
    const ours = blockHash(last);
    const puts = [
      ...blocks.map((b, i) => this.#client.put(this.#blockKey(b.header.height)).value(values[i] as Buffer)),
      this.#client.put(this.#headKey).value(JSON.stringify({ height: last.height, hash: ours })),
    ];
    const giveUpAt = Date.now() + this.#appendTimeoutMs;
    // Whether an attempt may have reached the cluster without an answer: such a proposal can
    // still commit later (a leader without quorum keeps it), so giving up is not "it failed".
    let sent = false;
    const unknown = (detail: string, cause?: unknown): never =>
      fail(
        sent ? 'LEDGER_OUTCOME_UNKNOWN' : 'LEDGER_UNAVAILABLE',
        `etcd: append of blocks ${first.height}..${last.height}: ${detail}`,
        // `prev`: the head this append extends; it can land only on that head.
        { cause, info: { from: first.height, to: last.height, prev: first.prev } },
      );
    for (let attempt = 0; ; attempt++) {
      let compareFailed = false;
      let full: Error | null = null;
      try {
        const txn =
          expected === null
            ? this.#client.if(this.#headKey, 'Create', '==', 0)
            : this.#client.if(this.#headKey, 'Value', '==', expected);
        const result = await txn.then(...puts).commit();
        if (result.succeeded) return;
        compareFailed = true;
      } catch (err) {
        // At its backend quota etcd refuses every write (a NOSPACE alarm) until an operator
        // raises the quota: no retry can succeed, so after the check below, say so at once.
        refuseCredentials(err);
        if (isQuotaExceeded(err)) full = err as Error;
        else {
          if (!isNeverSent(err)) sent = true;
          if (Date.now() > giveUpAt) unknown((err as Error).message, err);
        }
        if (!full) await sleep(Math.min(10 * 2 ** attempt, 200));
      }
      // The compare failed, or the outcome is unknown: see what is there. The
      // run is one transaction, so its last block present means all of it is.
      // Reading needs the quorum too: when it cannot be read, the outcome stays unknown.
      let there: Block | null;
      let atFirst: Block | null;
      try {
        there = await this.get(last.height);
        if (there && blockHash(there.header) === ours) return; // an earlier attempt of ours committed
        atFirst = there ? there : await this.get(first.height);
      } catch (err) {
        if (!(err instanceof MedvaultError) || err.code !== 'LEDGER_UNAVAILABLE') throw err;
        if (Date.now() > giveUpAt) unknown(`it could not be read back: ${err.message}`, err);
        continue;
      }
      if (atFirst) fail('LEDGER_CONFLICT', `block ${atFirst.header.height} was appended by ${atFirst.header.signer}`);
      if (compareFailed) fail('LEDGER_CONFLICT', `the ledger head is not block ${first.height - 1}`);
      if (full) {
        fail('LEDGER_FULL', `etcd: append of blocks ${first.height}..${last.height}: ${full.message}`, { cause: full });
      }
      if (Date.now() > giveUpAt) unknown('it did not complete');
    }
  }

  async close(): Promise<void> {
    this.#client.close();
  }
}
