/**
 * The local KMS: each member's own Ed25519 signing key and X25519 age
 * identity, the consortium's shared secrets and the backup keys, in a
 * keystore file sealed with a passphrase or a key file (kms/sealed-file.ts);
 * the custodian keys, one per subject, in 256 sealed shard files beside it
 * (kms/custodian-shards.ts), sealed under a shard key the keystore holds.
 * Destroying a key marks its subject destroyed in the keystore, then rewrites
 * its shard without it (atomically, fsync'd), so no copy of the key remains in
 * the file or beside it; the subject is remembered as destroyed by a one-way
 * tag (kms.ts markDestroyed), never by its pseudonym. A keystore from before
 * the shards has its custodian keys moved into them when opened.
 *
 * What this cannot promise: a filesystem may keep the blocks of the previous
 * file until they are reused, and whoever holds those blocks and the
 * passphrase could open the old file. An HSM backend (pkcs11) is the answer
 * where that matters; the erasure certificate names the backend used.
 */

import { LRUCache } from 'lru-cache';
import type { StreamCore } from '../crypto/age.ts';
import { keyFingerprint, SigningKey } from '../crypto/ed25519.ts';
import type { Recipient } from '../crypto/header.ts';
import { random } from '../crypto/primitives.ts';
import type { PayloadSample } from '../crypto/stream.ts';
import { X25519Identity } from '../crypto/x25519.ts';
import { check, fail } from '../errors.ts';
import { MEMBER_NAME } from '../formats.ts';
import { admitUpload } from './admit-pool.ts';
import { type CustodianEntry, CustodianShards } from './custodian-shards.ts';
import {
  checkSubject,
  type DestroyedList,
  type DestroyResult,
  destroyedKeyId,
  emptyDestroyed,
  type Kms,
  markDestroyed,
  reencryptWith,
  refuseDestroyed,
  rewrapWith,
  upgradeDestroyed,
} from './kms.ts';
import { readSealed, type SealingSecret, writeSealed } from './sealed-file.ts';

interface Keystore extends DestroyedList {
  /** Custodian keys of a keystore from before the shards (moved into them at open; empty after). */
  custodians: Record<string, CustodianEntry>;
  /** The random key the custodian shards are sealed under (base64). */
  shardKey?: string;
  members?: Record<string, { signingSeed: string; ageSecret: string; created: number }>;
  /** The consortium's shared secrets this node was given (base64), e.g. the subject key. */
  shared?: Record<string, string>;
  /** Backup keys (services/vault/backup.ts): X25519 secrets, each destroyed when it expires. */
  backupKeys?: Record<string, { secret: string; createdAt: number; expiresAt: number }>;
}

/** A backup key as listed: its id (the fingerprint of its recipient) and lifetime, no secret. */
export interface BackupKeyInfo {
  id: string;
  recipient: string;
  createdAt: number;
  expiresAt: number;
}

/** What anyone may know of a member: its key id, signing key and age recipient. */
export interface MemberPublic {
  name: string;
  /** The member key id: the fingerprint of its Ed25519 key. */
  id: string;
  signingKey: string;
  recipient: string;
}

/** A member's own keys, for the node that acts as that member. Never log them. */
export interface MemberKeys {
  signing: SigningKey;
  identity: X25519Identity;
}

/** Custodian key objects kept in memory at most (a few MiB of OpenSSL key objects). */
const IDENTITY_CACHE = 4096;

