/**
 * npm run bench:console [-- --mib 256 --rounds 3 --json]
 *
 * The web console in Debian's Chromium (playwright-core), against a node in this process:
 * - in-page decryption of a MIB MiB record (fetch, age decryption with @noble, SHA-256 of the
 *   ciphertext checked against its anchor, the plaintext held as a Blob and saved), MB/s as the
 *   page times it, against `medvault fetch` (the CLI, a child process: the SDK over node:crypto)
 *   writing the same record to a file; medians of ROUNDS rounds, each round one of each;
 * - the console's first load: ms from navigation to the sign-in form, and the bytes served.
 * With --json the last line is all the figures.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { logger } from '../../log.ts';
import { buildConsole } from '../../scripts/build-console.ts';
import { buildServer } from '../../services/http/server.ts';
import {
  generateMemberKeys,
  memberKeyFileText,
  memberPublic,
  parseMemberKeyFile,
  VaultClient,
} from '../../services/sdk/client.ts';
import { initNode, openNode } from '../../services/vault/node.ts';
import { launchChromium } from '../servers/browser.ts';

const { values } = parseArgs({
  options: {
    mib: { type: 'string', default: '256' },
    rounds: { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
  },
});
const MIB = Number(values.mib);
const ROUNDS = Number(values.rounds);
logger.level = 'warn';

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const ROOT = join(import.meta.dirname, '..', '..');
const work = mkdtempSync(join(tmpdir(), 'medvault-bench-console-'));

await buildConsole();
const data = join(work, 'node');
const init = await initNode(data);
const vault = await openNode(data);
const app = await buildServer(vault, { rateLimit: 1e9 });
await app.listen({ host: '127.0.0.1', port: 0 });
const address = app.server.address();
const url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
const admin = new VaultClient(url, parseMemberKeyFile(readFileSync(init.adminKeyFile, 'utf8')));
const member = async (name: string, role: 'uploader' | 'reader') => {
  const keys = generateMemberKeys();
  await admin.addMember({ name, role, ...memberPublic(keys) });
  const keyFile = join(work, `${name}.key`);
  writeFileSync(keyFile, memberKeyFileText(name, keys), { mode: 0o600 });
  return { keys, keyFile, client: new VaultClient(url, keys) };
};
const hospital = await member('hospital', 'uploader');
const reader = await member('reader', 'reader');

const plain = Buffer.alloc(MIB << 20);
for (let i = 0; i < plain.length; i += 4096) plain.writeUInt32LE(i, i);
const plainHash = createHash('sha256').update(plain).digest('hex');
const { record } = await hospital.client.upload(plain, {
  subject: 'b'.repeat(64),
  readers: [reader.keys.signing.id],
  purpose: 'treatment',
  expiresAt: Date.now() + 86_400_000,
});

const browser = await launchChromium();
const browserMBps: number[] = [];
const cliMBps: number[] = [];
let firstLoadMs = 0;
let firstLoadBytes = 0;
try {
  for (let round = 0; round < ROUNDS; round++) {
    const page = await browser.newPage({ acceptDownloads: true });
    let bytes = 0;
    page.on(
      'response',
      (r) =>
        void r
          .body()
          .then((b) => (bytes += b.length))
          .catch(() => {}),
    );
    const started = performance.now();
    await page.goto(`${url}/console/`);
    await page.locator('#key-file').waitFor();
    if (round === 0) {
      firstLoadMs = performance.now() - started;
      await page.waitForLoadState('networkidle');
      firstLoadBytes = bytes;
    }
    await page.setInputFiles('#key-file', reader.keyFile);
    await page.getByRole('button', { name: 'Sign in' }).click();
    const download = page.waitForEvent('download', { timeout: 600_000 });
    await page.getByRole('button', { name: `Open record ${record.id}` }).click();
    const saved = await (await download).path();
    const seconds = Number(await page.locator('#record-detail').getAttribute('data-seconds'));
    if (createHash('sha256').update(readFileSync(saved)).digest('hex') !== plainHash)
      throw new Error('page saved other bytes');
    browserMBps.push(MIB / seconds);
    await page.close();

    const out = join(work, `cli-${round}.bin`);
    const t0 = performance.now();
    await new Promise<void>((resolve, reject) =>
      execFile(
        join(ROOT, 'scripts', 'node'),
        [
          join(ROOT, 'services', 'cli', 'main.ts'),
          'fetch',
          record.id,
          '-o',
          out,
          '--key',
          reader.keyFile,
          '--node',
          url,
        ],
        (err) => (err ? reject(err) : resolve()),
      ),
    );
    cliMBps.push(MIB / ((performance.now() - t0) / 1000));
    rmSync(out);
  }
} finally {
  await browser.close();
  await app.close();
  await vault.close();
  rmSync(work, { recursive: true, force: true });
}

const figures = {
  recordMiB: MIB,
  rounds: ROUNDS,
  browserDecryptMBps: Number(median(browserMBps).toFixed(1)),
  cliFetchMBps: Number(median(cliMBps).toFixed(1)),
  browserToCli: Number((median(browserMBps) / median(cliMBps)).toFixed(2)),
  firstLoadMs: Math.round(firstLoadMs),
  firstLoadBytes,
};
console.log(
  `in-page decryption of ${MIB} MiB: ${figures.browserDecryptMBps} MiB/s; medvault fetch: ${figures.cliFetchMBps} MiB/s (page/CLI ${figures.browserToCli}); first load ${figures.firstLoadMs} ms, ${(firstLoadBytes / 1024).toFixed(0)} KiB`,
);
if (values.json) console.log(JSON.stringify(figures));
