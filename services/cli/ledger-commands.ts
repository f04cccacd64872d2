/**
 * The CLI's offline verification and ledger commands: `verify` (receipts,
 * certificates, checkpoints, subject reports) and `ledger verify|repair|head`.
 * Their modules (schemas compiled at import, the etcd client) are loaded when
 * one of them runs, so that `encrypt`, `decrypt` and `keygen` start in tens
 * of milliseconds instead of a quarter of a second.
 */
import type { Command } from 'commander';
import type { Ledger } from '../../anchor/ledger.ts';
import type { Receipt } from '../../anchor/receipt.ts';
import type { Trust } from '../../anchor/trusted-keys.ts';
import { fail } from '../../errors.ts';
import type { ErasureCertificate } from '../protocol/certificate.ts';
import type { SubjectReport } from '../protocol/subject-report.ts';
import { collect, parseJsonFile, readText } from './io.ts';

export function addLedgerCommands(program: Command): void {
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
      const { verifyReceipt } = await import('../../anchor/receipt.ts');
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
        const { checkReceiptsOnLedger } = await import('../../anchor/ledger.ts');
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

  const ledgerCommand = program.command('ledger').description('inspect and verify a ledger');
  ledgerCommand
    .command('verify')
    .description('walk the whole ledger and check every link, Merkle root and signature')
    .requiredOption('--ledger <uri>', 'file:PATH or etcd://HOST:PORT,…[/PREFIX]')
    .option('--trust <member-key-id>', 'require every block signer to be one of these (repeatable)', collect, [])
    .action(async (opts: { ledger: string; trust: string[] }) => {
      const [{ verifyChain }, { FileLedger }, { blockHash }] = await Promise.all([
        import('../../anchor/ledger.ts'),
        import('../../anchor/file-ledger.ts'),
        import('../../anchor/block.ts'),
      ]);
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
      const { blockHash } = await import('../../anchor/block.ts');
      await withLedger(opts.ledger, async (ledger) => {
        const head = await ledger.head();
        process.stdout.write(`${JSON.stringify(head ? { hash: blockHash(head), ...head } : null, null, 2)}\n`);
      });
    });
}

/** Opens a ledger to read only (a file ledger: no lock, nothing cut), so a running node's can be checked. */
async function withLedger(uri: string, use: (ledger: Ledger) => Promise<void>): Promise<void> {
  const { openLedger } = await import('../../anchor/open.ts');
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