export class LocalKms implements Kms {
  readonly backend = 'local';
  readonly #path: string;
  #secret: SealingSecret;
  #store: Keystore;
  readonly #shards: CustodianShards;
  #tail: Promise<unknown> = Promise.resolve();
  /** Custodian key objects recently used, by subject, oldest first (destroy drops its subject's). */
  readonly #identities = new LRUCache<string, { identity: X25519Identity; keyId: string; secret: string }>({
    max: IDENTITY_CACHE,
  });

  private constructor(path: string, secret: SealingSecret, store: Keystore, shards: CustodianShards) {
    this.#path = path;
    this.#secret = secret;
    this.#store = store;
    this.#shards = shards;
  }

  /** Opens the keystore at `path`, creating it when absent. KMS_LOCKED for a wrong secret. */
  static async open(path: string, secret: SealingSecret): Promise<LocalKms> {
    const existing = await readSealed<Keystore>(path, secret);
    const store = existing ?? { custodians: {}, ...emptyDestroyed() };
    const upgraded = upgradeDestroyed(store);
    store.shardKey ??= Buffer.from(random(32)).toString('base64');
    if (!existing || upgraded || !existing.shardKey) await writeSealed(path, secret, store);
    const shards = await CustodianShards.open(`${path}.custodians`, Buffer.from(store.shardKey, 'base64'));
    const kms = new LocalKms(path, secret, store, shards);
    await kms.#settleShards();
    return kms;
  }

  /**
   * Moves an older keystore's custodian keys into the shards (then drops them from the
   * keystore), and finishes a destruction a crash cut between marking and removing.
   */
  async #settleShards(): Promise<void> {
    const legacy = Object.entries(this.#store.custodians);
    if (legacy.length > 0) {
      await this.#shards.putAll(legacy);
      await this.#change((store) => {
        store.custodians = {};
      });
    }
    for (const [subject] of [...this.#shards.entries()]) {
      if (destroyedKeyId(this.#store, subject) !== undefined) await this.#shards.remove(subject);
    }
  }

  /**
   * Seals the keystore anew under `secret` (a passphrase change), after any change under way.
   * The custodian shards are sealed under the shard key the keystore holds: they are unchanged.
   */
  async reseal(secret: SealingSecret): Promise<void> {
    const run = this.#tail.then(async () => {
      await writeSealed(this.#path, secret, this.#store);
      this.#secret = secret;
    });
    this.#tail = run.catch(() => {});
    await run;
  }

  /** Runs a change of the keystore and writes it, one change at a time. */
  #change<T>(step: (store: Keystore) => T): Promise<T> {
    const run = this.#tail.then(async () => {
      const next = structuredClone(this.#store);
      const result = step(next);
      await writeSealed(this.#path, this.#secret, next);
      this.#store = next;
      return result;
    });
    this.#tail = run.catch(() => {});
    return run;
  }

  #identity(subject: string): { identity: X25519Identity; keyId: string } {
    refuseDestroyed(this.#store, subject);
    const entry = this.#shards.get(subject);
    if (!entry) fail('KMS_NO_KEY');
    // An upload uses its subject's key three times (custodian, rewrap, payload check): the key
    // object is made once and kept while the keystore holds that very secret.
    const cached = this.#identities.get(subject);
    if (cached?.secret === entry.secret) return cached;
    const made = { identity: new X25519Identity(Buffer.from(entry.secret, 'base64')), keyId: entry.keyId };
    this.#identities.set(subject, { ...made, secret: entry.secret });
    return made;
  }

  async custodian(subject: string): Promise<{ recipient: Recipient; keyId: string }> {
    refuseDestroyed(this.#store, subject);
    if (!this.#shards.get(subject)) {
      const secret = random(32);
      const keyId = keyFingerprint(new X25519Identity(secret).recipient.publicKey);
      // Kept unless one was made meanwhile, or the subject was destroyed meanwhile.
      const entry = { keyId, secret: Buffer.from(secret).toString('base64'), created: Date.now() };
      await this.#shards.put(subject, entry, () => destroyedKeyId(this.#store, subject) !== undefined);
    }
    const { identity, keyId } = this.#identity(subject);
    return { recipient: identity.recipient, keyId };
  }

  async rewrap(subject: string, header: Uint8Array, readers: readonly Recipient[]): Promise<Uint8Array> {
    return rewrapWith(this.#identity(subject).identity, header, readers);
  }

  async admit(
    subject: string,
    header: Uint8Array,
    readers: readonly Recipient[],
    sample: PayloadSample,
  ): Promise<Uint8Array> {
    return admitUpload(this.#identity(subject).identity, header, readers, sample);
  }

  async reencrypt(
    subject: string,
    header: Uint8Array,
    readers: readonly Recipient[],
  ): Promise<{ header: Uint8Array; core: StreamCore }> {
    return reencryptWith(this.#identity(subject).identity, header, readers);
  }

  /** Makes a member's Ed25519 signing key and X25519 age identity; KMS_MEMBER_EXISTS if it has them. */
  async createMember(name: string): Promise<MemberPublic> {
    check(
      MEMBER_NAME.test(name),
      'INVALID_ARGUMENT',
      'a member name is 1-63 of a-z 0-9 . _ - (starting with a letter or digit)',
    );
    await this.#change((store) => {
      store.members ??= {};
      if (store.members[name]) fail('KMS_MEMBER_EXISTS', name);
      store.members[name] = {
        signingSeed: Buffer.from(random(32)).toString('base64'),
        ageSecret: Buffer.from(random(32)).toString('base64'),
        created: Date.now(),
      };
    });
    return this.#public(name, this.memberKeys(name));
  }

  /** The member's own keys. */
  memberKeys(name: string): MemberKeys {
    const entry = this.#store.members?.[name];
    if (!entry) fail('KMS_NO_MEMBER', name);
    return {
      signing: new SigningKey(Buffer.from(entry.signingSeed, 'base64')),
      identity: new X25519Identity(Buffer.from(entry.ageSecret, 'base64')),
    };
  }

  hasMember(name: string): boolean {
    return this.#store.members?.[name] !== undefined;
  }

  /**
   * Member `name` takes the keys of member `from`, which is gone (one rewrite of the keystore):
   * `name`'s previous keys are no longer kept anywhere in it. KMS_NO_MEMBER when `from` has none.
   */
  async replaceMember(name: string, from: string): Promise<void> {
    await this.#change((store) => {
      const entry = store.members?.[from];
      if (!store.members || !entry) fail('KMS_NO_MEMBER', from);
      store.members[name] = entry;
      delete store.members[from];
    });
  }

  /** A consortium secret kept here (KMS_NO_KEY when the node was never given it). Never log it. */
  sharedSecret(name: string): Uint8Array {
    const value = this.#store.shared?.[name];
    if (value === undefined) fail('KMS_NO_KEY', `no consortium secret ${name} in this keystore`);
    return new Uint8Array(Buffer.from(value, 'base64'));
  }

  hasSharedSecret(name: string): boolean {
    return this.#store.shared?.[name] !== undefined;
  }

  /** Keeps a consortium secret; KMS_SECRET_EXISTS if one of that name is kept already (they never change). */
  async putSharedSecret(name: string, secret: Uint8Array): Promise<void> {
    await this.#change((store) => {
      store.shared ??= {};
      if (store.shared[name] !== undefined) fail('KMS_SECRET_EXISTS', name);
      store.shared[name] = Buffer.from(secret).toString('base64');
    });
  }

  /** The backup keys kept, oldest first. */
  backupKeys(): BackupKeyInfo[] {
    return Object.entries(this.#store.backupKeys ?? {})
      .map(([id, k]) => ({
        id,
        recipient: String(new X25519Identity(Buffer.from(k.secret, 'base64')).recipient),
        createdAt: k.createdAt,
        expiresAt: k.expiresAt,
      }))
      .sort((a, b) => a.createdAt - b.createdAt);
  }

  /** A backup key's identity, to open a backup; BACKUP_KEY_GONE once it expired and was destroyed. */
  backupIdentity(id: string): X25519Identity {
    const entry = this.#store.backupKeys?.[id];
    if (!entry) fail('BACKUP_KEY_GONE', `backup key ${id} is not in this keystore`);
    return new X25519Identity(Buffer.from(entry.secret, 'base64'));
  }

  /** Makes a backup key that expires at `expiresAt`. */
  async addBackupKey(now: number, expiresAt: number): Promise<BackupKeyInfo> {
    const secret = random(32);
    const recipient = new X25519Identity(secret).recipient;
    const id = keyFingerprint(recipient.publicKey);
    await this.#change((store) => {
      store.backupKeys ??= {};
      store.backupKeys[id] = { secret: Buffer.from(secret).toString('base64'), createdAt: now, expiresAt };
    });
    return { id, recipient: String(recipient), createdAt: now, expiresAt };
  }

  /** Destroys every backup key expired at `now` (the keystore is rewritten without it); their ids. */
  async destroyExpiredBackupKeys(now: number): Promise<string[]> {
    const expired = this.backupKeys().filter((k) => k.expiresAt <= now);
    if (expired.length === 0) return [];
    await this.#change((store) => {
      for (const { id } of expired) delete store.backupKeys?.[id];
    });
    return expired.map((k) => k.id);
  }

  listMembers(): MemberPublic[] {
    return Object.keys(this.#store.members ?? {})
      .sort()
      .map((name) => this.#public(name, this.memberKeys(name)));
  }

  #public(name: string, keys: MemberKeys): MemberPublic {
    return {
      name,
      id: keys.signing.id,
      signingKey: Buffer.from(keys.signing.publicKey).toString('base64'),
      recipient: keys.identity.recipient.toString(),
    };
  }

  async holds(subject: string): Promise<string[]> {
    const entry = this.#shards.get(subject);
    return entry ? [`keystore: custodian secret ${entry.keyId}`] : [];
  }

  async holdsKey(keyId: string): Promise<string[]> {
    return [...this.#shards.entries()]
      .filter(([, entry]) => entry.keyId === keyId)
      .map(() => `keystore: custodian secret ${keyId}`);
  }

  async destroy(subject: string): Promise<DestroyResult> {
    checkSubject(subject);
    const entry = this.#shards.get(subject);
    const keyId = entry?.keyId ?? destroyedKeyId(this.#store, subject) ?? 'none';
    // Marked first: from then on nothing uses or makes the subject's key, here or after a
    // crash (opening finishes a removal the crash cut off).
    if (entry) await this.#change((store) => markDestroyed(store, subject, keyId));
    const removed = await this.#shards.remove(subject);
    this.#identities.delete(subject); // nothing of a destroyed key stays in this process
    return {
      subject,
      keyId,
      backend: this.backend,
      confirmed:
        entry || removed
          ? "local: the key's keystore shard rewritten without it, fsync'd, renamed over the old file"
          : 'local: no such key (already destroyed or never made)',
    };
  }
}
