/**
 * Backups that do not undo erasure. A backup of a node holds everything it needs to come
 * back, but every secret in it (the keystore and its key, a PKCS#11 node's wrapped custodian
 * keys, TLS and member key files, and the metadata database with its headers and pseudonyms)
 * only age-encrypted to a backup key. Backup keys live in the node's keystore; a new one is
 * made when the newest is older than `rotateHours`, and each is destroyed `retentionDays`
 * after it was made. So a custodian key destroyed by an erasure survives in backups only
 * until the last backup key that existed then is destroyed, and the erasure certificate
 * says when that is (`backupsUntil`). Restoring a backup re-applies, before the node serves,
 * every erasure anchored since the backup was taken (Erasures.reapply).
 *
 *   BACKUP/manifest.json      node, time, ledger height, backup key id and expiry, file hashes
 *   BACKUP/secrets.age        the secret files, as JSON { files: { path: base64 } }
 *   BACKUP/metadata.db.age    a consistent copy of metadata.db (VACUUM INTO)
 *   BACKUP/files/…            the rest as it is: medvault.json, the file ledger, the fs blobs
 *                             (ciphertext), public files
 *
 * Blobs in S3 or IPFS are not copied: those stores keep their own copies.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, open, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Ledger } from '../../anchor/ledger.ts';
import { createDecryptStream, createEncryptStream, decrypt, encrypt } from '../../crypto/age.ts';
import type { X25519Identity } from '../../crypto/x25519.ts';
import { fsyncDirectory } from '../../durable.ts';
import { check, fail, isMedvaultError } from '../../errors.ts';
import type { BackupKeyInfo, LocalKms } from '../../kms/local-kms.ts';
import { logger } from '../../log.ts';
import type { BackupManifest } from '../protocol/views.ts';
import type { MemberRow, Metadata } from './metadata.ts';
import { authorize } from './policy.ts';

export interface BackupPolicy {
  /** Where backups are written (relative: inside the data directory). */
  dir: string;
  /** A new backup key when the newest is older than this. */
  rotateHours: number;
  /** Each backup key is destroyed this long after it was made: backups older cannot be opened. */
  retentionDays: number;
}

export type { BackupManifest };

export const DEFAULT_BACKUP_POLICY: BackupPolicy = { dir: 'backups', rotateHours: 24, retentionDays: 30 };

/** What a restored data directory carries until its node has re-applied the erasures since. */
export const RESTORED_MARKER = 'restored.json';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const HEX = /^[0-9a-f]{64}$/;

/** Is `path` (relative to the data directory) a secret, kept only encrypted in a backup? */
function isSecret(path: string, tlsKey: string | undefined): boolean {
  return (
    path.startsWith('keystore.') ||
    path.endsWith('.key') ||
    path === 'custodians.pkcs11.json' ||
    path === tlsKey ||
    path.startsWith('metadata.db')
  );
}

/** Files of the data directory a backup leaves out: locks, temp files, earlier backups. */
function isTransient(path: string, backupDir: string): boolean {
  return (
    path.endsWith('.lock') ||
    path.endsWith('.partial') ||
    path.endsWith('.tmp') ||
    path.startsWith('blobs/tmp/') ||
    path === RESTORED_MARKER ||
    (backupDir !== '' && (path === backupDir || path.startsWith(`${backupDir}/`)))
  );
}

export class Backups {
  readonly #data: string;
  readonly #kms: LocalKms;
  readonly #metadata: Metadata;
  readonly #ledger: Ledger;
  readonly #node: string;
  readonly #policy: BackupPolicy;
  readonly #tlsKey: string | undefined;

  constructor(options: {
    data: string;
    kms: LocalKms;
    metadata: Metadata;
    ledger: Ledger;
    node: string;
    policy?: Partial<BackupPolicy>;
    tlsKey?: string;
  }) {
    this.#data = options.data;
    this.#kms = options.kms;
    this.#metadata = options.metadata;
    this.#ledger = options.ledger;
    this.#node = options.node;
    this.#policy = { ...DEFAULT_BACKUP_POLICY, ...options.policy };
    check(
      this.#policy.rotateHours > 0 && this.#policy.retentionDays > 0,
      'INVALID_ARGUMENT',
      'backup.rotateHours and backup.retentionDays are positive',
    );
    this.#tlsKey = options.tlsKey;
  }

