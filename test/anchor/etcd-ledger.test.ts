/**
 * The etcd (Raft) ledger against a real 3-member etcd cluster started for
 * this suite: the shared contract, several vault processes appending to one
 * chain, and a leader killed with SIGKILL while writers run.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Batcher } from '../../anchor/batcher.ts';
import { blockHash, buildBlock } from '../../anchor/block.ts';
import { EtcdLedger } from '../../anchor/etcd-ledger.ts';
import { checkReceiptOnLedger, verifyChain } from '../../anchor/ledger.ts';
import { type Receipt, verifyReceipt } from '../../anchor/receipt.ts';
import { SigningKey } from '../../crypto/ed25519.ts';
import { ROOT } from '../helpers.ts';
import { EtcdCluster } from '../servers/etcd.ts';
import { sampleEvent } from './fixtures.ts';
import { ledgerConformance } from './ledger-conformance.ts';

let cluster: EtcdCluster;
beforeAll(async () => {
  cluster = await EtcdCluster.start(3);
});
afterAll(async () => {
  await cluster?.stop();
});

let conformanceLedgers = 0;
ledgerConformance(
  'etcd',
  async () => new EtcdLedger({ hosts: cluster.hosts, prefix: `conformance-${conformanceLedgers++}`, pageSize: 3 }),
);

/**
 * Walks the chain once: every event appears once, and every receipt verifies
 * offline and names a block that is on the chain at its height. (The full
 * online check walks to the head per receipt, so it runs on a sample.)
 */
async function expectReceiptsOnChain(ledger: EtcdLedger, receipts: Receipt[]): Promise<string[]> {
  const ids: string[] = [];
  const hashes: string[] = [];
  for await (const block of ledger.blocks(0)) {
    hashes.push(blockHash(block.header));
    for (const e of block.events) ids.push(e.recordId as string);
  }
  expect(new Set(ids).size).toBe(ids.length);
  const onChain = new Set(ids);
  for (const r of receipts) {
    verifyReceipt(r);
    expect(hashes[r.block.height]).toBe(blockHash(r.block));
    expect(onChain.has(r.event.recordId as string)).toBe(true);
  }
  for (const r of [receipts[0], receipts.at(-1)]) if (r) await checkReceiptOnLedger(ledger, r);
  return ids;
}

describe('etcd ledger: runs over the request limit', () => {
  it('are committed as several transactions: every block lands once, in order, and the chain verifies', async () => {
    const ledger = new EtcdLedger({ hosts: cluster.hosts, prefix: 'split', maxRequestBytes: 6_000 });
    // Blocks of 20 events, a few KB each as stored: a run of 6 needs several transactions.
    const batcher = new Batcher(ledger, SigningKey.generate(), {
      maxEvents: 20,
      maxBlocksPerAppend: 6,
      maxDelayMs: 20,
    });
    const receipts = await Promise.all(Array.from({ length: 120 }, () => batcher.submit(sampleEvent())));
    expect(new Set(receipts.map((r) => r.block.height)).size).toBe(6);
    await expectReceiptsOnChain(ledger, receipts);
    expect((await verifyChain(ledger)).blocks).toBe(6);
    const etcd = new Etcd3({ hosts: cluster.hosts });
    const stored = await etcd.getAll().prefix('split/blocks/').exec();
    etcd.close();
    expect(stored.kvs).toHaveLength(6);
    expect(new Set(stored.kvs.map((kv) => kv.mod_revision)).size).toBeGreaterThan(1); // one revision per transaction
    // One block over the limit on its own is refused, typed, and nothing is written.
    const tiny = new EtcdLedger({ hosts: cluster.hosts, prefix: 'split', maxRequestBytes: 100 });
    const err = await new Batcher(tiny, SigningKey.generate()).submit(sampleEvent()).catch((e) => e);
    expect(err).toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect((await ledger.head())?.height).toBe(5);
    await tiny.close();
    await ledger.close();
  });
});

