/**
 * The BlobStore contract as one suite, run against every backend: streaming
 * round trips, idempotent puts, ranges, missing blobs, delete then proven
 * gone, a failed put leaving nothing, small blobs read whole and checked,
 * streams cut at their recorded size, and 1 GiB with bounded memory.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { isMedvaultError } from '../../errors.ts';
import { type BlobStore, type PutResult, readChecked, readSized } from '../../storage/blob-store.ts';
import type { StoreConfig } from '../../storage/open.ts';
import { bytes, ROOT } from '../helpers.ts';

async function collect(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

/** Yields `data` in pieces of `piece` bytes, as a network would. */
async function* pieces(data: Uint8Array, piece = 65_536): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < data.length; i += piece) yield data.subarray(i, i + piece);
}

async function refs(store: BlobStore): Promise<string[]> {
  const out: string[] = [];
  for await (const ref of store.list()) out.push(ref);
  return out;
}

const sha = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');
const GIB = 1024 ** 3;
// Growth of resident memory over the child's own start (Node with TypeScript
// stripping and a store client: ~120 MiB). Streaming 1 GiB measured 80-135 MiB
// of growth here (collector lag on the pieces in flight); a store holding the
// blob would add over 1024.
const RSS_GROWTH_LIMIT_MIB = 256;

export interface ConformanceOptions {
  /** A ref of the right form that the store does not hold. */
  missingRef: () => string;
  /** How a child process opens the same store (for the 1 GiB case). */
  config?: () => StoreConfig;
  /** The refs `list()` yields for one stored blob (default: its ref, once). */
  listed?: (put: PutResult) => string[];
}

