/**
 * Key custody. Each subject (a patient, by keyed pseudonym) has a custodian
 * X25519 key that never leaves the KMS: records are encrypted to it beside
 * their readers, it is the vault's only way to re-share a record, and
 * erasure destroys it. Backends: `local` (a sealed keystore file, default)
 * and, later, `pkcs11` (an HSM).
 */
import { createHash } from 'node:crypto';
import { buildHeader, generateFileKey, openHeader, PayloadReencryptor, type StreamCore } from '../crypto/age.ts';
import { type Recipient, type Stanza, serializeHeader } from '../crypto/header.ts';
import { checkPayloadSample, type PayloadSample } from '../crypto/stream.ts';
import type { X25519Identity } from '../crypto/x25519.ts';
import { check, fail } from '../errors.ts';
import { HASH } from '../formats.ts';

export interface DestroyResult {
  subject: string;
  keyId: string;
  backend: string;
  /** What the backend did, for the erasure certificate. */
  confirmed: string;
}

export interface Kms {
  readonly backend: string;
  /** The subject's custodian recipient (made on first use) and its key id. */
  custodian(subject: string): Promise<{ recipient: Recipient; keyId: string }>;
  /**
   * Inside the KMS: unwraps the header's custodian stanza and returns a new
   * header for the same file key, wrapped to `readers` and the custodian.
   * The file key never leaves this call.
   */
  rewrap(subject: string, header: Uint8Array, readers: readonly Recipient[]): Promise<Uint8Array>;
  /**
   * Inside the KMS: a new file key, a header wrapping it to `readers` and the
   * custodian, and a core that turns the old payload into the new one (for
   * revocation after a suspected key compromise). Neither file key leaves.
   */
  reencrypt(
    subject: string,
    header: Uint8Array,
    readers: readonly Recipient[],
  ): Promise<{ header: Uint8Array; core: StreamCore }>;
  /**
   * Inside the KMS, for an upload: unwraps the header's custodian stanza, opens the sampled
   * first and last payload chunks with that file key (crypto/stream.ts checkPayloadSample), so
   * that an upload that could never be decrypted is refused (AGE_PAYLOAD_CORRUPT), and returns
   * the header rewrapped to `readers` as `rewrap` does: one unwrap for both. The file key never
   * leaves this call.
   */
  admit(subject: string, header: Uint8Array, readers: readonly Recipient[], sample: PayloadSample): Promise<Uint8Array>;
  /** Destroys the subject's custodian key for good. */
  destroy(subject: string): Promise<DestroyResult>;
  /** What the backend still holds for `subject` (empty when nothing): for the post-erasure sweep. */
  holds?(subject: string): Promise<string[]>;
  /**
   * What the backend still holds of the custodian key `keyId` (empty when nothing): for the
   * sweep once the subject's pseudonym itself is gone from the node.
   */
  holdsKey?(keyId: string): Promise<string[]>;
  /** Releases what the backend holds open (a token session). */
  close?(): Promise<void>;
}

/**
 * The keys a backend has destroyed, so that an erased subject never gets a new custodian
 * (KMS_KEY_DESTROYED). Kept by a one-way tag of the pseudonym, never the pseudonym itself:
 * after an erasure the pseudonym is in no file of the node, custody files included. Lists
 * written before tags were keyed by pseudonym; `tagged` is absent on those.
 */
export interface DestroyedList {
  destroyed: Record<string, { keyId: string; at: number }>;
  tagged?: true;
}

const TAG_DOMAIN = 'medvault destroyed custodian v1\n';

/** The tag a destroyed subject is listed under. */
export function destroyedTag(subject: string): string {
  return createHash('sha256').update(TAG_DOMAIN).update(subject).digest('hex');
}

/** INVALID_ARGUMENT unless `subject` is a keyed pseudonym (64 hex digits), never a name. */
export function checkSubject(subject: string): void {
  check(HASH.test(subject), 'INVALID_ARGUMENT', 'a subject is a 64-hex-digit keyed pseudonym');
}

/** Checks `subject`, and refuses it with KMS_KEY_DESTROYED once its key was destroyed. */
export function refuseDestroyed(list: DestroyedList, subject: string): void {
  checkSubject(subject);
  const destroyed = list.destroyed[destroyedTag(subject)];
  if (destroyed) fail('KMS_KEY_DESTROYED', `key ${destroyed.keyId}`);
}

/** The key id listed for a destroyed subject, if any. */
export const destroyedKeyId = (list: DestroyedList, subject: string): string | undefined =>
  list.destroyed[destroyedTag(subject)]?.keyId;

/** Lists `subject`'s custodian `keyId` as destroyed, under its tag. */
export function markDestroyed(list: DestroyedList, subject: string, keyId: string): void {
  list.destroyed[destroyedTag(subject)] = { keyId, at: Date.now() };
}

/** An empty list of destroyed keys, for a new custody file. */
export const emptyDestroyed = (): DestroyedList => ({ destroyed: {}, tagged: true });

/** Re-keys a list written before tags by tag, in place; true when it changed (write it back). */
export function upgradeDestroyed(list: DestroyedList): boolean {
  if (list.tagged) return false;
  list.destroyed = Object.fromEntries(Object.entries(list.destroyed).map(([s, v]) => [destroyedTag(s), v]));
  list.tagged = true;
  return true;
}

/**
 * `rewrap` for a backend that holds the custodian identity for the call: same file key, new
 * readers. A header whose only stanza the custodian key opens (what the SDK uploads) keeps that
 * stanza as it is, so only the readers are wrapped; any other gets a new custodian stanza.
 */
export function rewrapWith(custodian: X25519Identity, header: Uint8Array, readers: readonly Recipient[]): Uint8Array {
  return withFileKey(custodian, header, (fileKey, stanzas) => rewrapped(custodian, fileKey, stanzas, readers));
}

/** `admit` for a backend that holds the custodian identity for the call. */
export function admitWith(
  custodian: X25519Identity,
  header: Uint8Array,
  readers: readonly Recipient[],
  sample: PayloadSample,
): Uint8Array {
  return withFileKey(custodian, header, (fileKey, stanzas) => {
    checkPayloadSample(fileKey, sample);
    return rewrapped(custodian, fileKey, stanzas, readers);
  });
}

/** Runs `use` with the file key `custodian` unwraps from `header`, zeroed after. */
function withFileKey<T>(
  custodian: X25519Identity,
  header: Uint8Array,
  use: (fileKey: Uint8Array, stanzas: readonly Stanza[]) => T,
): T {
  const { header: opened, fileKey } = openHeader(header, [custodian]);
  try {
    return use(fileKey, opened.stanzas);
  } finally {
    fileKey.fill(0);
  }
}

function rewrapped(
  custodian: X25519Identity,
  fileKey: Uint8Array,
  stanzas: readonly Stanza[],
  readers: readonly Recipient[],
): Uint8Array {
  const own = stanzas.length === 1 ? stanzas : custodian.recipient.wrapFileKey(fileKey);
  return serializeHeader([...readers.flatMap((r) => r.wrapFileKey(fileKey)), ...own], fileKey).bytes;
}

/** `reencrypt` for such a backend: a new file key, its header, and the payload re-encryption core. */
export function reencryptWith(
  custodian: X25519Identity,
  header: Uint8Array,
  readers: readonly Recipient[],
): { header: Uint8Array; core: StreamCore } {
  const { fileKey } = openHeader(header, [custodian]);
  const next = generateFileKey();
  return {
    header: buildHeader(next, [...readers, custodian.recipient]).bytes,
    core: new PayloadReencryptor(fileKey, next),
  };
}
