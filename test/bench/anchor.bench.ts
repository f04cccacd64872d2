/**
 * npm run bench:anchor [-- --seconds S --window W --submitters 1,8,32,128 --ledgers etcd,file,evm --rounds R --json]
 *
 * Anchored documents per second and receipt latency (submit → receipt, which
 * resolves only once the block is durable) for the etcd ledger (a real
 * 3-member cluster on 127.0.0.1, started here), the file ledger and the EVM
 * ledger (Hardhat 3's in-process EDR network; blocks of 250 events, one per
 * transaction, about the 128 KiB transaction size real chains accept). Each
 * of N concurrent submitters keeps W submissions in flight. With --json the
 * last line is {"etcd":{docsPerSec,p50Ms,p99Ms},"file":{…},"evm":{…}}, taken
 * at the largest submitter count: with --rounds R, that count is measured R
 * times (this machine's speed varies by half between runs) and the median
 * round, by documents per second, is the one reported.
 *
 * CPU per document is this process's (user + system); for etcd, "server"
 * is the three members' own (from /proc; "server sys %" the kernel's share
 * of it), so the two sides can be weighed,
 * and "server MB" their resident memory after the run: etcd keeps its raft
 * log in memory until a snapshot, so it grows with the ledger (rounds on one
 * cluster show what that costs).
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EventLoopUtilization } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Batcher, type BatcherOptions } from '../../anchor/batcher.ts';
import { EtcdLedger } from '../../anchor/etcd-ledger.ts';
import { EvmLedger } from '../../anchor/evm-ledger.ts';
import { FileLedger } from '../../anchor/file-ledger.ts';
import type { Ledger } from '../../anchor/ledger.ts';
import { SigningKey } from '../../crypto/ed25519.ts';
import { sampleEvent } from '../anchor/fixtures.ts';
import { EtcdCluster } from '../servers/etcd.ts';
import { startEvmChain } from '../servers/evm.ts';
import { processesCpuUs, processesRssMb } from './proc.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '4' },
    window: { type: 'string', default: '32' },
    submitters: { type: 'string', default: '1,8,32,128' },
    ledgers: { type: 'string', default: 'etcd,file,evm' },
    rounds: { type: 'string', default: '1' },
    'max-events': { type: 'string', default: '1000' },
    depth: { type: 'string' },
    'blocks-per-append': { type: 'string' },
    json: { type: 'boolean', default: false },
  },
});
const seconds = Number(values.seconds);
const window = Number(values.window);
const counts = values.submitters.split(',').map(Number);
const maxEvents = Number(values['max-events']);
const rounds = Math.max(1, Number(values.rounds));
const tuning: BatcherOptions = {
  ...(values.depth ? { pipelineDepth: Number(values.depth) } : {}),
  ...(values['blocks-per-append'] ? { maxBlocksPerAppend: Number(values['blocks-per-append']) } : {}),
};

interface Result {
  docsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  blocks: number;
  /** CPU time of this process (user + system) per anchored document, µs. */
  cpuUsPerDoc: number;
  /** Share of the run the main thread was busy (event loop utilisation), %. */
  mainBusyPct: number;
  /** CPU time of the ledger's servers (etcd members) per anchored document, µs; null where not measured. */
  serverUsPerDoc: number | null;
  /** Share of the servers' CPU time spent in the kernel, %. */
  serverSysPct: number | null;
  /** Resident memory of the ledger's servers at the end of the run, MB (etcd keeps its raft log in memory). */
  serverRssMb: number | null;
}

interface ServerProbe {
  /** CPU time so far, µs: all, and in the kernel. */
  cpuUs: () => { all: number; system: number };
  rssMb: () => number;
}

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0;

// Events are made before the clock starts: this measures anchoring, not the event generator.
// The pool is a few times what is in flight (128 x 32); a pool of 400,000 left the
// collector marking that many live objects, which no vault holds (about 10% slower).
const EVENTS = Array.from({ length: 20_000 }, () => sampleEvent());
let nextEvent = 0;
const anEvent = () => EVENTS[nextEvent++ % EVENTS.length] as (typeof EVENTS)[number];

