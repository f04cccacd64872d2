/**
 * Replication over real stores (two fs stores in separate directories): the
 * shared contract, a replica that cannot write, reads that fall back to
 * another copy, and deletion confirmed per copy.
 */
import { mkdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isMedvaultError } from '../../errors.ts';
import { readChecked, readSized } from '../../storage/blob-store.ts';
import { FsBlobStore } from '../../storage/fs-store.ts';
import { ReplicatedBlobStore } from '../../storage/replicated-store.ts';
import { bytes, tempDir } from '../helpers.ts';
import { blobStoreConformance } from './conformance.ts';

const root = tempDir('medvault-replicated-');
const pair = async (a: string, b: string, minCopies?: number) =>
  new ReplicatedBlobStore(
    [
      { name: 'a', store: await FsBlobStore.open(join(root, a)) },
      { name: 'b', store: await FsBlobStore.open(join(root, b)) },
    ],
    minCopies === undefined ? {} : { minCopies },
  );

blobStoreConformance('replicated (fs + fs)', () => pair('a', 'b'), {
  missingRef: () => `rep:a=${'cd'.repeat(32)},b=${'cd'.repeat(32)}`,
  listed: (put) => [`rep:a=${put.sha256}`, `rep:b=${put.sha256}`],
  config: () => ({
    kind: 'replicated',
    replicas: [
      { name: 'a', config: { kind: 'fs', root: join(root, 'big-a') } },
      { name: 'b', config: { kind: 'fs', root: join(root, 'big-b') } },
    ],
  }),
});

async function* once(data: Uint8Array): AsyncGenerator<Uint8Array> {
  yield data;
}

/** Makes an fs store unable to write: its temp directory becomes a file. */
function breakWrites(dir: string): void {
  rmSync(join(root, dir, 'tmp'), { recursive: true, force: true });
  writeFileSync(join(root, dir, 'tmp'), 'not a directory');
}

describe('replication', () => {
  it('writes every copy; reads fall back when one copy is gone', async () => {
    const store = await pair('r1', 'r2');
    const data = bytes(150_000, 5);
    const { ref, sha256 } = await store.put(once(data));
    expect(ref).toBe(`rep:a=${sha256},b=${sha256}`);
    const a = await FsBlobStore.open(join(root, 'r1'));
    const b = await FsBlobStore.open(join(root, 'r2'));
    expect((await a.has(sha256)) && (await b.has(sha256))).toBe(true);
    await a.delete(sha256); // copy a lost
    const parts: Buffer[] = [];
    for await (const chunk of await store.get(ref)) parts.push(chunk as Buffer);
    expect(Buffer.compare(Buffer.concat(parts), data)).toBe(0);
  });

  it("a fetch's checked reads pass over a damaged copy (byte flipped, cut, lost) to an intact one", async () => {
    const store = await pair('d1', 'd2');
    const small = bytes(3000, 6);
    const large = bytes(300_000, 7);
    const kept = [await store.put(once(small)), await store.put(once(large))];
    const file = (dir: string, sha: string) => join(root, dir, 'blobs', sha.slice(0, 2), sha.slice(2, 4), sha);
    const [s, l] = kept as [(typeof kept)[0], (typeof kept)[0]];
    // Copy a of the small blob has a byte flipped; copy a of the large one lost its tail.
    const flipped = readFileSync(file('d1', s.sha256));
    flipped[10] = (flipped[10] as number) ^ 1;
    writeFileSync(file('d1', s.sha256), flipped);
    truncateSync(file('d1', l.sha256), l.size - 1);
    expect(Buffer.compare(await readChecked(store, s.ref, s.size, s.sha256), small)).toBe(0);
    const parts: Buffer[] = [];
    for await (const chunk of await readSized(store, l.ref, l.size)) parts.push(chunk as Buffer);
    expect(Buffer.compare(Buffer.concat(parts), large)).toBe(0);
    // Copy b lost as well: no intact copy is left, and the damage is said as such, not as a loss.
    rmSync(file('d2', s.sha256));
    rmSync(file('d2', l.sha256));
    const whole = await readChecked(store, s.ref, s.size, s.sha256).catch((e) => e);
    expect(isMedvaultError(whole, 'STORE_INTEGRITY'), String(whole)).toBe(true);
    expect(String(whole.message)).toMatch(/no intact copy.*a: .*hashes to.*b: STORE_NOT_FOUND/);
    const streamed = await readSized(store, l.ref, l.size).catch((e) => e);
    expect(isMedvaultError(streamed, 'STORE_INTEGRITY'), String(streamed)).toBe(true);
  });

  it('when a replica cannot write, the put fails and leaves no copy anywhere', async () => {
    const store = await pair('w1', 'w2');
    breakWrites('w2');
    const err = await store.put(once(bytes(90_000, 6))).catch((e) => e);
    expect(isMedvaultError(err, 'STORE_UNAVAILABLE')).toBe(true);
    expect(err.message).toContain('1 of 2 required copies');
    const refs: string[] = [];
    for await (const r of (await FsBlobStore.open(join(root, 'w1'))).list()) refs.push(r);
    expect(refs).toEqual([]);
  });

  it('with minCopies 1 the put succeeds and its ref names only the copy written', async () => {
    mkdirSync(join(root, 'm2'), { recursive: true });
    const store = await pair('m1', 'm2', 1);
    breakWrites('m2');
    const { ref, sha256 } = await store.put(once(bytes(1000, 7)));
    expect(ref).toBe(`rep:a=${sha256}`);
  });

  it('delete removes every copy and reports what each store confirmed', async () => {
    const store = await pair('d1', 'd2');
    const { ref, sha256 } = await store.put(once(bytes(4000, 8)));
    const result = await store.delete(ref);
    expect(result.removed).toBe(true);
    expect(result.confirmed).toBe('a: fs: file unlinked, directory fsynced; b: fs: file unlinked, directory fsynced');
    for (const dir of ['d1', 'd2']) expect(await (await FsBlobStore.open(join(root, dir))).has(sha256)).toBe(false);
  });

  it('refuses refs naming replicas it does not have', async () => {
    const store = await pair('x1', 'x2');
    expect(isMedvaultError(await store.stat(`rep:zz=${'ab'.repeat(32)}`).catch((e) => e), 'STORE_BAD_REF')).toBe(true);
  });
});
