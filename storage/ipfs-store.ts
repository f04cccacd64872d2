/**
 * The ipfs store: ciphertext in a private IPFS network (production: kubo with
 * a swarm key and no public bootstrap peers), through `kubo-rpc-client`
 * against the node's RPC API.
 *
 * - put: add as CIDv1 with raw leaves, pinned; SHA-256 computed on the way
 *   (the CID hashes blocks, not the whole blob). The ref is the CID.
 * - get: cat, with a deadline on every call (a missing block would otherwise
 *   be waited for, even on a node told to stay offline); ranges by offset.
 * - delete: unpin, garbage-collect the repo, then prove it: no block of the
 *   blob's DAG may remain in `refs/local`, compared by multihash (a node may
 *   list keys as raw CIDv1 whatever codec the block was added with).
 * - list: the recursive pins (this store pins everything it holds).
 *
 * What "for good" cannot cover: other IPFS nodes that fetched the blocks
 * keep them until they unpin and collect too; in a private swarm that is
 * the consortium's own nodes, each of which must run the erasure. A put cut
 * off midway pins nothing, but its blocks stay in the repo until the next GC.
 */
import { createHash, randomBytes } from 'node:crypto';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { Readable } from 'node:stream';
import { create, type KuboRPCClient } from 'kubo-rpc-client';
import { CID } from 'multiformats/cid';
import { check, type ErrorCode, fail, MedvaultError } from '../errors.ts';
import { type BlobStore, type ByteRange, type DeleteResult, type PutResult, resolveRange } from './blob-store.ts';

export interface IpfsStoreOptions {
  /** The RPC API's base URL, e.g. http://127.0.0.1:5001 (without /api/v0). */
  url: string;
  /** Deadline of each call, ms (default 30 s; a whole put or get may take longer, a call between chunks may not). */
  timeoutMs?: number;
}