async function measure(
  ledger: Ledger,
  submitters: number,
  options: BatcherOptions,
  server?: ServerProbe,
): Promise<Result> {
  const batcher = new Batcher(ledger, SigningKey.generate(), { maxEvents, maxDelayMs: 2, ...tuning, ...options });
  const latencies: number[] = [];
  const startHeight = (await ledger.head())?.height ?? -1;
  const warmupEnd = performance.now() + 500;
  let cpuAtWarmupEnd: NodeJS.CpuUsage | undefined;
  let eluAtWarmupEnd: EventLoopUtilization | undefined;
  let serverAtWarmupEnd = { all: 0, system: 0 };
  setTimeout(() => {
    cpuAtWarmupEnd = process.cpuUsage();
    eluAtWarmupEnd = performance.eventLoopUtilization();
    serverAtWarmupEnd = server?.cpuUs() ?? serverAtWarmupEnd;
  }, 500);
  const end = warmupEnd + seconds * 1000;
  let done = 0;
  const failed = new Map<string, number>();
  // Each submitter keeps `window` submissions in flight: each one settled starts the next
  // (no promise or await per submission of the harness's own, which cost it ~20% of the work).
  const submitter = () =>
    new Promise<void>((finish) => {
      let inFlight = 0;
      const settled = () => {
        inFlight--;
        if (performance.now() < end) launch();
        else if (inFlight === 0) finish();
      };
      const launch = () => {
        const t = performance.now();
        inFlight++;
        batcher.submit(anEvent()).then(
          () => {
            const now = performance.now();
            if (t >= warmupEnd && now <= end) {
              latencies.push(now - t);
              done++;
            }
            settled();
          },
          (err: { code?: string }) => {
            failed.set(err.code ?? 'untyped', (failed.get(err.code ?? 'untyped') ?? 0) + 1);
            settled();
          },
        );
      };
      for (let i = 0; i < window; i++) launch();
    });
  await Promise.all(Array.from({ length: submitters }, submitter));
  const cpu = process.cpuUsage(cpuAtWarmupEnd);
  const serverNow = server?.cpuUs();
  const serverUs = serverNow ? serverNow.all - serverAtWarmupEnd.all : null;
  const serverSysUs = serverNow ? serverNow.system - serverAtWarmupEnd.system : null;
  const elu = performance.eventLoopUtilization(eluAtWarmupEnd);
  await batcher.flush();
  latencies.sort((a, b) => a - b);
  if (failed.size > 0) console.log(`  refused submissions: ${JSON.stringify(Object.fromEntries(failed))}`);
  const blocks = ((await ledger.head())?.height ?? -1) - startHeight;
  return {
    docsPerSec: Math.round(done / seconds),
    p50Ms: Math.round(percentile(latencies, 0.5) * 10) / 10,
    p99Ms: Math.round(percentile(latencies, 0.99) * 10) / 10,
    blocks,
    cpuUsPerDoc: Math.round(((cpu.user + cpu.system) / done) * 10) / 10,
    mainBusyPct: Math.round(elu.utilization * 100),
    serverUsPerDoc: serverUs === null ? null : Math.round((serverUs / done) * 10) / 10,
    serverSysPct: serverUs && serverSysUs !== null ? Math.round((100 * serverSysUs) / serverUs) : null,
    serverRssMb: server ? server.rssMb() : null,
  };
}

const results: Record<string, Result> = {};
const dir = mkdtempSync(join(tmpdir(), 'medvault-bench-anchor-'));
const cluster = await EtcdCluster.start(3);
const chain = await startEvmChain();
try {
  const etcdPids = () => cluster.members.map((m) => m.process?.pid ?? 0).filter((pid) => pid > 0);
  const etcd: ServerProbe = { cpuUs: () => processesCpuUs(etcdPids()), rssMb: () => processesRssMb(etcdPids()) };
  const backends: Array<[string, () => Promise<Ledger>, BatcherOptions, ServerProbe?]> = [
    ['etcd', async () => new EtcdLedger({ hosts: cluster.hosts, prefix: `bench-${Date.now()}` }), {}, etcd],
    ['file', async () => FileLedger.open(join(dir, `bench-${Date.now()}.mvl`)), {}],
    [
      'evm',
      async () => new EvmLedger(chain.address, chain.admin),
      { maxEvents: Math.min(250, maxEvents), maxBlocksPerAppend: 1 },
    ],
  ];
  console.log(`window ${window} per submitter, blocks of up to ${maxEvents} events, ${seconds} s per run`);
  console.log(
    'ledger  submitters  docs/s    p50 ms  p99 ms  blocks  cpu µs/doc  main busy %  server µs/doc  server sys %  server MB',
  );
  const chosen = new Set(values.ledgers.split(','));
  const largest = Math.max(...counts);
  for (const [name, open, options, server] of backends.filter(([name]) => chosen.has(name))) {
    for (const n of counts) {
      const measured: Result[] = [];
      for (let round = 0; round < (n === largest ? rounds : 1); round++) {
        const ledger = await open();
        const r = await measure(ledger, n, options, server);
        await ledger.close();
        console.log(
          `${name.padEnd(7)} ${String(n).padStart(10)}  ${String(r.docsPerSec).padStart(8)}  ${String(r.p50Ms).padStart(6)}  ${String(r.p99Ms).padStart(6)}  ${String(r.blocks).padStart(6)}  ${String(r.cpuUsPerDoc).padStart(10)}  ${String(r.mainBusyPct).padStart(11)}  ${String(r.serverUsPerDoc ?? '-').padStart(13)}  ${String(r.serverSysPct ?? '-').padStart(12)}  ${String(r.serverRssMb ?? '-').padStart(9)}`,
        );
        measured.push(r);
      }
      measured.sort((a, b) => a.docsPerSec - b.docsPerSec);
      results[name] = measured[Math.floor((measured.length - 1) / 2)] as Result;
      if (measured.length > 1) {
        const median = results[name] as Result;
        console.log(
          `${name} at ${n}: median of ${measured.length} rounds ${median.docsPerSec} docs/s (p99 ${median.p99Ms} ms), range ${measured[0]?.docsPerSec}-${measured.at(-1)?.docsPerSec}`,
        );
      }
    }
  }
} finally {
  await chain.close();
  await cluster.stop();
  rmSync(dir, { recursive: true, force: true });
}
const pick = (r: Result | undefined) => (r ? { docsPerSec: r.docsPerSec, p50Ms: r.p50Ms, p99Ms: r.p99Ms } : null);
if (values.json)
  console.log(JSON.stringify({ etcd: pick(results.etcd), file: pick(results.file), evm: pick(results.evm) }));
