/**
 * npm run bench:storage [-- --size MiB --json]
 *
 * Put and get throughput and peak RSS for each blob store, each measured in
 * its own child process: a put of SIZE MiB (default 256) streamed from
 * memory (data that does not repeat, made as it is sent), then a get of it,
 * read to the end. With --json the last line is
 * {"fs":{putMBps,getMBps,peakRssMiB},"ipfs":…,"s3":…}. s3 runs against the
 * test server (s3rver behind a SigV4 verifier, started here), not MinIO; ipfs
 * against the test node (js-ipfs, started here), not kubo.
 */
import { execFile } from 'node:child_process';
import { createCipheriv, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { openBlobStore, type StoreConfig } from '../../storage/open.ts';
import { startIpfsNode } from '../servers/ipfs.ts';
import { s3Options, startS3Server } from '../servers/s3.ts';

const { values } = parseArgs({
  options: {
    size: { type: 'string', default: '256' },
    json: { type: 'boolean', default: false },
    child: { type: 'string' },
  },
});
const bytes = Number(values.size) * 1024 * 1024;

if (values.child) {
  // In the child: measure one store.
  const store = await openBlobStore(JSON.parse(values.child) as StoreConfig);
  // Data that never repeats (a keystream: ChaCha20 of zeros under a random key), as ciphertext
  // is: a repeated 1 MiB buffer let IPFS store 4 unique blocks for 256 MiB and flattered it.
  const keystream = createCipheriv('chacha20', randomBytes(32), randomBytes(16));
  const zeros = Buffer.alloc(1 << 20);
  async function* source(): AsyncGenerator<Buffer> {
    for (let sent = 0; sent < bytes; sent += zeros.length)
      yield keystream.update(zeros.subarray(0, Math.min(zeros.length, bytes - sent)));
  }
  let t = performance.now();
  const { ref } = await store.put(source());
  const putSeconds = (performance.now() - t) / 1000;
  t = performance.now();
  let read = 0;
  for await (const chunk of await store.get(ref)) read += (chunk as Buffer).length;
  const getSeconds = (performance.now() - t) / 1000;
  if (read !== bytes) throw new Error(`read ${read} of ${bytes} bytes`);
  await store.delete(ref);
  await store.close();
  console.log(JSON.stringify({ putSeconds, getSeconds, maxRssMiB: process.resourceUsage().maxRSS / 1024 }));
  process.exit(0);
}

const dir = mkdtempSync(join(tmpdir(), 'medvault-bench-storage-'));
const s3 = await startS3Server();
const ipfs = await startIpfsNode();
const configs: Record<string, StoreConfig> = {
  fs: { kind: 'fs', root: join(dir, 'fs') },
  ipfs: { kind: 'ipfs', url: ipfs.api },
  s3: { kind: 's3', ...s3Options(s3) },
};
const results: Record<string, { putMBps: number; getMBps: number; peakRssMiB: number }> = {};
try {
  console.log(`${values.size} MiB per blob; put streamed from memory, get read to the end`);
  console.log('store  put MB/s  get MB/s  peak RSS MiB');
  for (const [name, config] of Object.entries(configs)) {
    // Asynchronously: the S3 test server runs in this process.
    const child = [new URL(import.meta.url).pathname, '--size', values.size, '--child', JSON.stringify(config)];
    const { stdout } = await promisify(execFile)(process.execPath, child);
    const r = JSON.parse(stdout.trim().split('\n').at(-1) as string);
    const mbps = (s: number) => Math.round(bytes / 1e6 / s);
    results[name] = { putMBps: mbps(r.putSeconds), getMBps: mbps(r.getSeconds), peakRssMiB: Math.round(r.maxRssMiB) };
    const x = results[name];
    console.log(
      `${name.padEnd(5)}  ${String(x?.putMBps).padStart(8)}  ${String(x?.getMBps).padStart(8)}  ${String(x?.peakRssMiB).padStart(12)}`,
    );
  }
} finally {
  await s3.stop();
  await ipfs.stop();
  rmSync(dir, { recursive: true, force: true });
}
if (values.json) console.log(JSON.stringify(results));
