#!/usr/bin/env node
/**
 * The medvault command-line tool. The age-compatible commands (keygen,
 * encrypt, decrypt) read and write files that the stock `age` tool reads and
 * writes. Exit code 0 only on success; errors are one line a person can act on.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { blockHash } from '../../anchor/block.ts';
import { FileLedger } from '../../anchor/file-ledger.ts';
import { checkReceiptsOnLedger, type Ledger, verifyChain } from '../../anchor/ledger.ts';
import { openLedger } from '../../anchor/open.ts';
import { type Receipt, verifyReceipt } from '../../anchor/receipt.ts';
import type { Trust } from '../../anchor/trusted-keys.ts';
import { AgeDecryptor, AgeEncryptor } from '../../crypto/age.ts';
import type { Identity, Recipient } from '../../crypto/header.ts';
import { enableChunkReclaim } from '../../crypto/reclaim.ts';
import { ScryptIdentity, ScryptRecipient } from '../../crypto/scrypt.ts';
import { parseIdentityFile, parseRecipientsFile, X25519Identity, X25519Recipient } from '../../crypto/x25519.ts';
import { check, type ErrorCode, fail, isMedvaultError } from '../../errors.ts';
import type { ErasureCertificate } from '../protocol/certificate.ts';
import type { SubjectReport } from '../protocol/subject-report.ts';
import { pump, type Sink, type Source } from '../sdk/pump.ts';
import { askTerminal, collect, parseJsonFile, readText, writeNewFile } from './io.ts';
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

  program
    .command('verify')
    .description(
      'verify a ledger receipt, an erasure certificate or a ledger checkpoint offline; with --ledger, also against the ledger',
    )
    .argument('<file>', 'receipt, erasure certificate, checkpoint or subject report (JSON, or the report as HTML)')
    .option('--ledger <uri>', 'also check the ledger holds each block and it links to the head (file:PATH, etcd://…)')
    .option(
      '--trust <member-key-id>',
      'require every signer to be one of these member key ids (repeatable)',
      collect,
      [],
    )
    .option(
      '--keys <file>',
      "the consortium's node key history (a node's GET /v1/node answer, or its keyHistory list): trust a " +
        '--trust key replaced since, or a key replaced by one, for the blocks it signed',
    )
    .action(async (file: string, opts: { ledger?: string; trust: string[]; keys?: string }) => {
      const text = await readText(file, 'receipt, certificate, checkpoint or report');
      const { embeddedReport } = await import('./report-html.ts');
      const document = text.trimStart().startsWith('<') ? embeddedReport(text) : parseJsonFile(text, file);
      const trust = opts.trust.length > 0 ? { trusted: await trustedKeys(opts.trust, opts.keys) } : {};
      const receipts: Receipt[] = [];
      let line: string;
      const type = (document as { type?: unknown } | null)?.type;
      if (type === 'medvault.ledger-checkpoint') {
        const { checkCheckpointOnLedger, verifyCheckpoint } = await import('../../anchor/checkpoint.ts');
        const verified = verifyCheckpoint(document, trust);
        line = `checkpoint OK: block ${verified.height} (${verified.blockHash.slice(0, 16)}…), signed by ${verified.signers.join(', ')}`;
        if (opts.ledger) {
          await withLedger(opts.ledger, (ledger) => checkCheckpointOnLedger(ledger, verified));
          line += '; the ledger still holds that block';
        }
        process.stdout.write(`${line}\n`);
        return;
      }
      if (type === 'medvault.subject-report') {
        const { verifySubjectReport } = await import('../protocol/subject-report.ts');
        const report = document as SubjectReport;
        const counted = verifySubjectReport(report, trust);
        for (const part of report.parts) for (const r of part.records) receipts.push(...r.events);
        line =
          `subject report OK: ${counted.records} record(s) on ${report.parts.length} node(s), ${counted.receipts} receipt(s) verified, each signed by the node holding its record` +
          (report.missing.length ? `; INCOMPLETE: node(s) ${report.missing.join(', ')} did not answer` : '');
      } else if (type === 'medvault.erasure-certificate') {
        const { verifyCertificate } = await import('../protocol/certificate.ts');
        const verified = verifyCertificate(document, trust);
        const cert = document as ErasureCertificate;
        receipts.push(...cert.records.map((r) => r.tombstone));
        for (const part of cert.parts ?? []) receipts.push(...part.records.map((r) => r.tombstone));
        const others = verified.nodes.slice(1);
        line =
          `certificate OK: erasure ${verified.requestId} of ${verified.records} record(s), signed by ${verified.signer}; ` +
          (cert.kms
            ? `custodian key ${cert.kms.keyId} destroyed (${cert.kms.backend}), the key the records were wrapped to`
            : 'record scope, custodian key kept') +
          `; ${verified.records} tombstone receipt(s) verified` +
          (others.length
            ? `; other nodes: ${others.map((n) => `${n.node} erased ${n.records} record(s)${n.keyDestroyed ? ' and its key' : ''}`).join(', ')}`
            : '') +
          (verified.cosigners.length ? `; cosigned by ${verified.cosigners.join(', ')}` : '; no cosignatures') +
          (cert.consortium
            ? verified.complete
              ? '; COMPLETE: every node of the consortium erased its part and confirmed'
              : `; INCOMPLETE: not yet confirmed by ${verified.missing.join(', ')}`
            : '');
      } else {
        const verified = verifyReceipt(document, trust);
        receipts.push(document as Receipt);
        line = `receipt OK: ${verified.event.type} in block ${verified.height} (${verified.blockHash.slice(0, 16)}…), signed by ${verified.signer}`;
      }
      if (opts.ledger) {
        await withLedger(opts.ledger, async (ledger) => {
          const { headHeight: head } = await checkReceiptsOnLedger(ledger, receipts);
          line += `; on the ledger, linked to head ${head}`;
        });
      }
      if (!opts.trust?.length) {
        line +=
          '\n(integrity checked: it is intact and self-consistent; who signed it is not checked: give --trust NODE_KEY_ID)';
      }
      process.stdout.write(`${line}\n`);
    });

  addVaultCommands(program);

  const ledgerCommand = program.command('ledger').description('inspect and verify a ledger');
  ledgerCommand
    .command('verify')
    .description('walk the whole ledger and check every link, Merkle root and signature')
    .requiredOption('--ledger <uri>', 'file:PATH or etcd://HOST:PORT,…[/PREFIX]')
    .option('--trust <member-key-id>', 'require every block signer to be one of these (repeatable)', collect, [])
    .action(async (opts: { ledger: string; trust: string[] }) => {
      await withLedger(opts.ledger, async (ledger) => {
        const summary = await verifyChain(ledger, opts.trust.length > 0 ? { trusted: new Set(opts.trust) } : {});
        if (!summary.head) fail('LEDGER_EMPTY', `${opts.ledger} holds no block`);
        const torn = ledger instanceof FileLedger ? ledger.tornTail : null;
        process.stdout.write(
          `ledger OK: ${summary.blocks} blocks, ${summary.events} events, head ${summary.head.height} ${blockHash(summary.head)}\n` +
            (torn
              ? `note: ${torn.bytes} byte(s) after the last block at byte ${torn.offset} (${torn.problem}): a torn write, ` +
                'never acknowledged; left as it is (a node cuts it when it next opens the ledger)\n'
              : ''),
        );
      });
    });
  ledgerCommand
    .command('repair')
    .description(
      'copy the intact blocks of a damaged file ledger to a new file (the damaged file is left as it is); then verify the copy and put it in place by hand',
    )
    .requiredOption('--ledger <uri>', 'file:PATH of the damaged ledger')
    .requiredOption('-o, --output <file>', 'where to write the intact prefix (must not exist)')
    .action(async (opts: { ledger: string; output: string }) => {
      if (!opts.ledger.startsWith('file:')) fail('INVALID_ARGUMENT', 'repair works on file: ledgers');
      const { repairFileLedger } = await import('../../anchor/file-ledger.ts');
      const result = await repairFileLedger(opts.ledger.slice('file:'.length), opts.output);
      process.stdout.write(
        `copied blocks 0..${result.blocks - 1} (${result.bytes} bytes) to ${opts.output}; ` +
          `left out ${result.leftOut} byte(s) from byte ${result.damageAt}: ${result.problem}\n`,
      );
    });
  ledgerCommand
    .command('head')
    .description("print the ledger's newest block header as JSON")
    .requiredOption('--ledger <uri>', 'file:PATH or etcd://HOST:PORT,…[/PREFIX]')
    .action(async (opts: { ledger: string }) => {
      await withLedger(opts.ledger, async (ledger) => {
        const head = await ledger.head();
        process.stdout.write(`${JSON.stringify(head ? { hash: blockHash(head), ...head } : null, null, 2)}\n`);
      });
    });

  return program;
}

/** Opens a ledger to read only (a file ledger: no lock, nothing cut), so a running node's can be checked. */
async function withLedger(uri: string, use: (ledger: Ledger) => Promise<void>): Promise<void> {
  const ledger = await openLedger(uri, { readOnly: true });
  try {
    await use(ledger);
  } finally {
    await ledger.close();
  }
}

/** The --trust ids, followed through the node key history in `keysFile` when one is given. */
async function trustedKeys(ids: string[], keysFile: string | undefined): Promise<Trust> {
  if (!keysFile) return ids;
  const { followHistory, historyOf } = await import('../../anchor/key-history.ts');
  return followHistory(ids, historyOf(parseJsonFile(await readText(keysFile, 'key history'), keysFile)));
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
