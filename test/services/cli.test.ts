/**
 * The medvault CLI as a person uses it: exit codes, one-line errors with a
 * stable code, atomic output files (no partial file after a failure), keygen
 * safety, stdin to stdout streaming.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { encrypt, splitAgeFile } from '../../crypto/age.ts';
import { parseIdentityFile, X25519Identity } from '../../crypto/x25519.ts';
import { bytes, flipBits, medvault, ROOT, tempDir } from '../helpers.ts';

const dir = tempDir();
const keyFile = join(dir, 'key.txt');
const keygen = medvault(['keygen', '-o', keyFile]);
const identity = parseIdentityFile(readFileSync(keyFile, 'utf8'))[0] as X25519Identity;
const plain = bytes(5 * 65536 + 17, 5);
const plainFile = join(dir, 'plain.bin');
writeFileSync(plainFile, plain);

function stderrLine(run: { stderr: Buffer }): string {
  const text = run.stderr.toString();
  expect(text.trimEnd().split('\n')).toHaveLength(1); // one line a person can act on
  return text;
}

describe('keygen', () => {
  it('writes a 0600 identity file and prints the public key', () => {
    expect(keygen.status).toBe(0);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(keygen.stderr.toString()).toBe(`Public key: ${identity.recipient}\n`);
  });

  it('never overwrites an existing file', () => {
    const before = readFileSync(keyFile, 'utf8');
    const run = medvault(['keygen', '-o', keyFile]);
    expect(run.status).toBe(1);
    expect(stderrLine(run)).toContain('file already exists');
    expect(readFileSync(keyFile, 'utf8')).toBe(before);
  });

  it('prints to stdout without -o', () => {
    const run = medvault(['keygen']);
    expect(run.status).toBe(0);
    expect(run.stdout.toString()).toMatch(/^# created: .*\n# public key: age1[a-z0-9]+\nAGE-SECRET-KEY-1[A-Z0-9]+\n$/);
  });
});

describe('encrypt and decrypt', () => {
  it('round-trips files with -o and stdin to stdout', () => {
    const enc = join(dir, 'rt.age');
    const out = join(dir, 'rt.out');
    expect(medvault(['encrypt', '-r', identity.recipient.toString(), '-o', enc, plainFile]).status).toBe(0);
    expect(medvault(['decrypt', '-i', keyFile, '-o', out, enc]).status).toBe(0);
    expect(Buffer.compare(readFileSync(out), plain)).toBe(0);
    const piped = medvault(['encrypt', '-r', identity.recipient.toString()], { input: plain });
    const back = medvault(['decrypt', '-i', keyFile, '-'], { input: piped.stdout });
    expect(Buffer.compare(back.stdout, plain)).toBe(0);
  });

  it('a failed decrypt leaves no output file and no temporary beside it', () => {
    const file = Buffer.from(encrypt([identity.recipient], plain));
    flipBits(file, splitAgeFile(file).header.length + 16 + 3 * 65552 + 9, 4); // damage chunk 3 of 6
    const damaged = join(dir, 'damaged.age');
    writeFileSync(damaged, file);
    const outDir = tempDir('medvault-out-');
    const out = join(outDir, 'result.bin');
    const run = medvault(['decrypt', '-i', keyFile, '-o', out, damaged]);
    expect(run.status).toBe(1);
    expect(stderrLine(run)).toContain('[AGE_PAYLOAD_CORRUPT]');
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(outDir)).toEqual([]);
  });

  it('a failed decrypt keeps an existing output file unchanged', () => {
    const out = join(dir, 'existing.bin');
    writeFileSync(out, 'previous contents');
    const truncated = join(dir, 'truncated.age');
    const file = encrypt([identity.recipient], plain);
    writeFileSync(truncated, file.subarray(0, splitAgeFile(file).header.length + 16 + 2 * 65552));
    const run = medvault(['decrypt', '-i', keyFile, '-o', out, truncated]);
    expect(run.status).toBe(1);
    expect(stderrLine(run)).toContain('[AGE_PAYLOAD_TRUNCATED]');
    expect(readFileSync(out, 'utf8')).toBe('previous contents');
  });

  it.each<[string, string[], string]>([
    ['no recipient', ['encrypt', '-o', '/dev/null'], 'INVALID_ARGUMENT'],
    ['a malformed recipient', ['encrypt', '-r', 'age1notakey', '-o', '/dev/null'], 'KEY_INVALID'],
    ['a missing input', ['encrypt', '-r', 'RECIPIENT', '-o', '/dev/null', '/nonexistent/in'], 'IO_ERROR'],
    ['no identity', ['decrypt', '-o', '/dev/null'], 'INVALID_ARGUMENT'],
    ['a missing identity file', ['decrypt', '-i', '/nonexistent/key', '-o', '/dev/null'], 'IO_ERROR'],
    ['an identity file without identities', ['decrypt', '-i', 'PLAIN', '-o', '/dev/null'], 'KEY_INVALID'],
  ])('%s: exit 1 with a typed one-line error', (_name, args, code) => {
    const resolved = args.map((a) =>
      a === 'RECIPIENT' ? identity.recipient.toString() : a === 'PLAIN' ? plainFile : a,
    );
    const run = medvault(resolved, { input: '' });
    expect(run.status).toBe(1);
    expect(stderrLine(run)).toContain(`[${code}]`);
  });

  it('the wrong identity: exit 1, AGE_NO_IDENTITY, a hint, and nothing written', () => {
    const other = join(dir, 'other.txt');
    writeFileSync(other, `${X25519Identity.generate()}\n`);
    const enc = medvault(['encrypt', '-r', identity.recipient.toString()], { input: plain });
    const run = medvault(['decrypt', '-i', other], { input: enc.stdout });
    expect(run.status).toBe(1);
    expect(run.stdout.length).toBe(0);
    expect(stderrLine(run)).toMatch(/\[AGE_NO_IDENTITY\] \(.+-i.+\)/);
  });

  it('input that is not an age file', () => {
    const run = medvault(['decrypt', '-i', keyFile], { input: 'just some text\n' });
    expect(run.status).toBe(1);
    expect(stderrLine(run)).toContain('[AGE_NOT_AGE]');
  });

  it('an unknown command exits non-zero', () => {
    expect(medvault(['frobnicate']).status).not.toBe(0);
  });
});

describe("the processes' heap", () => {
  // glibc's trim threshold and top pad: without them node:crypto's per-chunk buffers made glibc
  // return and re-fault its heap all through a file (30-80k page faults per GiB, not 10k).
  const settings = 'MALLOC_TRIM_THRESHOLD_=67108864 MALLOC_TOP_PAD_=16777216';
  const probe = ['-p', 'process.env.MALLOC_TRIM_THRESHOLD_ + " " + process.env.MALLOC_TOP_PAD_'];

  const env = { ...process.env }; // this process may have them already (npm test runs scripts/node)
  delete env.MALLOC_TRIM_THRESHOLD_;
  delete env.MALLOC_TOP_PAD_;

  it('scripts/node runs node with them, and a caller may set its own', () => {
    const run = (extra: Record<string, string>) =>
      spawnSync(join(ROOT, 'scripts/node'), probe, { env: { ...env, ...extra }, encoding: 'utf8' }).stdout.trim();
    expect(run({})).toBe('67108864 16777216');
    expect(run({ MALLOC_TRIM_THRESHOLD_: '1' })).toBe('1 16777216');
  });

  it("bin/medvault.js's first line runs node with them (through env -S)", () => {
    const first = readFileSync(join(ROOT, 'bin/medvault.js'), 'utf8').split('\n')[0] as string;
    const [interpreter, ...args] = first.replace(/^#!/, '').trim().split(/\s+/);
    expect(interpreter).toBe('/usr/bin/env');
    expect(args.slice(0, -1).join(' ')).toBe(`-S ${settings}`);
    // The line as the kernel runs it: env is given everything after its name as one argument.
    const run = spawnSync(interpreter as string, [args.join(' '), ...probe], { env, encoding: 'utf8' });
    expect(run.stdout.trim()).toBe('67108864 16777216');
  });
});
