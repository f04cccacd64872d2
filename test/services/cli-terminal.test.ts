/**
 * The CLI on a terminal (util-linux `script` gives it one): `erase` asks before it erases,
 * `fetch` draws its progress with speed and time left, and passphrase files encrypt and decrypt
 * (`-p`) both ways with the stock `age`, which asks on the terminal too.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bytes, CLI, onTerminal, tempDir } from '../helpers.ts';
import { startNode, type TestMember, type TestNode, treatment } from './vault-fixture.ts';

const dir = tempDir('medvault-cli-terminal-');
const medvault = (...args: string[]) => [process.execPath, CLI, ...args];
let node: TestNode;
let hospital: TestMember;
let dpo: TestMember;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  node = await startNode();
  hospital = await node.addMember('hospital', 'uploader');
  dpo = await node.addMember('dpo', 'dpo');
  env = { ...process.env, MEDVAULT_NODE: node.url, MEDVAULT_LOG_LEVEL: 'warn' };
});
afterAll(() => node?.stop());

describe('the CLI on a terminal', () => {
  it('erase asks first: anything but "erase" erases nothing; "erase" erases', async () => {
    const { record } = await hospital.client.upload(bytes(1_000, 1), treatment([]));
    const refused = await onTerminal(medvault('erase', '--record', record.id, '--key', dpo.keyFile), 'no\n', env);
    expect(refused.code).not.toBe(0);
    expect(refused.screen).toContain('This cannot be undone');
    expect(refused.screen).toContain('not confirmed: nothing was erased');
    expect((await hospital.client.record(record.id)).state).toBe('active');
    const done = await onTerminal(medvault('erase', '--record', record.id, '--key', dpo.keyFile), 'erase\n', env);
    expect(done.code, done.screen).toBe(0);
    expect(done.screen).toContain(`executed: 1 record(s)`);
    await expect(hospital.client.record(record.id)).rejects.toMatchObject({ code: 'RECORD_ERASED' });
  });

  it('fetch draws its progress with speed and time left', async () => {
    const plain = bytes(24 * 1024 * 1024, 2);
    const { record } = await hospital.client.upload(plain, treatment([]));
    const out = join(dir, 'fetched.bin');
    const run = await onTerminal(medvault('fetch', record.id, '-o', out, '--key', hospital.keyFile), '', env);
    expect(run.code, run.screen).toBe(0);
    expect(run.screen).toMatch(/fetching \[[^\]]+\] \d+% \| [\d.]+\/24\.0 MiB \| [\d.]+ MiB\/s \| .* left/);
    expect(readFileSync(out).equals(plain)).toBe(true);
  });

  it('encrypt -p and decrypt -p, both ways with the stock age', async () => {
    const plain = bytes(100_000, 3);
    const input = join(dir, 'letter.txt');
    writeFileSync(input, plain);
    const ours = join(dir, 'ours.age');
    const pass = 'correct horse battery staple';
    const twice = [
      { after: 'Enter passphrase', type: `${pass}\n` },
      { after: 'Confirm passphrase', type: `${pass}\n` },
    ];
    const sealed = await onTerminal(medvault('encrypt', '-p', '-o', ours, input), twice, env);
    expect(sealed.code, sealed.screen).toBe(0);
    expect(sealed.screen).not.toContain(pass); // not echoed
    const byAge = join(dir, 'by-age.txt');
    expect((await onTerminal(['age', '-d', '-o', byAge, ours], `${pass}\n`)).code).toBe(0);
    expect(readFileSync(byAge).equals(plain)).toBe(true);

    const theirs = join(dir, 'theirs.age');
    expect((await onTerminal(['age', '-p', '-o', theirs, input], `${pass}\n${pass}\n`)).code).toBe(0);
    const back = join(dir, 'back.txt');
    const opened = await onTerminal(medvault('decrypt', '-p', '-o', back, theirs), `${pass}\n`, env);
    expect(opened.code, opened.screen).toBe(0);
    expect(readFileSync(back).equals(plain)).toBe(true);
    const wrong = await onTerminal(medvault('decrypt', '-p', '-o', join(dir, 'no.txt'), theirs), 'wrong\n', env);
    expect(wrong.code).not.toBe(0);
    expect(wrong.screen).toMatch(/\[AGE_/);
    const mismatch = await onTerminal(medvault('encrypt', '-p', '-o', join(dir, 'x.age'), input), 'a\nb\n', env);
    expect(mismatch.screen).toContain('the passphrases do not match');
  });
});