describe('etcd ledger: blocks prepared ahead of their append', () => {
  it('are stored as prepared; a prepared block that is never appended leaves nothing; a batcher run of sealed blocks lands whole', async () => {
    const ledger = new EtcdLedger({ hosts: cluster.hosts, prefix: 'prepared' });
    const signer = SigningKey.generate();
    const b0 = buildBlock(null, [sampleEvent(), sampleEvent()], signer).block;
    const b1 = buildBlock(b0.header, [sampleEvent()], signer).block;
    const orphan = buildBlock(b1.header, [sampleEvent()], signer).block;
    ledger.prepare([b0, b1]);
    ledger.prepare([b0, orphan]); // twice is once
    await ledger.append([b0, b1]);
    expect(await ledger.get(0)).toEqual(b0);
    expect(await ledger.get(1)).toEqual(b1);
    expect(await ledger.get(2)).toBeNull();
    // Through the batcher: once the tip is known, 130 events seal six blocks of 20 (one run) before the rest.
    const batcher = new Batcher(ledger, signer, { maxEvents: 20, maxBlocksPerAppend: 6, maxDelayMs: 20 });
    await batcher.submit(sampleEvent());
    const receipts = await Promise.all(Array.from({ length: 130 }, () => batcher.submit(sampleEvent())));
    expect(receipts.filter((r) => r.block.height <= 8)).toHaveLength(120);
    await expectReceiptsOnChain(ledger, receipts);
    expect(await verifyChain(ledger)).toMatchObject({ blocks: 10, events: 3 + 1 + 130 });
    await ledger.close();
  });
});

describe('etcd ledger: at the backend quota', () => {
  it('an append the cluster refuses for space fails at once with LEDGER_FULL; nothing acknowledged is lost and the chain still reads and verifies', async () => {
    // A one-member cluster with a 2 MiB quota: about 14,000 events (compressed blocks of ~150 KB).
    const small = await EtcdCluster.start(1, ['--quota-backend-bytes', String(2 * 1024 * 1024)]);
    const ledger = new EtcdLedger({ hosts: small.hosts, prefix: 'full' });
    try {
      const batcher = new Batcher(ledger, SigningKey.generate(), { maxEvents: 1000, maxDelayMs: 1 });
      const acknowledged: Receipt[] = [];
      let refusal: { code?: string } | undefined;
      let refusedAfterMs = 0;
      for (let wave = 0; wave < 200 && !refusal; wave++) {
        const started = Date.now();
        const settled = await Promise.allSettled(Array.from({ length: 1000 }, () => batcher.submit(sampleEvent())));
        for (const s of settled) {
          if (s.status === 'fulfilled') acknowledged.push(s.value);
          else refusal ??= s.reason;
        }
        refusedAfterMs = Date.now() - started;
      }
      expect(refusal).toMatchObject({ code: 'LEDGER_FULL' });
      expect(refusedAfterMs).toBeLessThan(3000); // not the 15 s an unknown outcome may take
      expect(acknowledged.length).toBeGreaterThan(0);
      const head = await ledger.head();
      expect(head?.height).toBe(Math.max(...acknowledged.map((r) => r.block.height)));
      await expectReceiptsOnChain(ledger, acknowledged);
      expect((await verifyChain(ledger)).events).toBe(acknowledged.length);
      // Still full: refused again, and the head does not move.
      await expect(batcher.submit(sampleEvent())).rejects.toMatchObject({ code: 'LEDGER_FULL' });
      expect((await ledger.head())?.height).toBe(head?.height);
    } finally {
      await ledger.close();
      await small.stop();
    }
  });
});

