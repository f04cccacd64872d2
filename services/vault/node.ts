/**
 * A vault node's data directory and how to open one.
 *
 *   DATA/medvault.json     configuration: node name, ledger URI, blob store, listen address
 *   DATA/keystore.sealed   the local KMS (the node's own keys; custodian keys in keystore.sealed.custodians/), sealed
 *   DATA/keystore.key      the random key that seals it (0600), unless MEDVAULT_KEYSTORE_PASSPHRASE is set
 *   DATA/metadata.db       SQLite: members, records, grants, ledger index, reviews, erasures
 *   DATA/ledger.mvl        the embedded ledger (default)
 *   DATA/blobs/            the embedded blob store (default)
 *
 * The consortium's subject key (services/vault/consortium.ts) is kept in the
 * keystore, never as a loose file.
 *
 * `initNode` makes all of it and the first admin's member key file;
 * `openNode` composes a Vault from it. The environment can point a node at
 * shared infrastructure without editing the file: MEDVAULT_LEDGER (a ledger
 * URI: file:, etcd://, evm://), MEDVAULT_STORE (a JSON StoreConfig) and
 * MEDVAULT_PEERS (a JSON list of {id, url}: the nodes that cosign).
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, readdir, readFile, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { blockHash } from '../../anchor/block.ts';
import type { Ledger } from '../../anchor/ledger.ts';
import { openLedger } from '../../anchor/open.ts';
import { fsyncDirectory, takeLock, writeFileAtomic } from '../../durable.ts';
import { check, fail, isMedvaultError } from '../../errors.ts';
import { admitThreads } from '../../kms/admit-pool.ts';
import type { Kms } from '../../kms/kms.ts';
import { LocalKms } from '../../kms/local-kms.ts';
import type { SealingSecret } from '../../kms/sealed-file.ts';
import { logger } from '../../log.ts';
import type { BlobStore } from '../../storage/blob-store.ts';
import { StoreMeter } from '../../storage/measured-store.ts';
import { openBlobStore, type StoreConfig } from '../../storage/open.ts';
import { generateMemberKeys, memberKeyFileText, memberPublic } from '../protocol/member-keys.ts';
import { checkTlsIdentity, type TlsIdentity } from '../protocol/tls.ts';
import { checkWebhookUrl, webhookAlerts } from './alerts.ts';
import { type BackupPolicy, Backups, RESTORED_MARKER } from './backup.ts';
import {
  checkJoinRequest,
  type Invite,
  inviteDigest,
  type JoinRequest,
  NODE_KEY,
  openInvite,
  SUBJECT_KEY,
} from './consortium.ts';
import { Metadata } from './metadata.ts';
import { finishNodeKey, prepareNodeKey } from './node-key.ts';
import { checkPeers } from './peers.ts';
import { DEFAULT_RESERVE_MIB, DiskReserve, RESERVE_FILE } from './reserve.ts';
import { type Peer, Vault } from './vault.ts';

export interface NodeConfig {
  version: 1;
  name: string;
  /** A ledger URI; a relative file: path is inside the data directory. */
  ledger: string;
  store: StoreConfig;
  listen: { host: string; port: number };
  /** The URL the consortium's other nodes reach this node at (announced on the ledger in node.joined). */
  url?: string;
  /**
   * Serve HTTPS with this certificate and key (PEM files; relative paths are in the data
   * directory). The certificate's fingerprint is announced on the ledger: peers pin it, and the
   * node presents it to them (mutual TLS).
   */
  tls?: { cert: string; key: string };
  /**
   * The consortium's other nodes (key id, API URL and, to accept the fetches
   * they forward, their base64 node key): they cosign each other's erasure
   * certificates and checkpoints, and forward their readers' fetches.
   */
  peers?: Peer[];
  /**
   * How long a peer may take to answer a request this node forwards to it, and at most between
   * two pieces of its answer, in seconds (default 30): a large record is relayed however long it
   * takes while it keeps coming.
   */
  peerTimeoutSeconds?: number;
  /** How often `serve` checkpoints the ledger while it grows, in minutes (default 10; 0: never). */
  checkpointMinutes?: number;
  /** Log files the post-erasure sweep also searches (MEDVAULT_SWEEP_LOGS adds more, colon-separated). */
  sweepLogs?: string[];
  /** Custody of the subjects' keys: the sealed keystore (default) or a PKCS#11 token (PIN: MEDVAULT_PKCS11_PIN_FILE or MEDVAULT_PKCS11_PIN). */
  kms?: { backend: 'local' } | { backend: 'pkcs11'; library: string; token: string };
  /**
   * Break-glass: accesses one member may make in 24 hours (default 3), and a URL each
   * access is POSTed to at once for the DPO (MEDVAULT_BREAK_GLASS_WEBHOOK overrides it).
   */
  breakGlass?: { perDay?: number; webhook?: string };
  /** The addresses /metrics answers (default: loopback only): the monitoring host's. */
  metricsAllow?: string[];
  /** Signed requests one member may make per minute (default 600): raise it for bulk ingest. */
  rateLimit?: number;
  /**
   * Backups (services/vault/backup.ts): where they are written (default `backups`, in the data
   * directory), how often the backup key rotates (hours, default 24) and how long each is kept
   * (days, default 30): a backup cannot be opened once its key's retention ends.
   */
  backup?: Partial<BackupPolicy>;
  /**
   * The hash of block 0 of the ledger the node was made on: `serve` refuses a ledger whose
   * first block is another (a wrong URI, prefix or contract), whatever the environment says.
   */
  ledgerGenesis?: string;
  /**
   * The disk reserve kept in the data directory, in MiB (default 8; 0: none): released at a start
   * on a full disk so the node can start read-only for new documents (services/vault/reserve.ts).
   */
  diskReserveMiB?: number;
}

