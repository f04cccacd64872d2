/**
 * npm run fuzz [-- --runs N --seed S --target NAME --json]
 *
 * Property-based fuzzing (fast-check) of every parser an outsider's bytes
 * reach: the signed request's headers (each accepted value must be its one
 * canonical spelling), the age header parser, the armor decoder, the age
 * decryptor (header, STREAM payload), the event schema and canonical JSON
 * (`--target` runs those whose name contains NAME). Inputs are
 * random bytes and valid inputs with bytes flipped, inserted, dropped or cut. Each must either succeed or refuse with a
 * typed MedvaultError (anything else is a crash), within 1 s (a hang); the
 * decryptor must never release a byte that is not the original plaintext at
 * that offset (plaintext released unauthenticated). N runs per target
 * (default 1,000,000). Failing inputs are written to test/fuzz/regressions/,
 * which test/fuzz/regressions.test.ts replays in `npm test`.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { fuzzTargets } from './targets.ts';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '1000000' },
    seed: { type: 'string' },
    json: { type: 'boolean', default: false },
    target: { type: 'string' },
  },
});
const runs = Number(values.runs);
const seed = values.seed ? Number(values.seed) : Date.now() % 2 ** 31;

const results: Record<string, { runs: number; seconds: number; findings: number }> = {};
const found = join(import.meta.dirname, 'regressions');
const chosen = Object.entries(fuzzTargets({ numRuns: runs, seed })).filter(
  ([name]) => values.target === undefined || name.includes(values.target),
);
for (const [name, run] of chosen) {
  const started = performance.now();
  const outcome = run();
  const seconds = (performance.now() - started) / 1000;
  results[name] = { runs: outcome.numRuns, seconds, findings: outcome.failed ? 1 : 0 };
  console.log(
    `${name}: ${outcome.numRuns} inputs in ${seconds.toFixed(1)} s, ${outcome.failed ? 'FINDING' : 'no finding'}`,
  );
  if (outcome.failed) {
    mkdirSync(found, { recursive: true });
    const file = join(found, `${name.replace(/\W+/g, '-')}-${seed}.json`);
    writeFileSync(
      file,
      JSON.stringify(
        { target: name, seed, counterexample: outcome.counterexample, error: String(outcome.errorInstance) },
        (_k, v) => (v instanceof Uint8Array ? { hex: Buffer.from(v).toString('hex') } : v),
        2,
      ),
    );
    console.log(`  ${String(outcome.errorInstance).slice(0, 300)}\n  kept as ${file}`);
  }
}
if (values.json) console.log(JSON.stringify({ seed, runsPerTarget: runs, targets: results }));
process.exitCode = Object.values(results).some((r) => r.findings > 0) ? 1 : 0;
