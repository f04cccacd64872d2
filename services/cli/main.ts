#!/usr/bin/env node
/**
 * The medvault command-line tool. The age-compatible commands (keygen,
 * encrypt, decrypt) read and write files that the stock `age` tool reads and
 * writes. Exit code 0 only on success; errors are one line a person can act on.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { AgeDecryptor, AgeEncryptor } from '../../crypto/age.ts';
import type { Identity, Recipient } from '../../crypto/header.ts';
import { enableChunkReclaim } from '../../crypto/reclaim.ts';
import { ScryptIdentity, ScryptRecipient } from '../../crypto/scrypt.ts';
import { parseIdentityFile, parseRecipientsFile, X25519Identity, X25519Recipient } from '../../crypto/x25519.ts';
import { check, type ErrorCode, fail, isMedvaultError } from '../../errors.ts';
import { pump, type Sink, type Source } from '../sdk/pump.ts';
import { askTerminal, collect, readText, writeNewFile } from './io.ts';
import { addLedgerCommands } from './ledger-commands.ts';
import { addVaultCommands } from './vault-commands.ts';

const HINTS: Partial<Record<ErrorCode, string>> = {
  AGE_NO_IDENTITY: 'is this file encrypted to one of the identities passed with -i?',
  AGE_NOT_AGE: 'is the input an age or medvault encrypted file?',
  AGE_PAYLOAD_TRUNCATED: 'the file is incomplete; fetch or copy it again',
  AGE_PAYLOAD_CORRUPT: 'the file was modified or damaged after encryption',
  KEY_INVALID: 'recipients look like age1…, identities like AGE-SECRET-KEY-1…',
  LEDGER_UNAVAILABLE: 'is the ledger (etcd cluster or file) reachable?',
  OUTCOME_PENDING:
    'the node keeps it and settles it once the ledger answers: run the same command again later to get the record',
  LEDGER_LOCKED: 'another medvault process has this ledger open',
  LEDGER_FULL: "raise the etcd members' --quota-backend-bytes, then clear the alarm (etcdctl alarm disarm)",
};

function source(input: string | undefined): Source {
  return input === undefined || input === '-' ? { stream: process.stdin } : { path: input };
}

function sink(output: string | undefined, binary: boolean): Sink {
  if (output !== undefined && output !== '-') return { path: output };
  if (binary && process.stdout.isTTY) {
    fail('INVALID_ARGUMENT', 'refusing to write binary ciphertext to a terminal; use -a or -o FILE');
  }
  return { stream: process.stdout };
}

function identityFileText(identity: X25519Identity): string {
  return `# created: ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}\n# public key: ${identity.recipient}\n${identity}\n`;
}

/** The version in package.json (beside services/ in a checkout, beside dist/ when built). */
function packageVersion(): string {
  for (const up of ['../..', '../../..']) {
    try {
      return (JSON.parse(readFileSync(join(import.meta.dirname, up, 'package.json'), 'utf8')) as { version: string })
        .version;
    } catch {}
  }
  return 'unknown';
}