export async function readConfig(data: string): Promise<NodeConfig> {
  const path = join(data, 'medvault.json');
  if (!existsSync(path)) fail('INVALID_ARGUMENT', `${data} is not a medvault data directory (run medvault init)`);
  const config = JSON.parse(await readFile(path, 'utf8')) as NodeConfig;
  check(config.version === 1, 'INVALID_ARGUMENT', `${path}: unknown configuration version`);
  return config;
}

/** Opens a data directory's keystore (for `medvault backup keys` and `restore --keys-from`). */
export async function openKeystore(data: string): Promise<LocalKms> {
  const path = join(resolve(data), 'keystore.sealed');
  check(existsSync(path), 'INVALID_ARGUMENT', `${data} is not a medvault data directory (no keystore)`);
  return LocalKms.open(path, await keystoreSecret(resolve(data)));
}

/**
 * Seals a stopped node's keystore with a new passphrase (`medvault keystore passphrase`): the
 * current secret is what `serve` would use (MEDVAULT_KEYSTORE_PASSPHRASE[_FILE], else
 * keystore.key); DATA_IN_USE while a node serves the directory. A key file that sealed it is
 * removed: the node then starts only with the passphrase. Copies of the old keystore (backups)
 * stay sealed with the old secret.
 */
export async function changeKeystorePassphrase(dir: string, passphrase: string): Promise<{ keyFileRemoved: boolean }> {
  const data = resolve(dir);
  const path = join(data, 'keystore.sealed');
  check(existsSync(path), 'INVALID_ARGUMENT', `${dir} is not a medvault data directory (no keystore)`);
  check(passphrase.length >= 12, 'INVALID_ARGUMENT', 'a keystore passphrase is at least 12 characters');
  const release = await lockDataDirectory(data);
  try {
    const kms = await LocalKms.open(path, await keystoreSecret(data)); // KMS_LOCKED: the current secret is wrong
    await kms.reseal({ passphrase });
    const keyFile = join(data, 'keystore.key');
    const keyFileRemoved = existsSync(keyFile);
    if (keyFileRemoved) {
      await rm(keyFile);
      await fsyncDirectory(data);
    }
    return { keyFileRemoved };
  } finally {
    await release();
  }
}

/**
 * A stopped node replaces its key (`medvault node rotate-key`; services/vault/node-key.ts): made
 * and kept, anchored as node.key in a block the old key signs, then the node's. Finishes one a
 * crash cut short instead of starting another. DATA_IN_USE while a node serves the directory.
 */
