/**
 * The vault's commands: a node's operator runs `init` and `serve`; members
 * run the rest against a node through the SDK, signing with their member key
 * file (`--key`, or MEDVAULT_KEY) and talking to `--node` (or MEDVAULT_NODE,
 * default http://127.0.0.1:7400).
 */
import { existsSync } from 'node:fs';
import { rm, stat, writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { check, fail } from '../../errors.ts';
import { ROLES, type Role } from '../../formats.ts';
// The SDK, the server and the node are imported when a command needs them, so
// the age commands (encrypt, decrypt) start as fast as they did without them.
import type { JoinRequest, Receipt, RecordFilters, RecordSummary, VaultClient } from '../sdk/client.ts';
import { subjectOf } from '../sdk/pseudonym.ts';
import { ioError } from '../sdk/pump.ts';
import { askTerminal, collect, parseJsonFile, progressBar, readText, writeNewFile } from './io.ts';

const DEFAULT_NODE = 'http://127.0.0.1:7400';
const DAY = 86_400_000;

interface ClientOptions {
  node?: string;
  key?: string;
  ca?: string;
  json?: boolean;
}

async function client(opts: ClientOptions): Promise<VaultClient> {
  const keyFile = opts.key ?? process.env.MEDVAULT_KEY;
  if (!keyFile) fail('INVALID_ARGUMENT', 'name your member key file with --key FILE (or MEDVAULT_KEY)');
  const { parseMemberKeyFile, VaultClient } = await import('../sdk/client.ts');
  const keys = parseMemberKeyFile(await readText(keyFile, 'member key file'));
  const caFile = opts.ca ?? process.env.MEDVAULT_NODE_CA;
  const ca = caFile ? Buffer.from(await readText(caFile, 'CA certificate')) : undefined;
  return new VaultClient(opts.node ?? process.env.MEDVAULT_NODE ?? DEFAULT_NODE, keys, ca ? { ca } : {});
}

function withClientOptions(command: Command): Command {
  return command
    .option('--node <url>', `the vault node (default MEDVAULT_NODE or ${DEFAULT_NODE})`)
    .option('--key <file>', 'your member key file (default MEDVAULT_KEY)')
    .option('--ca <file>', "the CA of the node's TLS certificate, if not a public one (default MEDVAULT_NODE_CA)")
    .option('--json', 'print JSON instead of sentences');
}

function print(opts: { json?: boolean }, json: unknown, text: string): void {
  process.stdout.write(opts.json ? `${JSON.stringify(json, null, 2)}\n` : `${text}\n`);
}

/** "30d", "12h", "45m" from now, or an ISO date. */
export function parseExpiry(value: string, now = Date.now()): number {
  return parseWhen(value, 'ahead', now);
}

/** A time given as 30d, 12h or 45m (`ahead` of now, or `ago`) or as a date; ms since the epoch. */
export function parseWhen(value: string, direction: 'ahead' | 'ago', now = Date.now()): number {
  const relative = /^(\d{1,5})([dhm])$/.exec(value);
  if (relative) {
    const unit = { d: DAY, h: 3_600_000, m: 60_000 }[relative[2] as 'd' | 'h' | 'm'];
    return now + (direction === 'ahead' ? 1 : -1) * Number(relative[1]) * unit;
  }
  const at = Date.parse(value);
  check(Number.isFinite(at), 'INVALID_ARGUMENT', `a time is 30d, 12h, 45m or a date, not ${JSON.stringify(value)}`);
  return at;
}

async function saveJson(path: string | undefined, value: unknown): Promise<void> {
  if (!path) return;
  await writeFile(path, `${JSON.stringify(value, null, 2)}\n`).catch((err) => {
    throw ioError(err, `cannot write ${path}`);
  });
}

function where(receipt: Receipt): string {
  return `block ${receipt.block.height}, leaf ${receipt.leafIndex}`;
}

interface InitOptions {
  data: string;
  name: string;
  admin: string;
  port: string;
  url?: string;
  pkcs11Library?: string;
  pkcs11Token?: string;
  tlsCert?: string;
  tlsKey?: string;
  join?: string;
}

/** IO_ERROR before anything is asked of the node when `path` exists and `--force` was not given. */
function refuseOverwrite(path: string | undefined, force: boolean | undefined): void {
  if (path && !force && existsSync(path)) fail('IO_ERROR', `${path} exists: give --force to replace it`);
}

export function addVaultCommands(program: Command): void {
  program
    .command('demo')
    .description('the whole scenario on the embedded defaults, in a temporary directory, explained step by step')
    .option('--size <mib>', 'size of the MRI study, MiB', '128')
    .option('--keep', 'keep the working directory')
    .action(async (opts: { size: string; keep?: boolean }) => {
      const { runDemo } = await import('./demo.ts');
      await runDemo({ sizeMiB: Number(opts.size), keep: opts.keep === true });
    });

  const initCommand = (command: Command, founding: boolean) => {
    command
      .option('--data <dir>', 'data directory', 'medvault-data')
      .option('--name <name>', 'node name', 'node')
      .option('--admin <name>', "the first admin member's name", 'admin')
      .option('--port <port>', 'port to listen on (127.0.0.1)', '7400')
      .option('--url <url>', 'the URL the other nodes reach this one at (default http://127.0.0.1:PORT)')
      .option(
        '--pkcs11-library <path>',
        "keep subjects' custodian keys on a PKCS#11 token (PIN in MEDVAULT_PKCS11_PIN)",
      )
      .option('--pkcs11-token <label>', 'the token label (with --pkcs11-library)')
      .option('--tls-cert <file>', 'serve HTTPS with this certificate (PEM); peers pin it, from the ledger')
      .option('--tls-key <file>', 'the key of --tls-cert (PEM)');
    if (!founding) {
      command.option('--join <invite-file>', 'join a consortium: the invite an admin of a member node made');
    }
    command.action(async (opts: InitOptions) => {
      check(
        !!opts.pkcs11Library === !!opts.pkcs11Token,
        'INVALID_ARGUMENT',
        'give --pkcs11-library and --pkcs11-token together',
      );
      check(!!opts.tlsCert === !!opts.tlsKey, 'INVALID_ARGUMENT', 'give --tls-cert and --tls-key together');
      const { initNode } = await import('../vault/node.ts');
      const kms = opts.pkcs11Library
        ? { backend: 'pkcs11' as const, library: opts.pkcs11Library, token: opts.pkcs11Token as string }
        : undefined;
      const join = opts.join === undefined ? undefined : await readText(opts.join, 'invite');
      const result = await initNode(opts.data, {
        name: opts.name,
        admin: opts.admin,
        port: Number(opts.port),
        ...(opts.url ? { url: opts.url } : {}),
        ...(opts.tlsCert && opts.tlsKey ? { tls: { cert: opts.tlsCert, key: opts.tlsKey } } : {}),
        kms,
        ...(join === undefined ? {} : { join }),
      });
      process.stdout.write(
        `${join === undefined ? 'founded a consortium in' : 'joined the consortium in'} ${opts.data}: node key ${result.nodeId}\n` +
          `first admin ${opts.admin} (${result.adminId}); its member key file: ${result.adminKeyFile}\n` +
          'move that file to the admin and keep keystore.key apart from backups of the data directory\n',
      );
    });
  };
  initCommand(
    program
      .command('init')
      .description(
        'make a node data directory (config, sealed keystore, ledger, blob store, first admin key): found a consortium, or --join one',
      ),
    false,
  );

  const consortium = program.command('consortium').description('found a consortium, invite nodes into it, list them');
  initCommand(
    consortium
      .command('found')
      .description('make the first node of a new consortium (the same as init without --join)'),
    true,
  );
  consortium
    .command('request')
    .description("a joining node's first step: make its keys in DIR and print the join request to send to an admin")
    .option('--data <dir>', 'the data directory the node will have', 'medvault-data')
    .option('-o, --output <file>', 'also write the join request to FILE')
    .action(async (opts: { data: string; output?: string }) => {
      const { joinRequest } = await import('../vault/node.ts');
      const request = await joinRequest(opts.data);
      const text = `${JSON.stringify(request, null, 2)}\n`;
      if (opts.output) await writeNewFile(opts.output, text);
      process.stdout.write(text);
    });
  withClientOptions(
    consortium
      .command('invite')
      .description('invite a node into the consortium (admin): an invite sealed to the node, anchored on the ledger')
      .requiredOption('--request <file>', 'the join request the node made (medvault consortium request)')
      .requiredOption('-o, --output <file>', 'write the invite here (hand it to the joining node)')
      .option('--expires-in-days <days>', 'how long the invite can be used', '7'),
  ).action(async (opts: ClientOptions & { request: string; output: string; expiresInDays: string }) => {
    const vault = await client(opts);
    const request = parseJsonFile(await readText(opts.request, 'join request'), opts.request);
    const result = await vault.invite(request as JoinRequest, { expiresInDays: Number(opts.expiresInDays) });
    await writeNewFile(opts.output, result.invite);
    print(
      opts,
      { node: result.node, expiresAt: result.expiresAt, receipt: result.receipt },
      `invited node ${result.node} (${where(result.receipt)}); the invite, ${opts.output}, opens only with that node's key` +
        ` until ${new Date(result.expiresAt).toISOString()}: medvault init --join ${opts.output}`,
    );
  });
  const describeLocal = (state: { nodes: Array<{ name: string; url: string; adminKey: string }>; ledger: string }) =>
    [`ledger ${state.ledger}`, ...state.nodes.map((n) => `${n.name}  ${n.url}  admin key ${n.adminKey}`)].join('\n');
  consortium
    .command('up')
    .description('a local consortium: a 3-member etcd cluster and N nodes on it, as processes on this machine')
    .requiredOption('--dir <dir>', 'where its data, keys, logs and consortium.json go (again: restart it)')
    .option('--nodes <n>', 'how many nodes', '3')
    .action(async (opts: { dir: string; nodes: string }) => {
      const { consortiumUp } = await import('./local-consortium.ts');
      const state = await consortiumUp(opts.dir, { nodes: Number(opts.nodes) });
      process.stdout.write(`${describeLocal(state)}\nstop it with: medvault consortium down --dir ${opts.dir}\n`);
    });
  consortium
    .command('add')
    .description('one more node joins the local consortium by invite')
    .requiredOption('--dir <dir>', 'the directory of medvault consortium up')
    .action(async (opts: { dir: string }) => {
      const { addNode } = await import('./local-consortium.ts');
      const node = await addNode(opts.dir);
      process.stdout.write(`${node.name}  ${node.url}  admin key ${node.adminKey}\n`);
    });
  consortium
    .command('down')
    .description('stop every process of the local consortium (by PID), keeping its data')
    .requiredOption('--dir <dir>', 'the directory of medvault consortium up')
    .action(async (opts: { dir: string }) => {
      const { consortiumDown } = await import('./local-consortium.ts');
      const stopped = await consortiumDown(opts.dir);
      process.stdout.write(`stopped ${stopped.length} processes\n`);
    });
  withClientOptions(
    consortium
      .command('leave')
      .description('this node leaves the consortium (admin): peers stop forwarding to it and ordering its erasures')
      .option('--yes', 'yes: its records stay here, and erasures filed elsewhere will no longer reach them'),
  ).action(async (opts: ClientOptions & { yes?: boolean }) => {
    check(
      opts.yes === true,
      'INVALID_ARGUMENT',
      'a node that leaves keeps its records, and erasures filed at other nodes no longer reach them: erase or hand them over first, then give --yes',
    );
    const { receipt } = await (await client(opts)).leaveConsortium();
    print(opts, { receipt }, `this node left the consortium (${where(receipt)})`);
  });
  withClientOptions(
    consortium
      .command('remove')
      .description(
        "this node votes (admin) to remove another node: once more than half of the other joined nodes voted, it is no node's peer",
      )
      .argument('<node-id>', "the node's id (consortium nodes lists them)")
      .option('--yes', "yes: its readers' fetches and its records' erasure orders no longer reach it"),
  ).action(async (id: string, opts: ClientOptions & { yes?: boolean }) => {
    check(
      opts.yes === true,
      'INVALID_ARGUMENT',
      'a removed node is nobody’s peer: its readers no longer reach other nodes’ records, and erasures filed elsewhere no longer reach its records; give --yes',
    );
    const vote = await (await client(opts)).voteNodeRemoval(id);
    const anchored = where(vote.receipt);
    const text =
      vote.state === 'removed'
        ? `node ${id} is removed from the consortium (${anchored})`
        : `voted to remove node ${id}: ${vote.votes} of the ${vote.needed} votes it takes (${anchored})`;
    print(opts, vote, text);
  });
  withClientOptions(consortium.command('nodes').description("the consortium's nodes, as the ledger says")).action(
    async (opts: ClientOptions) => {
      const nodes = await (await client(opts)).consortiumNodes();
      print(opts, nodes, nodes.map((n) => `${n.id}  ${n.state.padEnd(7)}  ${n.url ?? '-'}`).join('\n'));
    },
  );

  program
    .command('serve')
    .description('run the node: the HTTP API on its configured address')
    .option('--data <dir>', 'data directory', 'medvault-data')
    .option('--port <port>', 'override the configured port')
    .option('--host <address>', 'override the configured address (e.g. 0.0.0.0 inside a container, behind TLS)')
    .option('--url <url>', 'the URL the other nodes reach this one at, if it changed (announced on the ledger)')
    .action(async (opts: { data: string; port?: string; host?: string; url?: string }) => {
      const { openNode, readConfig } = await import('../vault/node.ts');
      const { logger } = await import('../../log.ts');
      const { buildServer } = await import('../http/server.ts');
      const config = await readConfig(opts.data);
      const vault = await openNode(opts.data);
      const app = await buildServer(vault, {
        ...(config.metricsAllow ? { metricsAllow: config.metricsAllow } : {}),
        ...(config.rateLimit ? { rateLimit: config.rateLimit } : {}),
        ...(vault.tls ? { tls: vault.tls } : {}),
      });
      const port = opts.port === undefined ? config.listen.port : Number(opts.port);
      const host = opts.host ?? config.listen.host;
      await app.listen({ host, port });
      const sweep = setInterval(() => {
        vault.expireGrants().catch((err) => logger.error({ err }, 'grant expiry sweep failed'));
      }, 60_000);
      // Uploads whose anchoring outcome was not known: settle them as the ledger answers.
      const settling = setInterval(() => {
        vault.settlePending().catch((err) => logger.error({ err }, 'settling pending uploads failed'));
      }, 10_000);
      const strays = setInterval(() => {
        void vault.collectStrays();
        // Backup keys past their retention are destroyed on time, whether or not a backup runs.
        vault.backups?.expire().catch((err) => logger.error({ err }, 'destroying expired backup keys failed'));
      }, 60 * 60_000);
      const erasures = setInterval(() => {
        vault.erasures.runDue().catch((err) => logger.error({ err }, 'a scheduled erasure failed; it will be retried'));
      }, 10_000);
      // Erasures filed here that some node has not yet confirmed (it was down): ask it again.
      const unconfirmed = setInterval(() => {
        vault.erasures.retryIncomplete().catch((err) => logger.error({ err }, 'asking the nodes again failed'));
      }, 60_000);
      const checkpointMinutes = config.checkpointMinutes ?? 10;
      const checkpoints =
        checkpointMinutes > 0
          ? setInterval(() => {
              vault.checkpoints
                .create({ onlyIfGrown: true })
                .catch((err) => logger.error({ err }, 'the ledger checkpoint failed'));
            }, checkpointMinutes * 60_000)
          : undefined;
      const address = app.server.address();
      const bound = typeof address === 'object' && address ? address.port : port;
      const scheme = vault.tls ? 'https' : 'http';
      // A node of the consortium whose address changed tells the others (node.joined again).
      await vault.consortium
        .reannounce(opts.url ?? config.url ?? `${scheme}://${host}:${bound}`)
        .catch((err) => logger.warn({ err }, 'the new URL could not be announced; peers keep the old one'));
      process.stdout.write(`medvault node ${vault.nodeId} listening on ${scheme}://${host}:${bound}\n`);
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      clearInterval(sweep);
      clearInterval(erasures);
      clearInterval(strays);
      clearInterval(settling);
      clearInterval(unconfirmed);
      clearInterval(checkpoints);
      await app.close();
      await vault.close();
    });

  const member = program.command('member').description('the consortium directory: add, remove, list members');
  withClientOptions(
    member
      .command('add')
      .description('add a member (admin): makes its keys into a member key file, or takes its public keys')
      .argument('<name>', 'member name (a-z 0-9 . _ -)')
      .requiredOption('--role <role>', `one of ${ROLES.join(', ')}`)
      .option('-o, --output <file>', 'write the new member key file here (0600; hand it to the member)')
      .option('--signing-key <base64>', "the member's own Ed25519 public key (instead of -o)")
      .option('--recipient <age1…>', "the member's own age recipient (with --signing-key)")
      .option('--member-of <node-id>', 'a reader of that other node, whose fetches it forwards here (its own keys)'),
  ).action(
    async (
      name: string,
      opts: ClientOptions & {
        role: string;
        output?: string;
        signingKey?: string;
        recipient?: string;
        memberOf?: string;
      },
    ) => {
      check(ROLES.includes(opts.role as Role), 'INVALID_ARGUMENT', `--role is one of ${ROLES.join(', ')}`);
      let keys: { signingKey: string; recipient: string };
      let text: string | null = null;
      if (opts.signingKey && opts.recipient) keys = { signingKey: opts.signingKey, recipient: opts.recipient };
      else if (opts.output) {
        const { generateMemberKeys, memberKeyFileText, memberPublic } = await import('../sdk/client.ts');
        const made = generateMemberKeys();
        keys = memberPublic(made);
        text = memberKeyFileText(name, made);
      } else fail('INVALID_ARGUMENT', 'give -o FILE (new keys) or --signing-key and --recipient (their own keys)');
      const vault = await client(opts);
      const node = opts.memberOf ? { node: opts.memberOf } : {};
      // The key file first: a member is never registered whose only key could not be kept.
      if (text && opts.output) {
        await writeNewFile(opts.output, text);
      }
      let added: Awaited<ReturnType<VaultClient['addMember']>>['member'];
      let receipt: Receipt;
      try {
        ({ member: added, receipt } = await vault.addMember({ name, role: opts.role as Role, ...keys, ...node }));
      } catch (err) {
        if (text && opts.output) await rm(opts.output, { force: true }); // nothing registered: no key file
        throw err;
      }
      print(
        opts,
        { member: added, receipt },
        `added ${name} as ${added.role}: member id ${added.id} (${where(receipt)})`,
      );
    },
  );
  withClientOptions(
    member
      .command('rotate-key')
      .description(
        "replace a member's keys: your own, or (admin) another member's whose key was lost; it keeps its id and grants",
      )
      .argument('[member]', 'id, name or age recipient (default: yourself)')
      .requiredOption(
        '-o, --output <file>',
        'write the new member key file here (0600); the old one signs nothing again',
      ),
  ).action(async (ref: string | undefined, opts: ClientOptions & { output: string }) => {
    const { generateMemberKeys, memberKeyFileText } = await import('../sdk/client.ts');
    const vault = await client(opts);
    const target = ref === undefined ? null : await vault.resolveMember(ref);
    const id = target?.id ?? vault.memberId;
    const next = generateMemberKeys();
    const name = target?.name ?? (await vault.resolveMember(id)).name;
    // The key file first: a rotation is never applied whose only key could not be kept.
    await writeNewFile(opts.output, memberKeyFileText(name, { ...next, member: id }));
    let rotated: Awaited<ReturnType<VaultClient['rotateKeys']>>;
    try {
      rotated = await vault.rotateKeys(next, id);
    } catch (err) {
      // OUTCOME_PENDING: applied, the ledger settles it: the new file is the member's key now.
      if (!(err instanceof Error && 'code' in err && err.code === 'OUTCOME_PENDING')) {
        await rm(opts.output, { force: true });
      }
      throw err;
    }
    const rest = rotated.rewrapsPending ? '; the node finishes the rest' : '';
    print(
      opts,
      { member: rotated.member, receipt: rotated.receipt, rewrapped: rotated.rewrapped },
      `${name} (${id}) has new keys in ${opts.output}: ${rotated.rewrapped} records rewrapped to them${rest} (${where(rotated.receipt)})`,
    );
  });
  withClientOptions(
    member.command('remove').description('remove a member (admin)').argument('<member>', 'id, name or age recipient'),
  ).action(async (ref: string, opts: ClientOptions) => {
    const vault = await client(opts);
    const target = await vault.resolveMember(ref);
    const { receipt } = await vault.removeMember(target.id);
    print(opts, { receipt }, `removed ${target.name} (${target.id}); anchored in ${where(receipt)}`);
  });
  withClientOptions(
    member
      .command('emergency-access')
      .description("give or withdraw a member's break-glass access (admin; clinical uploaders and readers only)")
      .argument('<member>', 'id, name or age recipient')
      .option('--revoke', 'withdraw it instead of giving it'),
  ).action(async (ref: string, opts: ClientOptions & { revoke?: boolean }) => {
    const vault = await client(opts);
    const target = await vault.resolveMember(ref);
    const { member: updated, receipt } = await vault.setEmergencyAccess(target.id, opts.revoke !== true);
    const state = updated.emergencyAccess ? 'may now use break-glass' : 'may no longer use break-glass';
    print(
      opts,
      { member: updated, receipt },
      `${target.name} ${state}${receipt ? ` (${where(receipt)})` : ' (unchanged)'}`,
    );
  });
  withClientOptions(member.command('list').description('the member directory')).action(async (opts: ClientOptions) => {
    const members = await (await client(opts)).members();
    const lines = members.map(
      (m) =>
        `${m.id}  ${m.role.padEnd(8)}  ${m.name}${m.removedAt ? '  (removed)' : ''}${m.emergencyAccess ? '  (break-glass)' : ''}  ${m.recipient}`,
    );
    print(opts, members, lines.join('\n'));
  });

  withClientOptions(
    program
      .command('upload')
      .description(
        'encrypt FILE here and upload it for a subject, readable by the given readers; or every file of a directory (--recursive)',
      )
      .argument('<file>', 'the document, or a directory with --recursive')
      .option(
        '--subject <subject>',
        'a 64-hex subject pseudonym, or a patient id (pseudonymised here with the subject key)',
      )
      .option('-r, --recursive', 'upload every file under the directory FILE, resumably')
      .option(
        '--subject-from <regex>',
        "with -r: each file's subject, the regex's first group on its path (e.g. '^(MRN-[0-9]+)/')",
      )
      .option(
        '--manifest <csv>',
        'with -r: each file\'s subject from lines "path,subject" (paths relative to the directory)',
      )
      .option('--concurrency <n>', 'with -r: uploads at a time', '8')
      .option('--reader <member>', 'a reader: member id, name or age1 recipient (repeatable)', collect, [])
      .option('--purpose <code>', 'why the readers may read it', 'treatment')
      .option('--expires <when>', 'when the grants end: 30d, 12h or a date', '365d')
      .option('--pseudonym-key <file>', 'the subject key in a file (default: sealed to you by your node)')
      .option('--receipt <file>', 'save the record.created receipt here'),
  ).action(
    async (
      file: string,
      opts: ClientOptions & {
        subject?: string;
        reader: string[];
        purpose: string;
        expires: string;
        pseudonymKey?: string;
        receipt?: string;
        recursive?: boolean;
        subjectFrom?: string;
        manifest?: string;
        concurrency: string;
      },
    ) => {
      const vault = await client(opts);
      const readers = [];
      for (const ref of opts.reader) readers.push((await vault.resolveMember(ref)).id);
      if (opts.recursive) {
        const { bulkUpload } = await import('./bulk-upload.ts');
        process.exitCode = await bulkUpload(vault, file, {
          ...(opts.subjectFrom ? { subjectFrom: opts.subjectFrom } : {}),
          ...(opts.manifest ? { manifest: opts.manifest } : {}),
          ...(opts.pseudonymKey ? { pseudonymKey: opts.pseudonymKey } : {}),
          readers,
          purpose: opts.purpose,
          expiresAt: parseExpiry(opts.expires),
          concurrency: Number(opts.concurrency),
          ...(opts.json ? { json: true } : {}),
        });
        return;
      }
      check(!!opts.subject, 'INVALID_ARGUMENT', 'name the subject with --subject (or upload a directory with -r)');
      const subject = await subjectOf(opts.subject as string, { keyFile: opts.pseudonymKey, client: vault });
      const info = await stat(file).catch((err) => {
        throw ioError(err, `cannot read ${file}`);
      });
      const size = info.size;
      // The same command run again (after an error) sends the same key: the node answers with
      // the first upload's record instead of making a second.
      const { uploadKey } = await import('./bulk-upload.ts');
      const idempotencyKey = uploadKey(file, size, info.mtimeMs, subject, readers, opts.purpose);
      const bar = await progressBar('uploading', size > 8 * 1024 * 1024 && !opts.json);
      try {
        const { record, receipt, repeated } = await vault.upload(
          { path: file },
          {
            subject,
            readers,
            purpose: opts.purpose,
            expiresAt: parseExpiry(opts.expires),
            onProgress: (n) => bar.update(n, size),
            idempotencyKey,
          },
        );
        bar.stop();
        await saveJson(opts.receipt, receipt);
        print(
          opts,
          { record, receipt, repeated: repeated === true },
          `${repeated ? 'already uploaded (the same file, subject and readers): ' : 'uploaded '}record ${record.id}: ${record.size} bytes of ciphertext, sha256 ${record.ciphertextHash}\n` +
            `anchored as record.created in ${where(receipt)}; readers: ${(record.grants ?? []).map((g) => g.reader).join(', ')}`,
        );
      } finally {
        bar.stop();
      }
    },
  );

  withClientOptions(
    program
      .command('fetch')
      .description('fetch a record, decrypt it here, and check its ciphertext against the ledger receipt')
      .argument('<record>', 'record id')
      .option('-i, --identity <file>', 'your member key file (an age identity file too)')
      .option(
        '-o, --output <file>',
        'write the document here (only if all of it decrypts and verifies); stdout when absent',
      )
      .option('--force', 'replace --output if it exists')
      .option('--receipt <file>', 'save the access receipt here'),
  ).action(
    async (
      id: string,
      opts: ClientOptions & { identity?: string; output?: string; force?: boolean; receipt?: string },
    ) => {
      refuseOverwrite(opts.output, opts.force);
      const vault = await client({ ...opts, key: opts.identity ?? opts.key });
      const bar = await progressBar('fetching', !!opts.output && !opts.json);
      const result = await vault
        .fetch(id, opts.output ? { path: opts.output } : { stream: process.stdout }, { onProgress: bar.update })
        .finally(() => bar.stop());
      await saveJson(opts.receipt, result.access);
      // With the document on stdout, what is said about it goes to stderr.
      const say = opts.output ? process.stdout : process.stderr;
      if (opts.json && opts.output) {
        say.write(`${JSON.stringify(result, null, 2)}\n`);
        return;
      }
      say.write(
        `fetched ${id}: ${result.bytes} bytes to ${opts.output ?? 'stdout'}; ciphertext sha256 ${result.ciphertextHash} matches ` +
          `its receipt (${where(result.content)}); this access is anchored in ${where(result.access)}\n`,
      );
    },
  );

  withClientOptions(
    program
      .command('emergency')
      .description('break-glass: fetch a record without a grant, stating why (anchored, reviewed by the DPO)')
      .argument('<record>', 'record id')
      .requiredOption('--reason <text>', 'why this access cannot wait (10-1000 characters; stays on the node)')
      .option('-i, --identity <file>', 'your member key file')
      .requiredOption('-o, --output <file>', 'write the document here')
      .option('--force', 'replace --output if it exists'),
  ).action(
    async (
      id: string,
      opts: ClientOptions & { reason: string; identity?: string; output: string; force?: boolean },
    ) => {
      refuseOverwrite(opts.output, opts.force);
      const vault = await client({ ...opts, key: opts.identity ?? opts.key });
      const bar = await progressBar('fetching (break-glass)', !opts.json);
      const result = await vault
        .emergency(id, opts.reason, { path: opts.output }, { onProgress: bar.update })
        .finally(() => bar.stop());
      print(
        opts,
        result,
        `EMERGENCY ACCESS to ${id}: ${result.bytes} bytes to ${opts.output}; anchored as access.emergency in ` +
          `${where(result.access)}; review ${result.reviewId} is in the DPO's queue`,
      );
    },
  );

  withClientOptions(
    program
      .command('grant')
      .description('add a reader to a record you uploaded (the KMS rewraps its header; the blob is untouched)')
      .argument('<record>', 'record id')
      .requiredOption('--reader <member>', 'member id, name or age1 recipient')
      .option('--purpose <code>', 'why', 'treatment')
      .option('--expires <when>', 'when the grant ends: 30d, 12h or a date', '30d'),
  ).action(async (id: string, opts: ClientOptions & { reader: string; purpose: string; expires: string }) => {
    const vault = await client(opts);
    const reader = await vault.resolveMember(opts.reader);
    const expiresAt = parseExpiry(opts.expires);
    const { receipt } = await vault.grant(id, reader.id, { purpose: opts.purpose, expiresAt });
    print(
      opts,
      { receipt },
      `granted ${reader.name} read access to ${id} for ${opts.purpose} until ${new Date(expiresAt).toISOString()} (${where(receipt)})`,
    );
  });

  withClientOptions(
    program
      .command('revoke')
      .description('remove a reader from a record you uploaded (what it already decrypted, it keeps)')
      .argument('<record>', 'record id')
      .requiredOption('--reader <member>', 'member id, name or age1 recipient')
      .option('--reencrypt', 'also a new file key and blob, for a suspected key compromise'),
  ).action(async (id: string, opts: ClientOptions & { reader: string; reencrypt?: boolean }) => {
    const vault = await client(opts);
    const reader = await vault.resolveMember(opts.reader);
    const result = await vault.revoke(id, reader.id, { reencrypt: opts.reencrypt === true });
    print(
      opts,
      result,
      `revoked ${reader.name} on ${id} (${where(result.receipt)})` +
        (result.reencrypted ? `; re-encrypted: new ciphertext ${result.reencrypted.event.ciphertextHash}` : ''),
    );
  });

  withClientOptions(
    program
      .command('erase')
      .description('GDPR erasure (DPO): a subject (all records and its custodian key) or one record')
      .option(
        '--subject <subject>',
        'a 64-hex subject pseudonym, or a patient id (pseudonymised here with the subject key)',
      )
      .option('--record <id>', 'one record')
      .option('--pseudonym-key <file>', 'the subject key in a file (default: sealed to you by your node)')
      .option('--delay <when>', 'schedule it with a cancel window (72h, 3d); without: now')
      .option('--yes', 'do not ask for confirmation on a terminal')
      .option('-o, --output <file>', 'save the erasure certificate here'),
  ).action(
    async (
      opts: ClientOptions & {
        subject?: string;
        record?: string;
        pseudonymKey?: string;
        output?: string;
        delay?: string;
        yes?: boolean;
      },
    ) => {
      check(!!opts.subject !== !!opts.record, 'INVALID_ARGUMENT', 'give exactly one of --subject and --record');
      const vault = await client(opts);
      const target = opts.record
        ? { recordId: opts.record }
        : { subject: await subjectOf(opts.subject as string, { keyFile: opts.pseudonymKey, client: vault }) };
      if (opts.delay) {
        const seconds = Math.round((parseExpiry(opts.delay) - Date.now()) / 1000);
        const filed = await vault.scheduleErasure(target, seconds);
        print(
          opts,
          filed,
          `erasure ${filed.requestId} filed (${where(filed.receipt)}): runs at ${new Date(filed.executeAt).toISOString()} ` +
            `unless cancelled with: medvault erasure cancel ${filed.requestId}`,
        );
        return;
      }
      if (process.stdin.isTTY && !opts.yes) {
        const what = opts.record
          ? `record ${opts.record}`
          : 'every record of this subject on every node of the consortium, and its custodian key';
        const answer = await askTerminal(`Erase ${what}? This cannot be undone. Type "erase" to go on: `);
        check(answer.trim() === 'erase', 'INVALID_ARGUMENT', 'not confirmed: nothing was erased');
      }
      const certificate = await vault.erase(target);
      await saveJson(opts.output, certificate);
      const lines = [
        `erasure ${certificate.requestId} executed: ${certificate.records.length} record(s)`,
        certificate.kms
          ? `custodian key ${certificate.kms.keyId} destroyed: ${certificate.kms.confirmed}`
          : 'record scope: the subject keeps its custodian key for its other records',
        ...certificate.records.map(
          (r) =>
            `  ${r.recordId}: ${r.stores.map((s) => s.confirmed).join('; ') || 'no blob'}; tombstone in ${where(r.tombstone)}`,
        ),
        ...(certificate.backupsUntil
          ? [`backups that may hold the key expire by ${new Date(certificate.backupsUntil).toISOString()}`]
          : []),
        `certificate signed by ${certificate.signer}${opts.output ? `, saved to ${opts.output}` : ''}`,
      ];
      print(opts, certificate, lines.join('\n'));
    },
  );

  const erasure = program.command('erasure').description('erasure requests: list, cancel, sweep');
  withClientOptions(erasure.command('list').description('erasure requests and their states (DPO)')).action(
    async (opts: ClientOptions) => {
      const rows = await (await client(opts)).erasures();
      const lines = rows.map(
        (r) =>
          `${r.id}  ${r.state.padEnd(9)}  ${r.scope} ${r.target.slice(0, 16)}…  filed ${new Date(r.filedAt).toISOString()}` +
          (r.state === 'scheduled' ? `, runs ${new Date(r.executeAt).toISOString()}` : ''),
      );
      print(opts, rows, lines.length ? lines.join('\n') : 'no erasure requests');
    },
  );
  withClientOptions(
    erasure
      .command('show')
      .description("an erasure's certificate, verified (DPO): for one filed with a cancel window, once it has run")
      .argument('<id>')
      .option('-o, --output <file>', 'save the certificate (medvault verify checks it offline)'),
  ).action(async (id: string, opts: ClientOptions & { output?: string }) => {
    const certificate = await (await client(opts)).erasure(id);
    if (opts.output) await writeNewFile(opts.output, `${JSON.stringify(certificate, null, 2)}\n`);
    print(
      opts,
      certificate,
      `erasure ${id}: ${certificate.records.length} record(s) erased at this node, certificate signed by ${certificate.signer}` +
        `${opts.output ? `, saved to ${opts.output}` : ''}`,
    );
  });
  withClientOptions(
    erasure.command('cancel').description('cancel a scheduled erasure inside its window (DPO)').argument('<id>'),
  ).action(async (id: string, opts: ClientOptions) => {
    const { receipt } = await (await client(opts)).cancelErasure(id);
    print(opts, { receipt }, `erasure ${id} cancelled (${where(receipt)})`);
  });
  withClientOptions(
    erasure
      .command('sweep')
      .description("search the node's stores, KMS, metadata, files and logs for any trace of an executed erasure")
      .argument('<id>'),
  ).action(async (id: string, opts: ClientOptions) => {
    const report = await (await client(opts)).sweep(id);
    const lines = [
      `sweep of erasure ${id} (${report.records} record(s)): looked in ${report.checked.length} places`,
      ...(report.findings.length === 0
        ? ['nothing found: no trace of the erased records']
        : report.findings.map((f) => `FOUND in ${f.where}: ${f.what} (${f.count})`)),
    ];
    print(opts, report, lines.join('\n'));
    if (report.findings.length > 0) process.exitCode = 2;
  });

  program
    .command('keystore')
    .description("a stopped node's keystore")
    .command('passphrase')
    .description(
      'seal the keystore with a new passphrase (the node stopped; the current secret as serve takes it: ' +
        'MEDVAULT_KEYSTORE_PASSPHRASE[_FILE] or keystore.key, which is then removed)',
    )
    .requiredOption('--data <dir>', "the node's data directory")
    .requiredOption(
      '--new-passphrase-file <file>',
      'a file holding the new passphrase (one line, 12 characters or more)',
    )
    .action(async (opts: { data: string; newPassphraseFile: string }) => {
      const { changeKeystorePassphrase } = await import('../vault/node.ts');
      const passphrase = (await readText(opts.newPassphraseFile, 'passphrase file')).trim();
      const { keyFileRemoved } = await changeKeystorePassphrase(opts.data, passphrase);
      process.stdout.write(
        `keystore sealed with the new passphrase${keyFileRemoved ? '; keystore.key removed' : ''}: start the node with ` +
          'MEDVAULT_KEYSTORE_PASSPHRASE_FILE naming a file that holds it\n',
      );
    });

  program
    .command('node')
    .description("the node's own key")
    .command('rotate-key')
    .description(
      "replace the node's signing key (the node stopped): anchored as node.key in a block the old key signs; " +
        'the node is then known by its new id, and verifiers follow the hand-over (GET /v1/node keyHistory)',
    )
    .requiredOption('--data <dir>', "the node's data directory")
    .action(async (opts: { data: string }) => {
      const { rotateNodeKey } = await import('../vault/node.ts');
      const { previous, node } = await rotateNodeKey(opts.data);
      process.stdout.write(
        `node key ${previous} handed over to ${node}: start the node again; auditors that pin node ids ` +
          'verify with --trust and the key history (medvault verify --keys)\n',
      );
    });

  const backup = program
    .command('backup')
    .description('back up the node (admin): its secrets and database sealed to a backup key that rotates and expires');
  withClientOptions(backup.command('now', { isDefault: true }).description('take a backup now (admin)')).action(
    async (opts: ClientOptions) => {
      const { path, manifest } = await (await client(opts)).backup();
      print(
        opts,
        { path, manifest },
        `backup written to ${path} (ledger height ${manifest.ledgerHeight ?? 'empty'}); sealed to backup key ` +
          `${manifest.backupKey.id}, destroyed ${new Date(manifest.backupKey.expiresAt).toISOString()}: the backup cannot be opened after that`,
      );
    },
  );
  backup
    .command('keys')
    .description("the backup keys in a node's keystore (run where the node runs); --export one for escrow")
    .requiredOption('--data <dir>', "the node's data directory")
    .option(
      '--export <id>',
      'write this backup key as an age identity file (-o): keep it offline, destroy it at its expiry',
    )
    .option('-o, --output <file>', 'where --export writes (0600, never replaced)')
    .option('--json', 'print JSON')
    .action(async (opts: { data: string; export?: string; output?: string; json?: boolean }) => {
      const { openKeystore } = await import('../vault/node.ts');
      const kms = await openKeystore(opts.data);
      if (opts.export) {
        check(!!opts.output, 'INVALID_ARGUMENT', '--export needs -o FILE');
        const identity = kms.backupIdentity(opts.export);
        const key = kms.backupKeys().find((k) => k.id === opts.export) as { expiresAt: number };
        await writeNewFile(
          opts.output as string,
          `# medvault backup key ${opts.export}: opens the node's backups; destroy this copy at ${new Date(key.expiresAt).toISOString()}\n${identity}\n`,
        );
        print(opts, { exported: opts.export }, `backup key ${opts.export} written to ${opts.output}`);
        return;
      }
      const keys = kms.backupKeys();
      print(
        opts,
        keys,
        keys
          .map(
            (k) =>
              `${k.id}  made ${new Date(k.createdAt).toISOString()}  destroyed ${new Date(k.expiresAt).toISOString()}`,
          )
          .join('\n') || 'no backup keys (no backup taken yet, or all expired)',
      );
    });

  program
    .command('restore')
    .description(
      'restore a backup into a new data directory; its node re-applies every erasure anchored since, before it serves',
    )
    .requiredOption('--from <dir>', 'the backup (a directory written by medvault backup)')
    .requiredOption('--data <dir>', 'the new data directory (must not exist)')
    .option('--backup-key <file>', 'the backup key, as exported by `backup keys --export`')
    .option('--keys-from <dir>', "a data directory whose keystore holds the backup key (the node's own)")
    .option('--ledger <file>', "a file-ledger node: the current ledger file (the backup's copy lacks what came after)")
    .option('--backup-ledger', "a file-ledger node: use the backup's own ledger copy, losing every event since")
    .action(
      async (opts: {
        from: string;
        data: string;
        backupKey?: string;
        keysFrom?: string;
        ledger?: string;
        backupLedger?: boolean;
      }) => {
        check(!!opts.backupKey !== !!opts.keysFrom, 'INVALID_ARGUMENT', 'give one of --backup-key and --keys-from');
        const { readManifest, restoreBackup } = await import('../vault/backup.ts');
        const { openKeystore } = await import('../vault/node.ts');
        const { parseIdentityFile } = await import('../../crypto/x25519.ts');
        const manifest = await readManifest(opts.from);
        const identity = opts.backupKey
          ? (parseIdentityFile(await readText(opts.backupKey, 'backup key file'))[0] ??
            fail('KEY_INVALID', `${opts.backupKey} holds no age identity`))
          : (await openKeystore(opts.keysFrom as string)).backupIdentity(manifest.backupKey.id);
        await restoreBackup({
          from: opts.from,
          data: opts.data,
          identity,
          ...(opts.ledger ? { ledgerFile: opts.ledger } : {}),
          ...(opts.backupLedger ? { backupLedger: true } : {}),
        });
        process.stdout.write(
          `restored the backup of ${new Date(manifest.takenAt).toISOString()} into ${opts.data}; ` +
            'its node re-applies the erasures anchored since when it starts, before it serves\n',
        );
      },
    );

  withClientOptions(
    program
      .command('checkpoint')
      .description(
        "checkpoint the ledger's head: signed by the node and cosigned by the peers that confirm it (admin, DPO)",
      )
      .option('-o, --output <file>', 'save the checkpoint (JSON) for `medvault verify FILE --ledger URI` later')
      .option('--latest', 'show the newest checkpoint the node confirmed instead of making one'),
  ).action(async (opts: ClientOptions & { output?: string; latest?: boolean }) => {
    const vault = await client(opts);
    const checkpoint = opts.latest ? await vault.latestCheckpoint() : await vault.checkpoint();
    await saveJson(opts.output, checkpoint);
    const signers = checkpoint.signatures.map((s) => s.signer);
    print(
      opts,
      checkpoint,
      `checkpoint of block ${checkpoint.height} (${checkpoint.blockHash.slice(0, 16)}…), signed by ${signers.length} ` +
        `node(s): ${signers.join(', ')}${opts.output ? `; saved to ${opts.output}` : ''}`,
    );
  });

  withClientOptions(
    program
      .command('records')
      .description('search records, newest first: an uploader its own, a reader those granted to it, a DPO all')
      .option('--subject <subject>', 'a 64-hex subject pseudonym, or a patient id (pseudonymised here)')
      .option('--pseudonym-key <file>', 'the subject key in a file (default: sealed to you by your node)')
      .option('--uploader <member>', 'uploaded by this member (id or name)')
      .option('--reader <member>', 'granted to this member (id or name)')
      .option('--purpose <code>', 'granted for this purpose')
      .option('--since <when>', 'created at or after: 30d, 12h (ago) or a date')
      .option('--until <when>', 'created before: 30d, 12h (ago) or a date')
      .option('--state <state>', 'active, erased or pending-erasure')
      .option('--limit <n>', 'records per page (1-500)', '50')
      .option('--all', 'every page, not only the first'),
  ).action(
    async (
      opts: ClientOptions & {
        subject?: string;
        pseudonymKey?: string;
        uploader?: string;
        reader?: string;
        purpose?: string;
        since?: string;
        until?: string;
        state?: string;
        limit: string;
        all?: boolean;
      },
    ) => {
      const vault = await client(opts);
      const ago = (value: string) => parseWhen(value, 'ago');
      const filters: RecordFilters = {
        ...(opts.subject
          ? { subject: await subjectOf(opts.subject, { keyFile: opts.pseudonymKey, client: vault }) }
          : {}),
        ...(opts.uploader ? { uploader: (await vault.resolveMember(opts.uploader)).id } : {}),
        ...(opts.reader ? { reader: (await vault.resolveMember(opts.reader)).id } : {}),
        ...(opts.purpose ? { purpose: opts.purpose } : {}),
        ...(opts.since ? { since: ago(opts.since) } : {}),
        ...(opts.until ? { until: ago(opts.until) } : {}),
        ...(opts.state ? { state: opts.state as RecordFilters['state'] } : {}),
        limit: Number(opts.limit),
      };
      const records: RecordSummary[] = [];
      if (opts.all) for await (const r of vault.allRecords(filters)) records.push(r);
      else records.push(...(await vault.records(filters)).records);
      const names = new Map((await vault.members()).map((m) => [m.id, m.name]));
      const lines = records.map(
        (r) =>
          `${r.id}  ${new Date(r.createdAt).toISOString()}  ${r.state.padEnd(6)}  ${String(r.size).padStart(10)} B  ` +
          `${names.get(r.uploader) ?? r.uploader}${r.grants ? `  ${r.grants.length} live grants` : ''}`,
      );
      print(opts, records, [`${records.length} records`, ...lines].join('\n'));
    },
  );

  const subject = program.command('subject').description("a subject's data: the access report (GDPR Art. 15)");
  withClientOptions(
    subject
      .command('report')
      .description('every record of the subject on every node, with its ledger trail (DPO); every receipt verified')
      .requiredOption('--subject <subject>', 'a 64-hex subject pseudonym, or a patient id (pseudonymised here)')
      .option('--pseudonym-key <file>', 'the subject key in a file (default: sealed to you by your node)')
      .option('-o, --output <file>', 'write the report as JSON (medvault verify checks it offline)')
      .option('--html <file>', 'write it as a printable HTML page (which medvault verify also checks)'),
  ).action(async (opts: ClientOptions & { subject: string; pseudonymKey?: string; output?: string; html?: string }) => {
    const vault = await client(opts);
    const pseudonym = await subjectOf(opts.subject, { keyFile: opts.pseudonymKey, client: vault });
    const report = await vault.subjectReport(pseudonym);
    if (opts.output) await writeNewFile(opts.output, `${JSON.stringify(report, null, 2)}\n`);
    if (opts.html) {
      const { reportHtml } = await import('./report-html.ts');
      await writeNewFile(opts.html, reportHtml(report));
    }
    const names = Object.assign({}, ...report.parts.map((p) => p.names)) as Record<string, string>;
    const lines = report.parts.flatMap((part) => [
      `node ${part.node}: ${part.records.length} record(s)`,
      ...part.records.flatMap(({ record, events }) =>
        events.map((r) => {
          const e = r.event;
          const id = (e.reader ?? e.uploader ?? e.grantor ?? e.revoker ?? e.dpo ?? e.by ?? '') as string;
          return `  ${new Date(e.at).toISOString()}  ${record.id}  ${e.type.padEnd(17)} ${names[id] ?? id}`;
        }),
      ),
    ]);
    const missing = report.missing.length
      ? [`NOT IN THIS REPORT: node(s) ${report.missing.join(', ')} did not answer`]
      : [];
    print(opts, report, [...lines, ...missing, 'every receipt verified'].join('\n'));
  });

  withClientOptions(
    program
      .command('audit')
      .description("a record's access trail from the ledger, every receipt verified (its uploader or a DPO)")
      .argument('<record>', 'record id'),
  ).action(async (id: string, opts: ClientOptions) => {
    const events = await (await client(opts)).audit(id);
    const lines = events.map((r) => {
      const e = r.event;
      const who = e.reader ?? e.grantor ?? e.uploader ?? e.revoker ?? e.dpo ?? e.by ?? '';
      return `${new Date(e.at).toISOString()}  ${e.type.padEnd(17)} ${who}  (${where(r)})`;
    });
    print(opts, events, [`${events.length} events for ${id}, all receipts verified:`, ...lines].join('\n'));
  });

  withClientOptions(
    program
      .command('reviews')
      .description("the DPO's break-glass review queue")
      .option('--all', 'include closed reviews')
      .option('--close <id>', 'close this review')
      .option('--outcome <outcome>', 'justified or unjustified (with --close)'),
  ).action(async (opts: ClientOptions & { all?: boolean; close?: string; outcome?: string }) => {
    const vault = await client(opts);
    if (opts.close) {
      check(
        opts.outcome === 'justified' || opts.outcome === 'unjustified',
        'INVALID_ARGUMENT',
        '--outcome is justified or unjustified',
      );
      const { receipt } = await vault.closeReview(opts.close, opts.outcome);
      print(opts, { closed: opts.close, receipt }, `review ${opts.close} closed: ${opts.outcome} (${where(receipt)})`);
      return;
    }
    const reviews = await vault.reviews(opts.all === true);
    const lines = reviews.map(
      (r) =>
        `${r.id}  record ${r.recordId}  by ${r.reader}  ${new Date(r.at).toISOString()}  ${r.outcome ?? 'open'}: ${r.reason ?? '(erased)'}`,
    );
    print(opts, reviews, lines.length ? lines.join('\n') : 'no reviews');
  });
}
