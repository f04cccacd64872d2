/**
 * Around the whole run: every temp directory the tests make (`tempDir` in test/helpers.ts, all
 * named medvault-…) is gone at the end. One left fails the run, named (before, each run left
 * some 300 node data directories, GBs, in /tmp).
 */
import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';

/** The tests' temp directories now (a benchmark's, medvault-bench-…, may run beside them). */
const ours = () =>
  new Set(readdirSync(tmpdir()).filter((name) => name.startsWith('medvault-') && !name.startsWith('medvault-bench-')));

export default function setup(): () => void {
  const before = ours();
  return () => {
    const left = [...ours()].filter((name) => !before.has(name));
    if (left.length > 0) {
      throw new Error(`the tests left ${left.length} temp directories in ${tmpdir()}: ${left.slice(0, 10).join(', ')}`);
    }
  };
}
