/**
 * Store operations timed per backend (storage/measured-store.ts): what the node's /metrics
 * reports. Each operation is reported once, with its outcome (an error's code), and a
 * replicated store's replicas each under KIND/NAME; what the store answers is unchanged.
 */
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { type StoreListener, StoreMeter } from '../../storage/measured-store.ts';
import { openBlobStore } from '../../storage/open.ts';
import { bytes, tempDir } from '../helpers.ts';

/** A meter recording every report as "backend operation outcome". */
function recording(): { meter: StoreMeter; seen: string[] } {
  const meter = new StoreMeter();
  const seen: string[] = [];
  const listener: StoreListener = (operation, backend, outcome, seconds) => {
    expect(seconds).toBeGreaterThanOrEqual(0);
    seen.push(`${backend} ${operation} ${outcome}`);
  };
  meter.listener = listener;
  return { meter, seen };
}

describe('a measured store', () => {
  it('reports each operation once with its outcome, and answers as the store does', async () => {
    const { meter, seen } = recording();
    const store = await openBlobStore({ kind: 'fs', root: tempDir('medvault-measured-') }, meter);
    const put = await store.put(Readable.from([bytes(3_000, 1)]));
    expect(await store.has(put.ref)).toBe(true);
    expect(await store.stat(put.ref)).toEqual({ size: 3_000 });
    const chunks: Buffer[] = [];
    for await (const c of await store.get(put.ref)) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).equals(bytes(3_000, 1))).toBe(true);
    await expect(store.get('0'.repeat(64))).rejects.toMatchObject({ code: 'STORE_NOT_FOUND' });
    await store.delete(put.ref);
    expect(typeof store.collectStrays).toBe('function');
    expect(seen).toEqual([
      'fs put ok',
      'fs has ok',
      'fs stat ok',
      'fs get ok',
      'fs get STORE_NOT_FOUND',
      'fs delete ok',
    ]);
    await store.close();
  });

  it("reports a replicated store's replicas one by one, by kind and name", async () => {
    const { meter, seen } = recording();
    const root = tempDir('medvault-measured-replicas-');
    const store = await openBlobStore(
      {
        kind: 'replicated',
        replicas: [
          { name: 'local', config: { kind: 'fs', root: join(root, 'a') } },
          { name: 'mirror', config: { kind: 'fs', root: join(root, 'b') } },
        ],
      },
      meter,
    );
    await store.put(Readable.from([bytes(1_000, 2)]));
    expect(seen.sort()).toEqual(['fs/local put ok', 'fs/mirror put ok']);
    await store.close();
  });

  it('without a meter, the store is the store itself', async () => {
    const store = await openBlobStore({ kind: 'fs', root: tempDir('medvault-unmeasured-') });
    expect(store.constructor.name).toBe('FsBlobStore');
    await store.close();
  });
});
