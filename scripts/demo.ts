/**
 * npm run demo: the main job on the embedded defaults. Until the vault
 * service exists, this is the envelope's round trip as a person would do it
 * with the CLI: a hospital and a reader make keys, the hospital encrypts a
 * document to the reader (and itself), the reader decrypts it with medvault
 * and with the stock `age` tool, and a damaged copy is refused.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const bin = join(root, 'bin/medvault.js');
const work = mkdtempSync(join(tmpdir(), 'medvault-demo-'));
const say = (text: string) => console.log(text);
const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex').slice(0, 16);

function medvault(...args: string[]): string {
  const run = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8' });
  if (run.status !== 0) throw new Error(`medvault ${args.join(' ')} failed: ${run.stderr}`);
  return run.stderr.trim();
}

try {
  if (!existsSync(join(root, 'dist/services/cli.js'))) {
    execFileSync(process.execPath, [
      join(root, 'node_modules/typescript/bin/tsc'),
      '-p',
      join(root, 'tsconfig.build.json'),
    ]);
  }
  say(`medvault demo — working in ${work}\n`);

  say('1. The hospital and a radiologist each make an age identity (private key file + public key).');
  const hospitalKey = join(work, 'hospital.key');
  const readerKey = join(work, 'radiologist.key');
  const hospital = medvault('keygen', '-o', hospitalKey).replace('Public key: ', '');
  const reader = medvault('keygen', '-o', readerKey).replace('Public key: ', '');
  say(`   hospital:    ${hospital}\n   radiologist: ${reader}\n`);

  say('2. The hospital has an 8 MiB MRI study (random bytes stand in for it).');
  const study = join(work, 'mri-study.dcm');
  writeFileSync(study, randomBytes(8 * 1024 * 1024));
  say(`   sha256 ${sha(study)}…\n`);

  say('3. It encrypts the study to the radiologist and to itself: one file key, wrapped twice.');
  const sealed = join(work, 'mri-study.dcm.age');
  medvault('encrypt', '-r', reader, '-r', hospital, '-o', sealed, study);
  const header = readFileSync(sealed).subarray(0, 400).toString('latin1').split('\n---')[0] as string;
  say(
    `   header (no names, no plaintext, two X25519 stanzas):\n${header
      .split('\n')
      .map((l) => `     ${l.slice(0, 70)}`)
      .join('\n')}\n`,
  );

  say('4. The radiologist decrypts with medvault, using only their own key file.');
  const opened = join(work, 'opened-by-medvault.dcm');
  medvault('decrypt', '-i', readerKey, '-o', opened, sealed);
  say(`   sha256 ${sha(opened)}… ${sha(opened) === sha(study) ? 'matches the original' : 'DOES NOT MATCH'}\n`);

  say('5. The same file opens with the stock `age` tool: the format is age v1, no lock-in.');
  const ageRun = spawnSync('age', ['-d', '-i', readerKey, '-o', join(work, 'opened-by-age.dcm'), sealed]);
  if (ageRun.error) say('   (the age CLI is not installed here; run scripts/setup.sh)\n');
  else say(`   age exit ${ageRun.status}; sha256 ${sha(join(work, 'opened-by-age.dcm'))}…\n`);

  say('6. One flipped bit in transit: decryption refuses, and no partial output is left behind.');
  const damaged = readFileSync(sealed);
  damaged.writeUInt8((damaged.readUInt8(damaged.length - 1000) ^ 1) & 0xff, damaged.length - 1000);
  writeFileSync(join(work, 'damaged.age'), damaged);
  const refused = spawnSync(
    process.execPath,
    [bin, 'decrypt', '-i', readerKey, '-o', join(work, 'x.dcm'), join(work, 'damaged.age')],
    {
      encoding: 'utf8',
    },
  );
  say(`   exit ${refused.status}: ${refused.stderr.trim()}`);
  say(`   output file present: ${existsSync(join(work, 'x.dcm'))}\n`);
  say('Done.');
} finally {
  rmSync(work, { recursive: true, force: true });
}