  get directory(): string {
    return resolve(this.#data, this.#policy.dir);
  }

  /** The backup keys kept (no secrets). */
  keys(): BackupKeyInfo[] {
    return this.#kms.backupKeys();
  }

  /** Destroys the backup keys whose retention ended: every backup made with them becomes unreadable. */
  async expire(now = Date.now()): Promise<string[]> {
    const destroyed = await this.#kms.destroyExpiredBackupKeys(now);
    if (destroyed.length > 0) logger.info({ keys: destroyed }, 'backup keys past their retention destroyed');
    return destroyed;
  }

  /** Takes a backup (admin) into the backup directory; returns its path and manifest. */
  async create(actor: MemberRow | null, now = Date.now()): Promise<{ path: string; manifest: BackupManifest }> {
    if (actor) authorize(actor, 'backup');
    await this.expire(now);
    const key = await this.#currentKey(now);
    const recipient = this.#kms.backupIdentity(key.id).recipient;
    const name = `${new Date(now).toISOString().replace(/[:.]/g, '-')}-${this.#node.slice(0, 8)}`;
    await mkdir(this.directory, { recursive: true });
    const staging = join(this.directory, `.${name}.partial`);
    const path = join(this.directory, name);
    await rm(staging, { recursive: true, force: true });
    await mkdir(join(staging, 'files'), { recursive: true });
    try {
      const head = await this.#ledger.head();
      const backupDir = relative(this.#data, this.directory);
      const secrets: Record<string, string> = {};
      for (const file of await listFiles(this.#data)) {
        if (isTransient(file, backupDir)) continue;
        if (file.startsWith('metadata.db')) continue; // the snapshot below
        if (isSecret(file, this.#tlsKey)) {
          secrets[file] = (await readFile(join(this.#data, file))).toString('base64');
        } else {
          await mkdir(dirname(join(staging, 'files', file)), { recursive: true });
          await copyFile(join(this.#data, file), join(staging, 'files', file));
        }
      }
      await writeFile(
        join(staging, 'secrets.age'),
        encrypt([recipient], Buffer.from(JSON.stringify({ files: secrets }))),
      );
      // The database's copy is plaintext for as long as it takes to encrypt it, inside the data directory.
      const snapshot = join(this.#data, `.backup-${randomBytes(6).toString('hex')}.db.tmp`);
      try {
        this.#metadata.snapshot(snapshot);
        await pipeline(
          createReadStream(snapshot),
          createEncryptStream([recipient]),
          createWriteStream(join(staging, 'metadata.db.age')),
        );
      } finally {
        await rm(snapshot, { force: true });
      }
      const files: Record<string, string> = {};
      for (const file of await listFiles(staging)) files[file] = await sha256File(join(staging, file));
      const manifest: BackupManifest = {
        v: 1,
        type: 'medvault.backup',
        node: this.#node,
        takenAt: now,
        ledgerHeight: head?.height ?? null,
        backupKey: { id: key.id, expiresAt: key.expiresAt },
        files,
      };
      await writeFile(join(staging, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
      await syncTree(staging);
      await rename(staging, path);
      await fsyncDirectory(this.directory);
      logger.info({ backup: path, key: key.id, expiresAt: key.expiresAt }, 'backup taken');
      return { path, manifest };
    } catch (err) {
      await rm(staging, { recursive: true, force: true });
      throw err;
    }
  }

  /** The newest backup key if it is younger than rotateHours, else a new one. */
  async #currentKey(now: number): Promise<BackupKeyInfo> {
    const newest = this.#kms.backupKeys().at(-1);
    if (newest && newest.createdAt > now - this.#policy.rotateHours * HOUR && newest.expiresAt > now) return newest;
    return this.#kms.addBackupKey(now, now + this.#policy.retentionDays * DAY);
  }
}

/**
 * Restores a backup into `data` (which must not exist): its files, its secrets and database
 * decrypted with the backup key `identity`. A node on a file ledger needs the current ledger
 * file (`ledgerFile`): the backup's own copy lacks every event since, erasures included, and
 * is used only when `backupLedger` says so. The restored directory carries RESTORED_MARKER:
 * its node re-applies the erasures anchored since before it serves (openNode).
 */
export async function restoreBackup(options: {
  from: string;
  data: string;
  identity: X25519Identity;
  ledgerFile?: string;
  backupLedger?: boolean;
}): Promise<BackupManifest> {
  const manifest = await readManifest(options.from);
  const data = resolve(options.data);
  check(!existsSync(data), 'INVALID_ARGUMENT', `${data} exists: restore into a new directory`);
  const staging = join(dirname(data), `.${relative(dirname(data), data)}.restore-${randomBytes(4).toString('hex')}`);
  await mkdir(staging, { recursive: true });
  try {
    let bundle: { files: Record<string, string> };
    try {
      bundle = JSON.parse(
        Buffer.from(decrypt([options.identity], await readFile(join(options.from, 'secrets.age')))).toString('utf8'),
      );
    } catch (err) {
      if (isMedvaultError(err, 'AGE_NO_IDENTITY')) fail('BACKUP_KEY_GONE', 'this key does not open the backup');
      throw err;
    }
    const filesDir = join(options.from, 'files');
    for (const file of await listFiles(filesDir)) {
      await mkdir(dirname(join(staging, file)), { recursive: true });
      await copyFile(join(filesDir, file), join(staging, file));
    }
    for (const [file, content] of Object.entries(bundle.files)) {
      await mkdir(dirname(join(staging, file)), { recursive: true });
      await writeFile(join(staging, file), Buffer.from(content, 'base64'), { mode: 0o600 });
      await chmod(join(staging, file), 0o600);
    }
    await pipeline(
      createReadStream(join(options.from, 'metadata.db.age')),
      createDecryptStream([options.identity]),
      createWriteStream(join(staging, 'metadata.db'), { mode: 0o600 }),
    );
    const config = JSON.parse(await readFile(join(staging, 'medvault.json'), 'utf8')) as { ledger: string };
    if (config.ledger.startsWith('file:')) {
      const path = join(staging, config.ledger.slice('file:'.length));
      if (options.ledgerFile) await copyFile(options.ledgerFile, path);
      else {
        check(
          options.backupLedger === true,
          'INVALID_ARGUMENT',
          "this node's ledger is a file: give the current one (--ledger FILE); the backup's copy lacks every event since, erasures included (--backup-ledger to accept that)",
        );
      }
    }
    await writeFile(
      join(staging, RESTORED_MARKER),
      JSON.stringify({ takenAt: manifest.takenAt, ledgerHeight: manifest.ledgerHeight }),
    );
    await syncTree(staging);
    await rename(staging, data);
    await fsyncDirectory(dirname(data));
    return manifest;
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
}

/** The manifest of the backup at `path`, every file checked against its hash (BACKUP_INVALID). */
export async function readManifest(path: string): Promise<BackupManifest> {
  let manifest: BackupManifest;
  try {
    manifest = JSON.parse(await readFile(join(path, 'manifest.json'), 'utf8'));
  } catch {
    return fail('BACKUP_INVALID', `${path} has no readable manifest.json`);
  }
  check(manifest?.type === 'medvault.backup' && manifest.v === 1, 'BACKUP_INVALID', `${path}: not a medvault backup`);
  const listed = Object.keys(manifest.files ?? {}).sort();
  const present = (await listFiles(path)).filter((f) => f !== 'manifest.json').sort();
  check(
    JSON.stringify(listed) === JSON.stringify(present),
    'BACKUP_INVALID',
    `${path}: its files are not the ones its manifest lists`,
  );
  for (const file of listed) {
    const expected = manifest.files[file] as string;
    check(HEX.test(expected) && (await sha256File(join(path, file))) === expected, 'BACKUP_INVALID', `${file} changed`);
  }
  return manifest;
}

/** Every regular file under `dir`, as paths relative to it. */
async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => relative(dir, join(e.parentPath, e.name)));
}

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** fsyncs every file and directory under `dir`, so a renamed backup or restore is whole after a crash. */
async function syncTree(dir: string): Promise<void> {
  for (const file of await listFiles(dir)) {
    const handle = await open(join(dir, file), 'r');
    await handle.sync();
    await handle.close();
  }
  const dirs = (await readdir(dir, { recursive: true, withFileTypes: true })).filter((e) => e.isDirectory());
  for (const d of dirs) await fsyncDirectory(join(d.parentPath, d.name));
  await fsyncDirectory(dir);
}
