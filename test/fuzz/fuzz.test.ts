/**
 * The fuzz targets (targets.ts) on every `npm test`, briefly: 3,000 inputs each
 * from a fixed seed, so a regression in any parser's refusals, or in the
 * decryptor's "nothing unauthenticated" rule, fails the suite. `npm run fuzz`
 * runs them at length (README has the figures).
 */
import { describe, expect, it } from 'vitest';
import { fuzzTargets } from './targets.ts';

describe('fuzz targets, briefly', () => {
  for (const [name, run] of Object.entries(fuzzTargets({ numRuns: 3000, seed: 20261206 }))) {
    it(`${name}: 3,000 inputs, no crash, no hang, nothing unauthenticated`, () => {
      const outcome = run();
      expect(outcome.failed, String(outcome.errorInstance)).toBe(false);
      expect(outcome.numRuns).toBe(3000);
    });
  }
});
