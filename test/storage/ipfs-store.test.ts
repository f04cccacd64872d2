/**
 * The ipfs store against a private IPFS node started by the suite (js-ipfs
 * serving the kubo RPC API; MEDVAULT_IPFS_API for a real kubo): the shared
 * contract, deletion proven on the node (no block of the DAG left, the
 * content no longer served), and an unreachable node.
 */

import { create } from 'kubo-rpc-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IpfsBlobStore } from '../../storage/ipfs-store.ts';
import { bytes, tempDir } from '../helpers.ts';
import { type IpfsTestNode, startIpfsNode } from '../servers/ipfs.ts';
import { blobStoreConformance } from './conformance.ts';

let node: IpfsTestNode;
beforeAll(async () => {
  node = await startIpfsNode();
}, 90_000);
afterAll(() => node?.stop());

blobStoreConformance('ipfs', async () => new IpfsBlobStore({ url: node.api, timeoutMs: 10_000 }), {
  // A CIDv1 (raw) of bytes nobody stored.
  missingRef: () => 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy',
  config: () => ({ kind: 'ipfs', url: node.api }),
});

async function* once(data: Uint8Array) {
  yield data;
}

describe('ipfs store on the node', () => {
  it('after delete the node serves nothing of it, and a kept blob is untouched', async () => {
    const store = new IpfsBlobStore({ url: node.api, timeoutMs: 10_000 });
    const gone = await store.put(once(bytes(1_500_000, 4))); // several blocks
    const kept = await store.put(once(bytes(10_000, 5)));
    const result = await store.delete(gone.ref);
    expect(result.confirmed).toMatch(/none of its \d+ blocks left/);
    const ipfs = create({ url: `${node.api}/api/v0` });
    await expect(
      (async () => {
        for await (const _ of ipfs.cat(gone.ref, { timeout: 1500 })) {
        }
      })(),
    ).rejects.toThrow();
    expect(await store.has(kept.ref)).toBe(true);
  });

  it('a CIDv0 or a non-CID is STORE_BAD_REF; an unreachable node is STORE_UNAVAILABLE', async () => {
    const store = new IpfsBlobStore({ url: node.api });
    await expect(store.has('QmRaaUwTNfwgFZpeUy8qrZwrp2dY4kCKmmB5xEqvH3vtD1')).rejects.toMatchObject({
      code: 'STORE_BAD_REF',
    });
    const dead = new IpfsBlobStore({ url: 'http://127.0.0.1:9', timeoutMs: 2000 });
    await expect(dead.put(once(bytes(10)))).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
    await expect(dead.has(gone())).rejects.toMatchObject({ code: 'STORE_UNAVAILABLE' });
  });
});

describe('ipfs store: the node killed mid-put', () => {
  it('the put fails typed, and after a restart nothing of it is pinned or listed', async () => {
    const directory = tempDir('medvault-ipfs-kill-');
    const first = await startIpfsNode({ directory });
    const store = new IpfsBlobStore({ url: first.api, timeoutMs: 5000 });
    const kept = await store.put(once(bytes(5000, 8)));
    let sent = 0;
    async function* slow(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < 400; i++) {
        sent++;
        if (i === 20) first.process?.kill('SIGKILL');
        yield bytes(256 * 1024, i);
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    await expect(store.put(slow())).rejects.toMatchObject({
      code: expect.stringMatching(/^STORE_(UNAVAILABLE|TIMEOUT)$/),
    });
    expect(sent).toBeLessThan(400);
    await first.stop();
    const second = await startIpfsNode({ directory });
    try {
      const again = new IpfsBlobStore({ url: second.api, timeoutMs: 5000 });
      const listed: string[] = [];
      for await (const ref of again.list()) listed.push(ref);
      expect(listed).toEqual([kept.ref]);
      expect(await again.has(kept.ref)).toBe(true);
      // The blocks the cut-off put wrote are still in the repo, unpinned, until collected.
      const local = async () => {
        let n = 0;
        const api = new URL(second.api);
        const res = await fetch(`${api.origin}/api/v0/refs/local`, { method: 'POST' });
        for (const line of (await res.text()).split('\n')) if (line.trim()) n++;
        return n;
      };
      const before = await local();
      const removed = await again.collectStrays({ olderThanMs: 0 });
      expect(removed).toEqual([expect.stringMatching(/^ipfs: \d+ unpinned blocks collected$/)]);
      expect(await local()).toBeLessThan(before);
      expect(await again.has(kept.ref)).toBe(true); // the pinned blob stays
      expect(await again.collectStrays({ olderThanMs: 0 })).toEqual([]);
    } finally {
      await second.stop();
    }
  }, 120_000);
});

function gone(): string {
  return 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy';
}