export async function rotateNodeKey(dir: string): Promise<{ previous: string; node: string }> {
  const data = resolve(dir);
  const config = await readConfig(data);
  const release = await lockDataDirectory(data);
  try {
    const kms = await LocalKms.open(join(data, 'keystore.sealed'), await keystoreSecret(data));
    const ledgerUri = process.env.MEDVAULT_LEDGER ?? config.ledger;
    const ledger = await openLedger(inData(data, ledgerUri));
    const metadata = new Metadata(join(data, 'metadata.db'));
    try {
      await checkGenesis(ledger, ledgerUri, config.ledgerGenesis);
      await prepareNodeKey(kms);
      // The node's ledger index has read below this height: a hand-over cut short is above it.
      const rotated = await finishNodeKey(kms, ledger, metadata.locatorNextHeight());
      if (!rotated) fail('INTERNAL', 'the node key hand-over was not made');
      return rotated;
    } finally {
      metadata.close();
      await ledger.close();
    }
  } finally {
    await release();
  }
}

/** Takes the data directory's lock (DATA_IN_USE while a node serves it); resolves with its release. */
async function lockDataDirectory(data: string): Promise<() => Promise<void>> {
  const lock = join(data, NODE_LOCK);
  await takeLock(lock, (pid) =>
    fail('DATA_IN_USE', pid === null ? `${data}: could not take ${NODE_LOCK}` : `${data} is served by process ${pid}`),
  );
  return () => rm(lock, { force: true });
}

async function keystoreSecret(data: string): Promise<SealingSecret> {
  const file = process.env.MEDVAULT_KEYSTORE_PASSPHRASE_FILE; // e.g. a container secret
  const passphrase = file ? (await readFile(file, 'utf8')).trim() : process.env.MEDVAULT_KEYSTORE_PASSPHRASE;
  if (passphrase) return { passphrase };
  return { keyFile: new Uint8Array(await readFile(join(data, 'keystore.key'))) };
}

async function writeSecret(path: string, text: string | Uint8Array): Promise<void> {
  await writeFile(path, text, { mode: 0o600, flag: 'wx' });
  await chmod(path, 0o600);
}

/**
 * Makes a data directory: configuration, sealed keystore with the node's keys
 * and the consortium's subject key, metadata, ledger, blob store, and the
 * first admin (its member key file written to `adminKeyFile`, anchored as
 * member.added).
 *
 * Founding (no `join`): the ledger must hold no consortium yet
 * (CONSORTIUM_EXISTS); the node makes the subject key and announces itself
 * (node.joined) in block 0's consortium. Joining (`join`: the text of an
 * invite, services/vault/consortium.ts): `data` holds the node's join request
 * (joinRequest below); the invite must open with its key, be anchored on the
 * ledger by a node of the consortium, unaltered and unexpired
 * (INVITE_INVALID), on the consortium's ledger (LEDGER_MISMATCH). `unlisted`:
 * a node on a ledger that already holds a consortium without joining it
 * (peers configured by hand, MEDVAULT_PEERS, as before invites existed).
 *
 * All or nothing: it is built in a staging directory beside `data` and
 * renamed into place only once every step succeeded (keys, keystore, the
 * ledger reached, the invite checked, the node announced and the first admin
 * anchored); a failure leaves nothing (a join request stays as it was).
 * `medvault.json` records the ledger and the store the node was made on
 * (including those given through MEDVAULT_LEDGER and MEDVAULT_STORE) and the
 * hash of the ledger's block 0, which every later start checks.
 */
