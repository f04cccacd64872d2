/**
 * Interoperability with the stock Go `age` CLI (Debian's `age` package), both
 * ways: what medvault writes, age reads; what age writes, medvault reads.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decrypt, encrypt } from '../../crypto/age.ts';
import { parseIdentityFile, X25519Identity } from '../../crypto/x25519.ts';
import { bytes, medvault, tempDir, tool } from '../helpers.ts';

const dir = tempDir();
const CHUNK = 64 * 1024;
const SIZES: Record<string, number> = {
  empty: 0,
  '1 byte': 1,
  '64 KiB - 1': CHUNK - 1,
  '64 KiB': CHUNK,
  '64 KiB + 1': CHUNK + 1,
  '2 chunks exactly': 2 * CHUNK,
  '5 MiB + 3': 5 * 1024 * 1024 + 3,
};

// Keys made by both tools: age-keygen's identities must work in medvault and ours in age.
const ageKeyFile = join(dir, 'age-key.txt');
tool('age-keygen', ['-o', ageKeyFile]);
const ageIdentity = parseIdentityFile(readFileSync(ageKeyFile, 'utf8'))[0] as X25519Identity;
const ourKeyFile = join(dir, 'our-key.txt');
const keygen = medvault(['keygen', '-o', ourKeyFile]);
const ourIdentity = parseIdentityFile(readFileSync(ourKeyFile, 'utf8'))[0] as X25519Identity;
const extra = [X25519Identity.generate(), X25519Identity.generate()];

describe('keys', () => {
  it('medvault keygen writes an identity age-keygen -y accepts, with the same public key', () => {
    expect(keygen.status).toBe(0);
    const fromAge = tool('age-keygen', ['-y', ourKeyFile]).stdout.toString().trim();
    expect(fromAge).toBe(ourIdentity.recipient.toString());
    expect(readFileSync(ourKeyFile, 'utf8')).toContain(`# public key: ${fromAge}`);
  });

  it('parses age-keygen identities to the public key age-keygen reports', () => {
    const fromAge = tool('age-keygen', ['-y', ageKeyFile]).stdout.toString().trim();
    expect(ageIdentity.recipient.toString()).toBe(fromAge);
  });
});

describe.each([
  ['binary', false],
  ['armored', true],
])('%s', (_name, armor) => {
  describe.each(Object.entries(SIZES))('%s', (label, size) => {
    const plain = bytes(size, size + 7);
    const file = join(dir, `${label}-${armor}.age`.replaceAll(' ', '_'));

    it('age decrypts what medvault encrypts (one recipient)', () => {
      writeFileSync(file, encrypt([ageIdentity.recipient], plain, { armor }));
      const out = tool('age', ['-d', '-i', ageKeyFile, file]);
      expect(out.status, out.stderr.toString()).toBe(0);
      expect(Buffer.compare(out.stdout, plain)).toBe(0);
    });

    it('medvault decrypts what age encrypts (several recipients)', () => {
      const args = ['-r', ourIdentity.recipient.toString(), ...extra.flatMap((e) => ['-r', e.recipient.toString()])];
      const out = tool('age', [...args, ...(armor ? ['-a'] : [])], { input: plain });
      expect(out.status, out.stderr.toString()).toBe(0);
      for (const identity of [ourIdentity, ...extra]) {
        expect(Buffer.compare(decrypt([identity], out.stdout), plain)).toBe(0);
      }
    });
  });
});

describe('the CLI with age', () => {
  const plain = bytes(3 * CHUNK + 123, 99);
  const input = join(dir, 'cli-plain.bin');
  writeFileSync(input, plain);

  it('medvault encrypt to several recipients; age decrypts with each identity', () => {
    const out = join(dir, 'cli.age');
    const recipientsFile = join(dir, 'recipients.txt');
    writeFileSync(recipientsFile, `# readers\n${extra[0]?.recipient}\n\n${extra[1]?.recipient}\n`);
    const run = medvault(['encrypt', '-r', ageIdentity.recipient.toString(), '-R', recipientsFile, '-o', out, input]);
    expect(run.status, run.stderr.toString()).toBe(0);
    for (const identity of [ageIdentity, ...extra]) {
      const keyFile = join(dir, 'one-key.txt');
      writeFileSync(keyFile, `${identity}\n`);
      const dec = tool('age', ['-d', '-i', keyFile, out]);
      expect(Buffer.compare(dec.stdout, plain)).toBe(0);
    }
  });

  it('age -a output decrypts with medvault decrypt from stdin to stdout', () => {
    const enc = tool('age', ['-a', '-r', ourIdentity.recipient.toString()], { input: plain });
    const dec = medvault(['decrypt', '-i', ourKeyFile], { input: enc.stdout });
    expect(dec.status, dec.stderr.toString()).toBe(0);
    expect(Buffer.compare(dec.stdout, plain)).toBe(0);
  });

  it('medvault encrypt -a from stdin is decrypted by age', () => {
    const enc = medvault(['encrypt', '-a', '-r', ageIdentity.recipient.toString()], { input: plain });
    expect(enc.stdout.toString('latin1')).toMatch(/^-----BEGIN AGE ENCRYPTED FILE-----\n/);
    const dec = tool('age', ['-d', '-i', ageKeyFile], { input: enc.stdout });
    expect(Buffer.compare(dec.stdout, plain)).toBe(0);
  });
});