describe('etcd ledger: several vault processes', () => {
  it('append concurrently to one unforked chain; every receipt is on it', async () => {
    const prefix = 'concurrent';
    const run = () =>
      new Promise<Receipt[]>((resolve, reject) => {
        const child = spawn(process.execPath, [
          join(ROOT, 'test/anchor/fixtures/etcd-writer.ts'),
          JSON.stringify(cluster.hosts),
          prefix,
          '200',
        ]);
        let out = '';
        let err = '';
        child.stdout.on('data', (d) => (out += d));
        child.stderr.on('data', (d) => (err += d));
        child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(err))));
      });
    const results = await Promise.all([run(), run(), run()]);
    const ledger = new EtcdLedger({ hosts: cluster.hosts, prefix });
    try {
      const summary = await verifyChain(ledger);
      expect(summary.events).toBe(600);
      for (const receipts of results) expect(receipts).toHaveLength(200);
      expect(new Set(results.map((receipts) => receipts[0]?.block.signer)).size).toBe(3);
      expect(await expectReceiptsOnChain(ledger, results.flat())).toHaveLength(600);
    } finally {
      await ledger.close();
    }
  }, 120_000);
});

describe('etcd ledger: leader failure', () => {
  it('SIGKILL the leader under load: no acknowledged anchor lost or duplicated; it rejoins and catches up', async () => {
    const prefix = 'fault';
    const writers = Array.from({ length: 3 }, () => {
      const ledger = new EtcdLedger({ hosts: cluster.hosts, prefix, callTimeoutMs: 500 });
      return { ledger, batcher: new Batcher(ledger, SigningKey.generate(), { maxEvents: 50, maxDelayMs: 1 }) };
    });
    const acknowledged: Receipt[] = [];
    const ackTimes: number[] = [];
    let refused = 0;
    let stop = false;
    const loops = writers.map(async ({ batcher }) => {
      while (!stop) {
        const wave = await Promise.allSettled(Array.from({ length: 10 }, () => batcher.submit(sampleEvent())));
        for (const r of wave) {
          if (r.status === 'fulfilled') {
            acknowledged.push(r.value);
            ackTimes.push(performance.now());
          } else refused++;
        }
      }
    });
    await new Promise((r) => setTimeout(r, 700));
    const leader = await cluster.leader();
    const beforeKill = acknowledged.length;
    const killedAt = performance.now();
    cluster.kill(leader);
    // Writers go on for 2 s after the kill, longer (up to 6 s) until some have been acknowledged
    // since: on a loaded machine the election alone can take a second or more, and the bound
    // this test holds the client to is the stall measured below, not this window.
    const writeUntil = killedAt + 6000;
    await new Promise((r) => setTimeout(r, 2000));
    while (performance.now() < writeUntil && ackTimes.filter((t) => t >= killedAt).length < 30) {
      await new Promise((r) => setTimeout(r, 100));
    }
    stop = true;
    await Promise.all(loops);
    expect(beforeKill).toBeGreaterThan(0);
    expect(acknowledged.length).toBeGreaterThan(beforeKill); // writes went on after the kill
    // No long stall after the leader change: the longest wait for an acknowledgement from the kill on.
    const after = [killedAt, ...ackTimes.filter((t) => t >= killedAt)];
    const stallMs = Math.max(...after.slice(1).map((t, i) => t - (after[i] as number)));
    console.log(`longest wait for an acknowledgement after the leader kill: ${Math.round(stallMs)} ms`);
    expect(stallMs).toBeLessThan(3000);

    const ledger = new EtcdLedger({ hosts: cluster.hosts, prefix });
    try {
      const summary = await verifyChain(ledger);
      await expectReceiptsOnChain(ledger, acknowledged);
      // Refused submissions may or may not have landed (at-least-once); acknowledged ones all did.
      expect(summary.events).toBeGreaterThanOrEqual(acknowledged.length);
      expect(summary.events).toBeLessThanOrEqual(acknowledged.length + refused);
    } finally {
      await ledger.close();
      for (const w of writers) await w.ledger.close();
    }

    cluster.restart(leader);
    const deadline = Date.now() + 20_000;
    for (;;) {
      const target = await cluster.raftIndex(await cluster.leader());
      const mine = await cluster.raftIndex(leader).catch(() => -1);
      if (mine >= target) break;
      expect(Date.now()).toBeLessThan(deadline);
      await new Promise((r) => setTimeout(r, 100));
    }
  }, 90_000);
});
