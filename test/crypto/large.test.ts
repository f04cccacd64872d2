/** A 1 GiB streaming round trip whose peak memory stays bounded; and the library sets no V8 flag to get there. */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { ROOT } from '../helpers.ts';

const GIB = 1024 ** 3;
// Node with TypeScript stripping starts near 90 MiB; 1 GiB must not add more than a few tens.
const PEAK_RSS_LIMIT_MIB = 192;

it('streams 1 GiB through encrypt and decrypt with bounded memory', () => {
  const child = spawnSync(process.execPath, [join(ROOT, 'test/crypto/fixtures/stream-round-trip.ts'), String(GIB)], {
    encoding: 'utf8',
    timeout: 300_000,
  });
  expect(child.status, child.stderr).toBe(0);
  const result = JSON.parse(child.stdout.trim().split('\n').at(-1) as string);
  expect(result.outHash).toBe(result.inHash);
  expect(result.maxRssMiB).toBeLessThan(PEAK_RSS_LIMIT_MIB);
}, 320_000);

it("importing the library changes no V8 flag: reclaim is the program's to enable", () => {
  const child = spawnSync(process.execPath, [join(ROOT, 'test/crypto/fixtures/reclaim-flags.ts')], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  expect(child.status, child.stderr).toBe(0);
  const result = JSON.parse(child.stdout.trim().split('\n').at(-1) as string);
  expect(result.out).toBe(16 * 2 ** 20);
  // Before opting in, nothing exposed V8's collector (an eager --expose-gc at import would).
  expect(result.before).toBe('undefined');
  expect(result.enabled).toBe(true);
  expect(result.after).toBe('function');
});
