/**
 * npm run bench:keystore [-- --subjects N --clients C --json]
 *
 * The local KMS as a hospital's patient count grows: N new subjects get their
 * custodian keys, C at a time (as concurrent uploads for new patients would
 * ask), in a keystore sealed by a key file on this machine's disk. Reported:
 * milliseconds per new subject over each quarter of the run (with one sealed
 * file for every key this grew with N: 5.7 ms per subject at 2,000 subjects,
 * 30 ms at 8,000, one at a time), then the time to reopen the keystore with
 * all N keys. With --json the last line is {"newSubjectMs":[q1,q2,q3,q4],
 * "reopenSeconds","subjects"}.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { LocalKms } from '../../kms/local-kms.ts';

const { values } = parseArgs({
  options: {
    subjects: { type: 'string', default: '20000' },
    clients: { type: 'string', default: '8' },
    json: { type: 'boolean', default: false },
  },
});
const subjects = Number(values.subjects);
const clients = Number(values.clients);
const dir = mkdtempSync(join(tmpdir(), 'medvault-bench-keystore-'));
try {
  const secret = { keyFile: randomBytes(32) };
  const path = join(dir, 'keystore.sealed');
  const kms = await LocalKms.open(path, secret);
  const newSubjectMs: number[] = [];
  const quarter = Math.ceil(subjects / 4);
  for (let made = 0; made < subjects; ) {
    const t = performance.now();
    const target = Math.min(subjects, made + quarter);
    await Promise.all(
      Array.from({ length: clients }, async () => {
        while (made < target) {
          made++;
          await kms.custodian(randomBytes(32).toString('hex'));
        }
      }),
    );
    newSubjectMs.push((performance.now() - t) / quarter);
    console.log(`subjects ${String(made).padStart(7)}  ${newSubjectMs.at(-1)?.toFixed(3)} ms per new subject`);
  }
  const t = performance.now();
  await LocalKms.open(path, secret);
  const reopenSeconds = (performance.now() - t) / 1000;
  console.log(`reopen with ${subjects} keys  ${reopenSeconds.toFixed(2)} s`);
  if (values.json) console.log(JSON.stringify({ newSubjectMs, reopenSeconds, subjects }));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