export function blobStoreConformance(name: string, open: () => Promise<BlobStore>, options: ConformanceOptions): void {
  describe(`${name} blob store: the contract`, () => {
    it.each([0, 1, 65_537, 5 * 1024 * 1024 + 3])(
      'round-trips %i bytes, streaming in pieces, with size and SHA-256',
      async (size) => {
        const store = await open();
        const data = bytes(size, size + 5);
        const put = await store.put(pieces(data));
        expect(put).toMatchObject({ size, sha256: sha(data) });
        expect(Buffer.compare(await collect(await store.get(put.ref)), data)).toBe(0);
        expect(await store.stat(put.ref)).toEqual({ size });
        expect(await store.has(put.ref)).toBe(true);
      },
    );

    it('puts are idempotent: the same bytes give the same ref, held once', async () => {
      const store = await open();
      const data = bytes(100_000, 77);
      const a = await store.put(pieces(data, 1000));
      const b = await store.put(pieces(data, 33_333));
      expect(b).toEqual(a);
      const listed = options.listed?.(a) ?? [a.ref];
      expect((await refs(store)).filter((r) => listed.includes(r)).sort()).toEqual([...listed].sort());
    });

    it('serves ranges', async () => {
      const store = await open();
      const data = bytes(300_000, 9);
      const { ref } = await store.put(pieces(data));
      expect(
        Buffer.compare(
          await collect(await store.get(ref, { start: 1000, end: 250_001 })),
          data.subarray(1000, 250_001),
        ),
      ).toBe(0);
      expect(Buffer.compare(await collect(await store.get(ref, { start: 299_990 })), data.subarray(299_990))).toBe(0);
      expect((await collect(await store.get(ref, { start: 5, end: 5 }))).length).toBe(0);
      const err = await store.get(ref, { start: 10, end: 300_001 }).catch((e) => e);
      expect(isMedvaultError(err, 'INVALID_ARGUMENT')).toBe(true);
    });

    it('a missing blob: stat null, has false, get STORE_NOT_FOUND, delete removes nothing', async () => {
      const store = await open();
      const ref = options.missingRef();
      expect(await store.stat(ref)).toBeNull();
      expect(await store.has(ref)).toBe(false);
      expect(isMedvaultError(await store.get(ref).catch((e) => e), 'STORE_NOT_FOUND')).toBe(true);
      expect((await store.delete(ref)).removed).toBe(false);
    });

    it('a malformed ref is STORE_BAD_REF', async () => {
      const store = await open();
      expect(isMedvaultError(await store.stat('../../etc/passwd').catch((e) => e), 'STORE_BAD_REF')).toBe(true);
    });

    it('delete removes the blob for good: not listed, not readable, a second delete finds nothing', async () => {
      const store = await open();
      const { ref } = await store.put(pieces(bytes(70_000, 123)));
      const result = await store.delete(ref);
      expect(result).toMatchObject({ ref, removed: true });
      expect(result.confirmed.length).toBeGreaterThan(0);
      expect(await store.has(ref)).toBe(false);
      expect(await refs(store)).not.toContain(ref);
      expect(isMedvaultError(await store.get(ref).catch((e) => e), 'STORE_NOT_FOUND')).toBe(true);
      expect((await store.delete(ref)).removed).toBe(false);
    });

    it('a blob read whole (a small fetch) comes checked: another size or hash is STORE_INTEGRITY', async () => {
      const store = await open();
      const data = bytes(3000, 31);
      const { ref, sha256 } = await store.put(pieces(data, 1000));
      expect(Buffer.compare(await readChecked(store, ref, 3000, sha256), data)).toBe(0);
      const code = (p: Promise<unknown>) =>
        p.then(
          () => 'no error',
          (e: { code?: string }) => e.code,
        );
      expect(await code(readChecked(store, ref, 2999, sha256))).toBe('STORE_INTEGRITY'); // the blob is longer
      expect(await code(readChecked(store, ref, 3001, sha256))).toBe('STORE_INTEGRITY'); // the blob is shorter
      expect(await code(readChecked(store, ref, 3000, sha(bytes(3000, 32))))).toBe('STORE_INTEGRITY');
      expect(await code(readChecked(store, options.missingRef(), 3000, sha256))).toBe('STORE_NOT_FOUND');
    });

    it('a blob streamed at its recorded size: refused before a byte is read when the store holds another size', async () => {
      const store = await open();
      const data = bytes(200_000, 33);
      const { ref } = await store.put(pieces(data));
      expect(Buffer.compare(await collect(await readSized(store, ref, 200_000)), data)).toBe(0);
      for (const size of [199_999, 200_001]) {
        const err = await readSized(store, ref, size).catch((e) => e);
        expect(isMedvaultError(err, 'STORE_INTEGRITY'), String(err)).toBe(true);
      }
      const missing = await readSized(store, options.missingRef(), 200_000).catch((e) => e);
      expect(isMedvaultError(missing, 'STORE_NOT_FOUND'), String(missing)).toBe(true);
    });

    it('a blob that changes size once asked (the store said the recorded size) still ends at it, or fails STORE_INTEGRITY', async () => {
      const store = await open();
      const data = bytes(200_000, 34);
      const { ref } = await store.put(pieces(data));
      for (const size of [199_999, 200_001]) {
        // The size asked says `size`, the bytes then read are the 200,000 stored.
        const changed = { stat: async () => ({ size }), get: (r: string) => store.get(r) } as unknown as BlobStore;
        const err = await collect(await readSized(changed, ref, size)).catch((e) => e);
        expect(isMedvaultError(err, 'STORE_INTEGRITY'), String(err)).toBe(true);
      }
    });

    it('a put whose source fails midway leaves nothing behind', async () => {
      const store = await open();
      const before = await refs(store);
      async function* failing(): AsyncGenerator<Uint8Array> {
        yield bytes(200_000, 1);
        throw new Error('client went away');
      }
      await expect(store.put(failing())).rejects.toThrow('client went away');
      expect(await refs(store)).toEqual(before);
    });

    if (options.config) {
      const config = options.config;
      it('1 GiB in and out with bounded memory', async () => {
        // Asynchronously: a server under test may run in this very process.
        const { stdout } = await promisify(execFile)(
          process.execPath,
          [join(ROOT, 'test/storage/fixtures/big-blob.ts'), JSON.stringify(config()), String(GIB)],
          { timeout: 600_000 },
        );
        const r = JSON.parse(stdout.trim().split('\n').at(-1) as string);
        expect(r.size).toBe(GIB);
        expect(r.sha256).toBe(r.inHash);
        expect(r.outHash).toBe(r.inHash);
        expect(r.maxRssMiB - r.baseRssMiB).toBeLessThan(RSS_GROWTH_LIMIT_MIB);
      }, 620_000);
    }
  });
}
