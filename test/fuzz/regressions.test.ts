/**
 * Every counterexample `npm run fuzz` has kept (test/fuzz/regressions/*.json),
 * replayed through its target's property: each must now pass, that is be
 * accepted or refused with a typed error within 1 s. The first one kept was
 * the decryptor re-copying its header buffer on every piece (quadratic: 1.1 s
 * for 70 KB fed a byte at a time); crypto/header.ts HeaderScanner is the fix.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fuzzPredicates } from './targets.ts';

const dir = join(import.meta.dirname, 'regressions');
const kept = readdirSync(dir).filter((f) => f.endsWith('.json'));

/** Undoes fuzz.ts's encoding of byte arrays as { hex }. */
const revive = (_key: string, value: unknown) =>
  value && typeof value === 'object' && 'hex' in value && Object.keys(value).length === 1
    ? new Uint8Array(Buffer.from(String(value.hex), 'hex'))
    : value;

describe('kept fuzz findings', () => {
  it('there is at least one to replay', () => {
    expect(kept.length).toBeGreaterThan(0);
  });
  for (const name of kept) {
    it(name, () => {
      const finding = JSON.parse(readFileSync(join(dir, name), 'utf8'), revive) as {
        target: string;
        counterexample: unknown[];
      };
      const property = fuzzPredicates[finding.target] as ((...args: unknown[]) => void) | undefined;
      expect(property, `no fuzz target named ${finding.target}`).toBeDefined();
      expect(() => property?.(...finding.counterexample)).not.toThrow();
    });
  }
});