export async function initNode(
  data: string,
  options: {
    name?: string;
    admin?: string;
    adminKeyFile?: string;
    port?: number;
    /** The URL the other nodes reach this one at (default http(s)://127.0.0.1:PORT). */
    url?: string;
    /** Serve HTTPS with this certificate and key (paths, kept in medvault.json). */
    tls?: NodeConfig['tls'];
    kms?: NodeConfig['kms'];
    overrides?: NodeOverrides;
    join?: string;
    unlisted?: boolean;
  } = {},
): Promise<{ nodeId: string; adminId: string; adminKeyFile: string }> {
  data = resolve(data);
  if (existsSync(join(data, 'medvault.json'))) fail('INVALID_ARGUMENT', `${data} is already a medvault data directory`);
  const requestFile = join(data, JOIN_REQUEST);
  if (options.join !== undefined) {
    check(existsSync(requestFile), 'INVALID_ARGUMENT', `${data} holds no join request (medvault consortium request)`);
  } else if (existsSync(data) && (await readdir(data)).length > 0) {
    fail('INVALID_ARGUMENT', `${data} exists and is not empty: init makes a new data directory`);
  }
  const staging = join(dirname(data), `.${basename(data)}.init-${randomBytes(6).toString('hex')}`);
  const adminName = options.admin ?? 'admin';
  const admin = generateMemberKeys();
  const outsideKeyFile = options.adminKeyFile ? resolve(options.adminKeyFile) : null;
  if (outsideKeyFile && existsSync(outsideKeyFile)) fail('INVALID_ARGUMENT', `${outsideKeyFile} already exists`);
  await mkdir(staging, { recursive: true, mode: 0o700 });
  try {
    const storeFromEnv = process.env.MEDVAULT_STORE ? (envJson('MEDVAULT_STORE') as StoreConfig) : undefined;
    const port = options.port ?? 7400;
    const config: NodeConfig = {
      version: 1,
      name: options.name ?? 'node',
      ledger: options.overrides?.ledger ?? process.env.MEDVAULT_LEDGER ?? 'file:ledger.mvl',
      store: options.overrides?.store ?? storeFromEnv ?? { kind: 'fs', root: 'blobs' },
      listen: { host: '127.0.0.1', port },
      url: options.url ?? `${options.tls || options.overrides?.tls ? 'https' : 'http'}://127.0.0.1:${port}`,
      ...(options.tls ? { tls: { cert: resolve(options.tls.cert), key: resolve(options.tls.key) } } : {}),
      ...(options.kms ? { kms: options.kms } : {}),
    };
    let invite: Invite | null = null;
    if (options.join !== undefined) {
      for (const file of ['keystore.sealed', 'keystore.key']) {
        if (existsSync(join(data, file))) await copyFile(join(data, file), join(staging, file));
      }
    } else if (!process.env.MEDVAULT_KEYSTORE_PASSPHRASE && !process.env.MEDVAULT_KEYSTORE_PASSPHRASE_FILE) {
      await writeSecret(join(staging, 'keystore.key'), randomBytes(32));
    }
    const kms = await LocalKms.open(join(staging, 'keystore.sealed'), await keystoreSecret(staging));
    if (options.join !== undefined) {
      const keys = kms.memberKeys(NODE_KEY);
      invite = openInvite(options.join, keys.identity, keys.signing.id);
      config.ledger = options.overrides?.ledger ?? process.env.MEDVAULT_LEDGER ?? invite.ledger;
      config.ledgerGenesis = invite.consortium;
      await kms.putSharedSecret(SUBJECT_KEY, Buffer.from(invite.subjectKey, 'hex'));
    } else {
      await kms.createMember(NODE_KEY);
      await kms.putSharedSecret(SUBJECT_KEY, randomBytes(32));
    }
    await writeFile(join(staging, 'medvault.json'), `${JSON.stringify(config, null, 2)}\n`, { flag: 'wx' });
    await writeSecret(join(staging, `${adminName}.key`), memberKeyFileText(adminName, admin));
    let result: { nodeId: string; adminId: string };
    const vault = await openNode(staging, options.overrides);
    try {
      if (invite) {
        await checkInvited(vault, invite);
      } else if (!options.unlisted && (await vault.ledger.head()) !== null) {
        const first = await vault.ledger.get(0);
        fail('CONSORTIUM_EXISTS', `block 0 of ${redactUri(config.ledger)} was signed by node ${first?.header.signer}`);
      }
      if (!options.unlisted) await vault.consortium.announce(config.url as string);
      const { member } = await vault.addMember(null, { name: adminName, role: 'admin', ...memberPublic(admin) });
      const genesis = await vault.ledger.get(0);
      if (!genesis) fail('LEDGER_UNAVAILABLE', 'the ledger has no block 0 after the first admin was anchored');
      config.ledgerGenesis = blockHash(genesis.header);
      result = { nodeId: vault.nodeId, adminId: member.id };
    } finally {
      await vault.close();
    }
    await writeFileAtomic(join(staging, 'medvault.json'), `${JSON.stringify(config, null, 2)}\n`);
    await fsyncDirectory(staging);
    if (existsSync(data)) {
      // The empty directory, or the join request, it replaces: set aside, then removed.
      const replaced = `${staging}.replaced`;
      await rename(data, replaced);
      await rename(staging, data);
      await rm(replaced, { recursive: true, force: true });
    } else {
      await rename(staging, data);
    }
    await fsyncDirectory(dirname(data));
    let adminKeyFile = join(data, `${adminName}.key`);
    if (outsideKeyFile) {
      await rename(adminKeyFile, outsideKeyFile).catch(async () => {
        // Another file system: copied, then removed from the data directory.
        await writeSecret(outsideKeyFile, await readFile(adminKeyFile));
        await rm(adminKeyFile);
      });
      adminKeyFile = outsideKeyFile;
    }
    return { ...result, adminKeyFile };
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
}

/** The file a join request leaves in the data directory it will become. */
const JOIN_REQUEST = 'join-request.json';

/**
 * INVITE_INVALID unless the ledger says a node of the consortium invited this node with this
 * very invite (its digest in node.invited), and the invite names that node as its inviter.
 */
async function checkInvited(vault: Vault, invite: Invite): Promise<void> {
  const own = (await vault.consortium.nodes()).find((n) => n.id === vault.nodeId);
  if (own?.state !== 'invited') {
    fail('INVITE_INVALID', `no node of the consortium anchored an invite of node ${vault.nodeId} on this ledger`);
  }
  check(
    own.invite === inviteDigest(invite) && own.invitedBy === invite.inviter,
    'INVITE_INVALID',
    'the invite is not the one anchored for this node (altered, or superseded by a later invite)',
  );
}

/**
 * The first step of joining a consortium: makes `data` with only the node's
 * keys (sealed keystore) and its public join request, which an admin of a
 * member node turns into an invite (medvault consortium invite); then
 * `initNode(data, { join })`.
 */
export async function joinRequest(data: string): Promise<JoinRequest> {
  data = resolve(data);
  if (existsSync(data) && (await readdir(data)).length > 0) {
    if (existsSync(join(data, JOIN_REQUEST)) && !existsSync(join(data, 'medvault.json'))) {
      return checkJoinRequest(JSON.parse(await readFile(join(data, JOIN_REQUEST), 'utf8')));
    }
    fail('INVALID_ARGUMENT', `${data} exists and is not empty: a join request makes a new data directory`);
  }
  const staging = join(dirname(data), `.${basename(data)}.request-${randomBytes(6).toString('hex')}`);
  await mkdir(staging, { recursive: true, mode: 0o700 });
  try {
    if (!process.env.MEDVAULT_KEYSTORE_PASSPHRASE && !process.env.MEDVAULT_KEYSTORE_PASSPHRASE_FILE) {
      await writeSecret(join(staging, 'keystore.key'), randomBytes(32));
    }
    const kms = await LocalKms.open(join(staging, 'keystore.sealed'), await keystoreSecret(staging));
    const node = await kms.createMember(NODE_KEY);
    const request: JoinRequest = { node: node.id, signingKey: node.signingKey, recipient: node.recipient };
    await writeFile(join(staging, JOIN_REQUEST), `${JSON.stringify(request, null, 2)}\n`, { flag: 'wx' });
    await fsyncDirectory(staging);
    if (existsSync(data)) await rmdir(data);
    await rename(staging, data);
    await fsyncDirectory(dirname(data));
    return request;
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
}

export interface NodeOverrides {
  peers?: Peer[];
  /** Custody on a PKCS#11 token instead of the configured custody. */
  kms?: { backend: 'pkcs11'; library: string; token: string; pin: string };
  /** A ledger URI instead of the configured one (default MEDVAULT_LEDGER). */
  ledger?: string;
  /** A blob store instead of the configured one (default MEDVAULT_STORE, as JSON). */
  store?: StoreConfig;
  /** Break-glass settings instead of the configured ones. */
  breakGlass?: NodeConfig['breakGlass'];
  /** The peer timeout instead of the configured one. */
  peerTimeoutSeconds?: number;
  /** TLS certificate and key instead of the configured ones. */
  tls?: TlsIdentity;
  /** Wraps the opened ledger: the fault tests put a ledger that fails on cue between the node and it. */
  wrapLedger?: (ledger: Ledger) => Ledger;
  /** Wraps the opened blob store: the fault tests hold an operation back on cue. */
  wrapStore?: (store: BlobStore) => BlobStore;
}

/** An environment variable holding JSON; INVALID_ARGUMENT when it does not parse. */
function envJson(name: string): unknown {
  try {
    return JSON.parse(process.env[name] as string);
  } catch (err) {
    fail('INVALID_ARGUMENT', `${name} is not valid JSON: ${(err as Error).message}`);
  }
}

/** The lock a serving node holds on its data directory (its process id): one node per directory. */
export const NODE_LOCK = 'node.lock';

/**
 * Opens the vault in a data directory, holding its lock until the vault is closed: a second
 * node (or `medvault keystore passphrase`) on the same directory is refused DATA_IN_USE.
 */
export async function openNode(data: string, overrides: NodeOverrides = {}): Promise<Vault> {
  data = resolve(data);
  const config = await readConfig(data);
  const reserveMiB = config.diskReserveMiB ?? DEFAULT_RESERVE_MIB;
  check(
    Number.isSafeInteger(reserveMiB) && reserveMiB >= 0 && reserveMiB <= 1024,
    'INVALID_ARGUMENT',
    'diskReserveMiB is a whole number of MiB, 0 to 1024',
  );
  // Before anything writes here, the lock included: on a full disk the reserve makes room to
  // start (read-only for new documents).
  const reserve = await DiskReserve.open(data, reserveMiB * 1024 * 1024);
  const release = await lockDataDirectory(data);
  try {
    const vault = await openLocked(data, config, overrides, reserve);
    vault.onClose(release);
    return vault;
  } catch (err) {
    await release();
    throw err;
  }
}

async function openLocked(
  data: string,
  config: NodeConfig,
  overrides: NodeOverrides,
  reserve: DiskReserve,
): Promise<Vault> {
  // Checked before anything is opened: a bad peer list refuses the start and holds nothing.
  const peers = checkPeers(
    overrides.peers ?? (process.env.MEDVAULT_PEERS ? envJson('MEDVAULT_PEERS') : undefined) ?? config.peers ?? [],
  );
  const breakGlass = { ...config.breakGlass, ...overrides.breakGlass };
  const webhook = process.env.MEDVAULT_BREAK_GLASS_WEBHOOK || breakGlass.webhook;
  if (webhook) checkWebhookUrl(webhook);
  admitThreads(); // a bad MEDVAULT_ADMIT_THREADS refuses the start, not every upload
  const peerTimeoutSeconds = overrides.peerTimeoutSeconds ?? config.peerTimeoutSeconds ?? 30;
  check(
    Number.isSafeInteger(peerTimeoutSeconds) && peerTimeoutSeconds >= 1 && peerTimeoutSeconds <= 3600,
    'INVALID_ARGUMENT',
    'peerTimeoutSeconds is a whole number of seconds, 1 to 3600',
  );
  check(
    breakGlass.perDay === undefined || (Number.isSafeInteger(breakGlass.perDay) && breakGlass.perDay >= 0),
    'INVALID_ARGUMENT',
    'breakGlass.perDay is a whole number of accesses',
  );
  const tls = overrides.tls ?? (config.tls ? await readTls(data, config.tls) : undefined);
  const kms = await LocalKms.open(join(data, 'keystore.sealed'), await keystoreSecret(data));
  await adoptLooseSubjectKey(data, kms);
  const ledgerUri = overrides.ledger ?? process.env.MEDVAULT_LEDGER ?? config.ledger;
  const storeConfig =
    overrides.store ?? (process.env.MEDVAULT_STORE ? (envJson('MEDVAULT_STORE') as StoreConfig) : config.store);
  const metadata = new Metadata(join(data, 'metadata.db'));
  // The highest block this node's own records refer to: a file ledger that lost it is refused
  // (not cut), and Vault.open checks any ledger's head against it.
  const acknowledged = metadata.highestAnchor() ?? undefined;
  let ledger: Awaited<ReturnType<typeof openLedger>> | undefined;
  try {
    ledger = await openLedger(inData(data, ledgerUri), acknowledged === undefined ? {} : { acknowledged });
    if (overrides.wrapLedger) ledger = overrides.wrapLedger(ledger);
    await checkGenesis(ledger, ledgerUri, config.ledgerGenesis);
    // A key hand-over a crash cut short (medvault node rotate-key) is finished before the node signs anything.
    await finishNodeKey(kms, ledger, metadata.locatorNextHeight());
  } catch (err) {
    // A refused start holds nothing: the ledger it opened (its file and lock) is closed too.
    await ledger?.close().catch(() => {});
    metadata.close();
    throw err;
  }
  const node = kms.memberKeys(NODE_KEY).signing;
  logger.info(
    { ledger: redactUri(ledgerUri), ledgerKind: ledger.kind, store: describeStore(storeConfig) },
    'node opened: the ledger and the store it serves',
  );
  const storeMeter = new StoreMeter();
  let store: BlobStore | undefined;
  let custody: Kms;
  try {
    const opened = await openBlobStore(inStore(data, storeConfig), storeMeter);
    store = overrides.wrapStore ? overrides.wrapStore(opened) : opened;
    custody = await openCustody(data, kms, overrides.kms ?? config.kms);
  } catch (err) {
    await store?.close().catch(() => {});
    await ledger.close().catch(() => {});
    metadata.close();
    throw err;
  }
  const sweepFiles = async () => ({
    // Everything in the data directory but the blob store (the sweep asks the stores themselves).
    data: (await readdir(data, { recursive: true, withFileTypes: true }))
      .filter((e) => e.isFile())
      .map((e) => join(e.parentPath, e.name))
      .filter((f) => !f.startsWith(`${join(data, 'blobs')}/`) && f !== join(data, RESERVE_FILE)),
    logs: [...(config.sweepLogs ?? []), ...(process.env.MEDVAULT_SWEEP_LOGS?.split(':').filter(Boolean) ?? [])],
  });
  const vault = await Vault.open({
    metadata,
    kms: custody,
    store,
    ledger,
    node,
    ownsStore: storeConfig.kind === 'fs',
    sweepFiles,
    peers,
    peerTimeoutMs: peerTimeoutSeconds * 1000,
    ...(breakGlass.perDay === undefined ? {} : { emergencyPerDay: breakGlass.perDay }),
    diskPaths: [data, ...fsRoots(inStore(data, storeConfig))],
    reserve,
    keystore: kms,
    consortium: { ledger: ledgerUri, genesis: config.ledgerGenesis },
    ...(tls ? { tls } : {}),
    storeMeter,
  });
  if (webhook) vault.onEmergency(webhookAlerts(webhook, vault.nodeId));
  vault.backups = new Backups({
    data,
    kms,
    metadata,
    ledger,
    node: node.id,
    ...(config.backup ? { policy: config.backup } : {}),
    ...(config.tls ? { tlsKey: config.tls.key } : {}),
  });
  try {
    await vault.backups.expire();
    await reapplyAfterRestore(data, vault);
  } catch (err) {
    await vault.close().catch(() => {});
    throw err;
  }
  return vault;
}

/**
 * A data directory restored from a backup (RESTORED_MARKER) re-applies every erasure anchored
 * since the backup was taken before its node does anything else; the marker goes only once
 * that is done, so a crash in between re-applies again (idempotent).
 */
async function reapplyAfterRestore(data: string, vault: Vault): Promise<void> {
  const marker = join(data, RESTORED_MARKER);
  if (!existsSync(marker)) return;
  const { takenAt, ledgerHeight } = JSON.parse(await readFile(marker, 'utf8')) as {
    takenAt: number;
    ledgerHeight: number | null;
  };
  const applied = await vault.erasures.reapply((ledgerHeight ?? -1) + 1);
  await rm(marker);
  await fsyncDirectory(data);
  logger.info(
    { backupTakenAt: new Date(takenAt).toISOString(), erasures: applied },
    'restored from a backup: the erasures anchored since it was taken are applied again',
  );
}

/**
 * Nodes made before the subject key lived in the keystore kept it beside it, in
 * DATA/pseudonym.key, where any copy of the directory carried it: moved into the sealed
 * keystore (the same key, so existing subjects keep their pseudonyms), the file removed.
 */
async function adoptLooseSubjectKey(data: string, kms: LocalKms): Promise<void> {
  const file = join(data, 'pseudonym.key');
  if (!existsSync(file)) return;
  if (!kms.hasSharedSecret(SUBJECT_KEY)) {
    const key = Buffer.from((await readFile(file, 'utf8')).trim(), 'hex');
    check(key.length === 32, 'KEY_INVALID', `${file} is not a 32-byte hex key`);
    await kms.putSharedSecret(SUBJECT_KEY, key);
  }
  await rm(file);
  await fsyncDirectory(data);
  logger.info('the subject key moved from pseudonym.key into the sealed keystore');
}

/** The node's TLS certificate and key (PEM), checked to be a pair. */
async function readTls(data: string, files: NonNullable<NodeConfig['tls']>): Promise<TlsIdentity> {
  const read = (path: string) =>
    readFile(inPath(data, path)).catch((err: Error) => fail('INVALID_ARGUMENT', `tls: ${err.message}`));
  return checkTlsIdentity(await read(files.cert), await read(files.key));
}

/** The subjects' custodian keys: in the sealed keystore, or on a PKCS#11 token. */
async function openCustody(
  data: string,
  local: LocalKms,
  config: NodeConfig['kms'] | NodeOverrides['kms'],
): Promise<Kms> {
  if (!config || config.backend === 'local') return local;
  const pin = 'pin' in config ? config.pin : await pkcs11Pin();
  if (!pin) {
    fail(
      'INVALID_ARGUMENT',
      'the pkcs11 custody needs the token PIN in MEDVAULT_PKCS11_PIN_FILE or MEDVAULT_PKCS11_PIN',
    );
  }
  const { Pkcs11Kms } = await import('../../kms/pkcs11-kms.ts');
  return Pkcs11Kms.open({
    library: config.library,
    token: config.token,
    pin,
    wrappedFile: join(data, 'custodians.pkcs11.json'),
  });
}

/** The token PIN: the first line of MEDVAULT_PKCS11_PIN_FILE (a container secret), else MEDVAULT_PKCS11_PIN. */
async function pkcs11Pin(): Promise<string | undefined> {
  const file = process.env.MEDVAULT_PKCS11_PIN_FILE;
  if (!file) return process.env.MEDVAULT_PKCS11_PIN;
  const text = await readFile(file, 'utf8').catch((err: Error) =>
    fail('INVALID_ARGUMENT', `MEDVAULT_PKCS11_PIN_FILE: ${err.message}`),
  );
  return text.split('\n')[0]?.trim() || undefined;
}

function inPath(data: string, path: string): string {
  return isAbsolute(path) ? path : join(data, path);
}

/** Relative fs roots (also inside a replicated store) are inside the data directory. */
function inStore(data: string, config: StoreConfig): StoreConfig {
  if (config.kind === 'fs') return { ...config, root: inPath(data, config.root) };
  if (config.kind === 's3' && config.ca) return { ...config, ca: inPath(data, config.ca) };
  if (config.kind === 'replicated') {
    return { ...config, replicas: config.replicas.map((r) => ({ ...r, config: inStore(data, r.config) })) };
  }
  return config;
}

function inData(data: string, uri: string): string {
  return uri.startsWith('file:') ? `file:${inPath(data, uri.slice('file:'.length))}` : uri;
}

/** The roots of the fs stores in a store configuration (replicas included). */
function fsRoots(config: StoreConfig): string[] {
  if (config.kind === 'fs') return [config.root];
  if (config.kind === 'replicated') return config.replicas.flatMap((r) => fsRoots(r.config));
  return [];
}

/**
 * LEDGER_MISMATCH unless the ledger's block 0 is the one the node was made on (recorded by
 * init). A ledger that cannot be read now is let through (logged): the acknowledged-height
 * check in Vault.open and the next read catch a wrong one.
 */
async function checkGenesis(ledger: Ledger, uri: string, genesis: string | undefined): Promise<void> {
  if (!genesis) return;
  let first: Awaited<ReturnType<Ledger['get']>>;
  try {
    first = await ledger.get(0);
  } catch (err) {
    if (isMedvaultError(err, 'LEDGER_UNAVAILABLE')) {
      logger.warn({ ledger: redactUri(uri) }, 'the ledger could not be read at start-up: its genesis is checked later');
      return;
    }
    throw err;
  }
  const found = first ? blockHash(first.header) : 'none (an empty ledger)';
  if (found !== genesis) {
    fail(
      'LEDGER_MISMATCH',
      `${redactUri(uri)} has block 0 ${found}; this node was made on a ledger whose block 0 is ${genesis}`,
    );
  }
}

/** A ledger URI for logs: no credentials. */
function redactUri(uri: string): string {
  return uri.replace(/\/\/[^/@]*@/, '//');
}

/** A store configuration for logs: its kinds and places, never its keys. */
function describeStore(config: StoreConfig): string {
  if (config.kind === 'fs') return `fs ${config.root}`;
  if (config.kind === 's3') return `s3 ${config.endPoint}:${config.port}/${config.bucket}`;
  if (config.kind === 'ipfs') return `ipfs ${config.url}`;
  return `replicated [${config.replicas.map((r) => `${r.name}: ${describeStore(r.config)}`).join(', ')}]`;
}
