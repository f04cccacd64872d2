/** The embedded fs blob store: the shared contract, crash leftovers, proof of deletion on disk. */
import { createHash } from 'node:crypto';
import { appendFileSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readChecked } from '../../storage/blob-store.ts';
import { FsBlobStore } from '../../storage/fs-store.ts';
import { bytes, filesUnder, tempDir } from '../helpers.ts';
import { blobStoreConformance } from './conformance.ts';

const root = tempDir('medvault-fs-store-');
blobStoreConformance('fs', () => FsBlobStore.open(root), {
  missingRef: () => 'ab'.repeat(32),
  config: () => ({ kind: 'fs', root: join(root, 'big') }),
});

describe('fs blob store on disk', () => {
  it('a temporary left by a crash is deleted when the store opens', async () => {
    const dir = join(root, 'crash');
    await FsBlobStore.open(dir);
    writeFileSync(join(dir, 'tmp', 'half-written'), bytes(5000, 3));
    await FsBlobStore.open(dir);
    expect(readdirSync(join(dir, 'tmp'))).toEqual([]);
  });

  it('a blob read whole that grew on disk is STORE_INTEGRITY, though its first bytes are right', async () => {
    const dir = join(root, 'grown');
    const store = await FsBlobStore.open(dir);
    const { ref, sha256 } = await store.put(
      (async function* () {
        yield bytes(3000, 8);
      })(),
    );
    appendFileSync(filesUnder(dir).find((f) => f.endsWith(ref)) as string, 'junk');
    const err = await readChecked(store, ref, 3000, sha256).catch((e) => e);
    expect(err).toMatchObject({ code: 'STORE_INTEGRITY', message: expect.stringContaining('more than') });
  });

  it('after delete, no file under the store holds the blob', async () => {
    const dir = join(root, 'proof');
    const store = await FsBlobStore.open(dir);
    const data = bytes(123_456, 42);
    const { ref } = await store.put(
      (async function* () {
        yield data;
      })(),
    );
    await store.put(
      (async function* () {
        yield bytes(1000, 1);
      })(),
    );
    await store.delete(ref);
    const hashes = filesUnder(dir).map((f) => createHash('sha256').update(readFileSync(f)).digest('hex'));
    expect(hashes).not.toContain(ref);
    expect(filesUnder(dir).some((f) => f.endsWith(ref))).toBe(false);
    expect(hashes).toHaveLength(1); // the other blob stays
  });

  it('a shard directory removed behind the running store is made again by the next put into it', async () => {
    const dir = join(root, 'shard-gone');
    const store = await FsBlobStore.open(dir);
    const data = bytes(4096, 7);
    const put = () =>
      store.put(
        (async function* () {
          yield data;
        })(),
      );
    const { ref } = await put();
    rmSync(join(dir, 'blobs', ref.slice(0, 2)), { recursive: true }); // an operator's cleanup, say
    expect(await store.has(ref)).toBe(false);
    expect((await put()).ref).toBe(ref);
    expect(readFileSync(join(dir, 'blobs', ref.slice(0, 2), ref.slice(2, 4), ref))).toEqual(Buffer.from(data));
    expect(readdirSync(join(dir, 'tmp'))).toEqual([]);
  });
});

describe('fs store: strays', () => {
  it('temporaries older than asked are collected, younger ones (a running put) left', async () => {
    const dir = tempDir('medvault-fs-strays-');
    const store = await FsBlobStore.open(dir);
    const { ref } = await store.put(
      (async function* () {
        yield bytes(100, 3);
      })(),
    );
    writeFileSync(join(dir, 'tmp', 'cut-off'), 'half a blob');
    expect(await store.collectStrays({ olderThanMs: 60 * 60_000 })).toEqual([]);
    expect(readdirSync(join(dir, 'tmp'))).toEqual(['cut-off']);
    expect(await store.collectStrays({ olderThanMs: 0 })).toEqual(['fs: temporary file cut-off']);
    expect(readdirSync(join(dir, 'tmp'))).toEqual([]);
    expect(await store.has(ref)).toBe(true);
  });
});
