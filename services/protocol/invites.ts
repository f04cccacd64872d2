/**
 * The consortium's invites and sealed secrets, as both ends use them: a node
 * seals (services/vault/consortium.ts), a joining node and a member's SDK
 * open. See services/vault/consortium.ts for the flow (found, request,
 * invite, join).
 *
 * An invite is the canonical JSON of `Invite`, encrypted with age to the
 * joining node's X25519 recipient and armored; node.invited on the ledger
 * carries SHA-256("medvault-invite-v1\n" ‖ that JSON), so the joining node
 * knows the invite it opened is the one a node of the consortium anchored.
 * The subject key sealed to a member is age-encrypted to its recipient,
 * armored, holding the key's 64 hex digits and a newline.
 */
import { createHash, randomBytes } from 'node:crypto';
import { canonicalJson } from '../../anchor/events.ts';
import { decrypt, encrypt } from '../../crypto/age.ts';
import { ArmorDecoder, ArmorEncoder } from '../../crypto/armor.ts';
import { keyFingerprint } from '../../crypto/ed25519.ts';
import type { X25519Identity } from '../../crypto/x25519.ts';
import { X25519Recipient } from '../../crypto/x25519.ts';
import { check, fail, isMedvaultError } from '../../errors.ts';
import { HASH, ID } from '../../formats.ts';

/** What a joining node publishes before it is invited: its public keys. */
export interface JoinRequest {
  /** Its node key id: the fingerprint of `signingKey`. */
  node: string;
  /** Base64 Ed25519 public key. */
  signingKey: string;
  /** Its age recipient (age1…). */
  recipient: string;
}

/** The sealed content of an invite. */
export interface Invite {
  version: 1;
  /** The hash of the consortium ledger's block 0. */
  consortium: string;
  /** The ledger URI the inviting node uses (the joining node may be given another to the same ledger). */
  ledger: string;
  /** The inviting node. */
  inviter: string;
  /** The invited node's key id. */
  node: string;
  /** The consortium's subject key, hex. */
  subjectKey: string;
  expiresAt: number;
  /** Random: no two invites have the same digest. */
  nonce: string;
}

/** A join request, checked: INVALID_ARGUMENT unless the keys are well formed and the id is the key's. */
export function checkJoinRequest(value: unknown): JoinRequest {
  const r = (value ?? {}) as Partial<Record<keyof JoinRequest, unknown>>;
  const key = typeof r.signingKey === 'string' ? Buffer.from(r.signingKey, 'base64') : Buffer.alloc(0);
  check(
    key.length === 32 && key.toString('base64') === r.signingKey,
    'INVALID_ARGUMENT',
    'signingKey is a base64 Ed25519 public key',
  );
  check(typeof r.node === 'string' && r.node === keyFingerprint(key), 'INVALID_ARGUMENT', 'node is its key id');
  try {
    X25519Recipient.parse(String(r.recipient));
  } catch {
    fail('INVALID_ARGUMENT', 'recipient is an age X25519 recipient (age1…)');
  }
  return { node: r.node, signingKey: r.signingKey as string, recipient: String(r.recipient) };
}

/** The digest a node anchors in node.invited: SHA-256 over the invite's canonical JSON. */
export function inviteDigest(invite: Invite): string {
  return createHash('sha256')
    .update(`medvault-invite-v1\n${canonicalJson(invite)}`)
    .digest('hex');
}

/** A new invite of `node` into the consortium, before it is sealed. */
export function makeInvite(fields: Omit<Invite, 'version' | 'nonce'>): Invite {
  return { version: 1, ...fields, nonce: randomBytes(16).toString('hex') };
}

/** The invite sealed (age, armored) to the joining node's recipient. */
export function sealInvite(invite: Invite, recipient: string): string {
  return armor(encrypt([X25519Recipient.parse(recipient)], Buffer.from(canonicalJson(invite))));
}

/**
 * Opens an invite with the joining node's age identity: INVITE_INVALID if it
 * is not sealed to this node, not an invite, for another node or expired.
 * Whether the ledger anchors it is checked by the caller (inviteDigest).
 */
export function openInvite(text: string, identity: X25519Identity, node: string, now = Date.now()): Invite {
  let invite: Invite;
  try {
    invite = JSON.parse(Buffer.from(decrypt([identity], unarmor(text, 'INVITE_INVALID'))).toString('utf8')) as Invite;
  } catch (err) {
    if (isMedvaultError(err, 'INVITE_INVALID')) throw err;
    fail('INVITE_INVALID', 'it does not open with this node key (an invite for another node, or not an invite)');
  }
  check(
    invite.version === 1 &&
      HASH.test(String(invite.consortium)) &&
      ID.test(String(invite.inviter)) &&
      HASH.test(String(invite.subjectKey)) &&
      typeof invite.ledger === 'string' &&
      Number.isSafeInteger(invite.expiresAt),
    'INVITE_INVALID',
    'not a medvault invite',
  );
  check(invite.node === node, 'INVITE_INVALID', `it invites node ${invite.node}, not this node (${node})`);
  check(invite.expiresAt > now, 'INVITE_INVALID', `it expired at ${new Date(invite.expiresAt).toISOString()}`);
  return invite;
}

/** The subject key sealed (age, armored) to a member's recipient. */
export function sealSecret(secret: Uint8Array, recipient: string): string {
  return armor(encrypt([X25519Recipient.parse(recipient)], Buffer.from(`${Buffer.from(secret).toString('hex')}\n`)));
}

/** Opens a secret sealed by sealSecret: 32 bytes. */
export function openSecret(text: string, identity: X25519Identity): Uint8Array {
  const hex = Buffer.from(decrypt([identity], unarmor(text, 'KEY_INVALID')))
    .toString('utf8')
    .trim();
  const key = Buffer.from(hex, 'hex');
  check(key.length === 32 && HASH.test(hex), 'KEY_INVALID', 'the sealed subject key is not 32 bytes of hex');
  return new Uint8Array(key);
}

function armor(file: Uint8Array): string {
  const encoder = new ArmorEncoder();
  return encoder.update(file) + encoder.final();
}

function unarmor(text: string, code: 'INVITE_INVALID' | 'KEY_INVALID'): Uint8Array {
  const decoder = new ArmorDecoder();
  try {
    return Buffer.concat([...decoder.update(Buffer.from(`${text.trim()}\n`, 'latin1')), ...decoder.final()]);
  } catch {
    fail(code, 'not an armored age file');
  }
}