export function buildProgram(): Command {
  const program = new Command('medvault')
    .description('medvault: encrypted, ledger-anchored document vault (age v1 compatible)')
    .version(packageVersion(), '-V, --version')
    .showSuggestionAfterError()
    .configureOutput({ outputError: (text, write) => write(text) });

  program
    .command('keygen')
    .description('generate an X25519 identity, written like age-keygen')
    .option('-o, --output <file>', 'write the identity to FILE (created with mode 0600, never overwritten)')
    .option(
      '-y, --to-public <file>',
      'print the recipient of the identity (or member key) file instead, as age-keygen -y',
    )
    .action(async (opts: { output?: string; toPublic?: string }) => {
      if (opts.toPublic !== undefined) {
        const identities = parseIdentityFile(await readText(opts.toPublic, 'identity file'));
        if (identities.length === 0) fail('KEY_INVALID', `${opts.toPublic} holds no age identity`);
        process.stdout.write(identities.map((i) => `${i.recipient}\n`).join(''));
        return;
      }
      const identity = X25519Identity.generate();
      if (opts.output === undefined) {
        process.stdout.write(identityFileText(identity));
        return;
      }
      await writeNewFile(opts.output, identityFileText(identity));
      process.stderr.write(`Public key: ${identity.recipient}\n`);
    });

  program
    .command('encrypt')
    .description('encrypt IN (or stdin) to the given recipients, as an age v1 file')
    .argument('[input]', 'file to encrypt; stdin when absent or -')
    .option('-r, --recipient <age1…>', 'encrypt to this recipient (repeatable)', collect, [])
    .option('-R, --recipients-file <file>', 'encrypt to the recipients listed in FILE (repeatable)', collect, [])
    .option('-p, --passphrase', 'encrypt with a passphrase asked on the terminal (twice), instead of recipients')
    .option('-a, --armor', 'write PEM-armored ASCII instead of binary')
    .option('-o, --output <file>', 'write to FILE (replaced only on success); stdout when absent')
    .action(
      async (
        input: string | undefined,
        opts: { recipient: string[]; recipientsFile: string[]; passphrase?: boolean; armor?: boolean; output?: string },
      ) => {
        const recipients: Recipient[] = opts.recipient.map((r) => X25519Recipient.parse(r));
        for (const file of opts.recipientsFile)
          recipients.push(...parseRecipientsFile(await readText(file, 'recipients file')));
        if (opts.passphrase) {
          check(recipients.length === 0, 'INVALID_ARGUMENT', '-p cannot be combined with -r or -R (as in age)');
          const passphrase = await askTerminal('Enter passphrase: ', true);
          check(passphrase.length > 0, 'INVALID_ARGUMENT', 'an empty passphrase');
          const again = await askTerminal('Confirm passphrase: ', true);
          check(again === passphrase, 'INVALID_ARGUMENT', 'the passphrases do not match');
          recipients.push(new ScryptRecipient(passphrase));
        }
        if (recipients.length === 0) fail('INVALID_ARGUMENT', 'name at least one recipient with -r or -R (or -p)');
        const core = new AgeEncryptor(recipients, { armor: opts.armor === true });
        await pump(core, source(input), sink(opts.output, !opts.armor));
      },
    );

  program
    .command('decrypt')
    .description('decrypt an age v1 file (binary or armored) with your identity')
    .argument('[input]', 'file to decrypt; stdin when absent or -')
    .option('-i, --identity <file>', 'identity file, as written by keygen or age-keygen (repeatable)', collect, [])
    .option('-p, --passphrase', 'the file was encrypted with a passphrase: ask for it on the terminal')
    .option('-o, --output <file>', 'write to FILE (replaced only on success); stdout when absent')
    .action(async (input: string | undefined, opts: { identity: string[]; passphrase?: boolean; output?: string }) => {
      if (opts.identity.length === 0 && !opts.passphrase) {
        fail('INVALID_ARGUMENT', 'name an identity file with -i, or -p for a passphrase-encrypted file');
      }
      const identities: Identity[] = [];
      for (const file of opts.identity) identities.push(...parseIdentityFile(await readText(file, 'identity file')));
      if (opts.passphrase) identities.push(new ScryptIdentity(await askTerminal('Enter passphrase: ', true)));
      await pump(new AgeDecryptor(identities), source(input), sink(opts.output, false));
    });

  addVaultCommands(program);
  addLedgerCommands(program);

  return program;
}

/** Formats any error as the one line the CLI prints. */
export function describeError(err: unknown): string {
  if (isMedvaultError(err)) {
    const hint = HINTS[err.code];
    return `medvault: error: ${err.message} [${err.code}]${hint ? ` (${hint})` : ''}`;
  }
  return `medvault: error: ${err instanceof Error ? err.message : String(err)}`;
}

export async function main(argv: string[]): Promise<number> {
  enableChunkReclaim(); // a program, not a library: it may set V8's flags (crypto/reclaim.ts)
  try {
    await buildProgram().exitOverride().parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0; // a command may set its own (sweep: 2)
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (typeof code === 'string' && code.startsWith('commander.')) {
      // commander has printed its own message (or help/version output).
      return (err as { exitCode?: number }).exitCode ?? 1;
    }
    process.stderr.write(`${describeError(err)}\n`);
    return 1;
  }
}

if (import.meta.main) {
  process.exitCode = await main(process.argv);
}