function ipfsError(err: unknown, what: string): MedvaultError {
  if (err instanceof MedvaultError) return err;
  const e = err as { name?: string; message?: string; cause?: { code?: string } };
  const message = e?.message ?? String(err);
  let code: ErrorCode = 'STORE_UNAVAILABLE';
  if (e?.name === 'TimeoutError' || /timed? ?out/i.test(message)) code = 'STORE_TIMEOUT';
  else if (/not pinned|not found|no link named|does not exist/i.test(message)) code = 'STORE_NOT_FOUND';
  return new MedvaultError(code, `ipfs: ${what}: ${e?.cause?.code ?? message}`, { cause: err });
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

export class IpfsBlobStore implements BlobStore {
  readonly kind = 'ipfs';
  readonly #ipfs: KuboRPCClient;
  readonly #url: string;
  readonly #agent: HttpAgent;
  readonly #request: typeof httpRequest;
  readonly #timeout: number;

  constructor(options: IpfsStoreOptions) {
    this.#url = options.url.replace(/\/$/, '');
    // https: kubo behind a TLS-terminating proxy (kubo's RPC API has no TLS of its own). A
    // private CA is given to the process (NODE_EXTRA_CA_CERTS): kubo-rpc-client's fetch takes no CA.
    const tls = this.#url.startsWith('https:');
    this.#agent = tls ? new HttpsAgent({ keepAlive: true }) : new HttpAgent({ keepAlive: true });
    this.#request = tls ? httpsRequest : httpRequest;
    this.#ipfs = create({ url: `${this.#url}/api/v0` });
    this.#timeout = options.timeoutMs ?? 30_000;
  }

  #cid(ref: string): CID {
    let cid: CID;
    try {
      cid = CID.parse(ref);
    } catch {
      return fail('STORE_BAD_REF', 'an ipfs blob ref is a CIDv1');
    }
    check(cid.version === 1 && cid.toString() === ref, 'STORE_BAD_REF', 'an ipfs blob ref is a canonical CIDv1');
    return cid;
  }

  async put(source: AsyncIterable<Uint8Array>): Promise<PutResult> {
    const hash = createHash('sha256');
    let size = 0;
    let sourceError: unknown = null;
    async function* hashing(): AsyncGenerator<Uint8Array> {
      try {
        for await (const chunk of source) {
          hash.update(chunk);
          size += chunk.length;
          yield chunk;
        }
      } catch (err) {
        sourceError = err;
        throw err;
      }
    }
    try {
      const cid = await this.#add(hashing());
      return { ref: cid, size, sha256: hash.digest('hex') };
    } catch (err) {
      if (sourceError) throw sourceError;
      throw ipfsError(err, 'add');
    }
  }

  /**
   * POST /api/v0/add as one streamed multipart file, through node:http: the
   * RPC client's own add held the whole body in memory here (RSS grew with
   * the blob), which a store that must stream cannot do.
   */
  async #add(content: AsyncIterable<Uint8Array>): Promise<string> {
    // The node may answer in another multibase (js-ipfs: base58btc); refs are canonical base32 CIDv1.
    return CID.parse(await this.#post(content))
      .toV1()
      .toString();
  }

  #post(content: AsyncIterable<Uint8Array>): Promise<string> {
    const boundary = `medvault-${randomBytes(12).toString('hex')}`;
    const url = new URL(`${this.#url}/api/v0/add?cid-version=1&raw-leaves=true&pin=true&progress=false&quieter=true`);
    async function* body(): AsyncGenerator<Uint8Array | string> {
      yield `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="blob"\r\nContent-Type: application/octet-stream\r\n\r\n`;
      yield* content;
      yield `\r\n--${boundary}--\r\n`;
    }
    return new Promise((resolve, reject) => {
      const req = this.#request(
        url,
        {
          method: 'POST',
          headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
          agent: this.#agent,
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            text += c;
          });
          res.on('error', reject);
          res.on('end', () => {
            const lines = text.trim().split('\n').filter(Boolean);
            try {
              const last = JSON.parse(lines.at(-1) ?? '{}') as { Hash?: string; Message?: string };
              if (res.statusCode !== 200 || !last.Hash) reject(new Error(last.Message ?? `HTTP ${res.statusCode}`));
              else resolve(last.Hash);
            } catch {
              reject(new Error(`HTTP ${res.statusCode}: ${text.slice(0, 200)}`));
            }
          });
        },
      );
      req.setTimeout(this.#timeout, () =>
        req.destroy(Object.assign(new Error('request timed out'), { name: 'TimeoutError' })),
      );
      req.on('error', reject);
      const source = Readable.from(body(), { objectMode: false });
      source.on('error', (err) => req.destroy(err));
      source.pipe(req);
    });
  }

  async get(ref: string, range?: ByteRange): Promise<Readable> {
    const cid = this.#cid(ref);
    const info = await this.stat(ref);
    if (!info) fail('STORE_NOT_FOUND', ref);
    const { start, end } = resolveRange(range, info.size);
    if (start === end) return Readable.from([]);
    const chunks = this.#ipfs.cat(cid, { offset: start, length: end - start, timeout: this.#timeout });
    return Readable.from(
      (async function* () {
        try {
          yield* chunks;
        } catch (err) {
          throw ipfsError(err, `cat ${ref}`);
        }
      })(),
      { objectMode: false },
    );
  }

  /** Whether this node pins the blob: the store's notion of holding it. */
  async #pinned(cid: CID): Promise<boolean> {
    try {
      for await (const pin of this.#ipfs.pin.ls({ paths: [cid], type: 'recursive', timeout: this.#timeout })) {
        if (pin.cid.multihash.bytes.length > 0) return true;
      }
      return false;
    } catch (err) {
      const mapped = ipfsError(err, 'pin ls');
      if (mapped.code === 'STORE_NOT_FOUND') return false;
      throw mapped;
    }
  }

  async stat(ref: string): Promise<{ size: number } | null> {
    const cid = this.#cid(ref);
    if (!(await this.#pinned(cid))) return null;
    try {
      const stat = await this.#ipfs.files.stat(`/ipfs/${cid}`, { timeout: this.#timeout });
      return { size: Number(stat.size) };
    } catch (err) {
      throw ipfsError(err, `stat ${ref}`);
    }
  }

  async has(ref: string): Promise<boolean> {
    return this.#pinned(this.#cid(ref));
  }

  /** Blocks no pin holds (a put cut off midway leaves its blocks so): the repo is collected. */
  async collectStrays(_options: { olderThanMs: number }): Promise<string[]> {
    let collected = 0;
    try {
      for await (const gc of this.#ipfs.repo.gc({ timeout: this.#timeout })) {
        if (gc.err) throw gc.err;
        collected++;
      }
    } catch (err) {
      throw ipfsError(err, 'repo gc');
    }
    return collected > 0 ? [`ipfs: ${collected} unpinned blocks collected`] : [];
  }

  async delete(ref: string): Promise<DeleteResult> {
    const cid = this.#cid(ref);
    if (!(await this.#pinned(cid))) return { ref, removed: false, confirmed: 'ipfs: not pinned on this node' };
    try {
      // The DAG's blocks, by multihash, before they go.
      const blocks = new Set([hex(cid.multihash.bytes)]);
      for await (const child of this.#ipfs.refs(cid, { recursive: true, unique: true, timeout: this.#timeout })) {
        if (child.err) throw child.err;
        blocks.add(hex(CID.parse(child.ref).multihash.bytes));
      }
      await this.#ipfs.pin.rm(cid, { timeout: this.#timeout });
      for await (const gc of this.#ipfs.repo.gc({ timeout: this.#timeout })) {
        if (gc.err) throw gc.err;
      }
      let left = 0;
      for await (const local of this.#ipfs.refs.local({ timeout: this.#timeout })) {
        if (local.err) throw local.err;
        if (blocks.has(hex(CID.parse(local.ref).multihash.bytes))) left++;
      }
      if (left > 0) {
        return {
          ref,
          removed: false,
          confirmed: `ipfs: unpinned and GC'd, but ${left} of ${blocks.size} blocks remain (other pinned content shares them)`,
        };
      }
      return {
        ref,
        removed: true,
        confirmed: `ipfs: unpinned, repo GC'd, none of its ${blocks.size} blocks left in refs/local`,
      };
    } catch (err) {
      throw ipfsError(err, `delete ${ref}`);
    }
  }

  async *list(): AsyncIterable<string> {
    try {
      for await (const pin of this.#ipfs.pin.ls({ type: 'recursive', timeout: this.#timeout })) {
        if (pin.cid.version === 1) yield pin.cid.toString();
      }
    } catch (err) {
      throw ipfsError(err, 'pin ls');
    }
  }

  async close(): Promise<void> {
    this.#agent.destroy();
  }
}
