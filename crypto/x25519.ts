/**
 * The X25519 recipient type of age v1: identities `AGE-SECRET-KEY-1…`,
 * recipients `age1…` (Bech32 without a length limit), and the stanza
 * `-> X25519 <ephemeral share>` whose body wraps the file key.
 */
import type { KeyObject } from 'node:crypto';
import { bech32 } from '@scure/base';
import { LRUCache } from 'lru-cache';
import { check, fail } from '../errors.ts';
import { decodeUnpaddedExact, encodeUnpadded } from './base64.ts';
import type { Identity, Recipient, Stanza } from './header.ts';
import {
  aeadOpen,
  aeadSeal,
  FILE_KEY_LENGTH,
  hkdf,
  random,
  TAG_LENGTH,
  x25519,
  x25519Ephemeral,
  x25519PrivateKey,
  x25519PublicKeyObject,
  x25519RawPublic,
} from './primitives.ts';

const IDENTITY_HRP = 'age-secret-key-';
const RECIPIENT_HRP = 'age';
const STANZA_TYPE = 'X25519';
const INFO = 'age-encryption.org/v1/X25519';
const KEY_LENGTH = 32;

function decodeBech32(text: string, hrp: string, what: string): Uint8Array {
  let decoded: { prefix: string; words: number[] };
  try {
    decoded = bech32.decode(text as `${string}1${string}`, false);
  } catch {
    return fail('KEY_INVALID', `${what} is not valid Bech32 (bad characters, mixed case or checksum)`);
  }
  check(decoded.prefix === hrp, 'KEY_INVALID', `${what} must start with ${hrp}1`);
  let bytes: Uint8Array;
  try {
    bytes = bech32.fromWords(decoded.words);
  } catch {
    return fail('KEY_INVALID', `${what} has invalid padding`);
  }
  check(bytes.length === KEY_LENGTH, 'KEY_INVALID', `${what} must encode 32 bytes`);
  return bytes;
}

function wrapKey(shared: Uint8Array, share: Uint8Array, recipient: Uint8Array): Uint8Array {
  return hkdf(shared, Buffer.concat([share, recipient]), INFO);
}

/**
 * Recipients' key objects by public key: a reader is encrypted to again and again, each time
 * from a recipient parsed anew (an SDK upload, a header rewrap), and making the object costs
 * more than the agreement itself. Public keys only: nothing secret is kept.
 */
const POINTS = new LRUCache<string, KeyObject>({ max: 4096 });

function recipientPoint(publicKey: Uint8Array): KeyObject {
  const id = Buffer.from(publicKey.buffer, publicKey.byteOffset, publicKey.length).toString('hex');
  let point = POINTS.get(id);
  if (!point) {
    try {
      point = x25519PublicKeyObject(publicKey);
    } catch {
      return fail('KEY_INVALID', 'recipient is not an X25519 point');
    }
    POINTS.set(id, point);
  }
  return point;
}

export class X25519Recipient implements Recipient {
  readonly publicKey: Uint8Array;
  /** The key as OpenSSL's object, made at the first wrap and used for every later one. */
  #point: KeyObject | null = null;

  constructor(publicKey: Uint8Array) {
    check(publicKey.length === KEY_LENGTH, 'KEY_INVALID', 'an X25519 public key is 32 bytes');
    this.publicKey = publicKey;
  }

  static parse(text: string): X25519Recipient {
    return new X25519Recipient(decodeBech32(text.trim(), RECIPIENT_HRP, 'recipient'));
  }

  toString(): string {
    return bech32.encode(RECIPIENT_HRP, bech32.toWords(this.publicKey), false);
  }

  wrapFileKey(fileKey: Uint8Array): Stanza[] {
    const { privateKey: ephemeral, share } = x25519Ephemeral();
    this.#point ??= recipientPoint(this.publicKey);
    const shared = x25519(ephemeral, this.#point);
    check(shared !== null, 'KEY_INVALID', 'recipient is a low-order point');
    const body = aeadSeal(wrapKey(shared, share, this.publicKey), fileKey);
    return [{ type: STANZA_TYPE, args: [encodeUnpadded(share)], body }];
  }
}

/**
 * An identity as OpenSSL holds it, for another thread of this process (postMessage shares the
 * key object, nothing is parsed again there): no secret bytes. Never log it.
 */
export interface HeldX25519Key {
  key: KeyObject;
  publicKey: Uint8Array;
}

export class X25519Identity implements Identity {
  readonly #key: KeyObject;
  /** Null for an identity made from a held key (`held()`): it unwraps, but exports nothing. */
  readonly #secret: Uint8Array | null;
  readonly recipient: X25519Recipient;

  constructor(secret: Uint8Array | HeldX25519Key) {
    if (secret instanceof Uint8Array) {
      check(secret.length === KEY_LENGTH, 'KEY_INVALID', 'an X25519 secret key is 32 bytes');
      this.#secret = secret;
      this.#key = x25519PrivateKey(secret);
      this.recipient = new X25519Recipient(x25519RawPublic(this.#key));
    } else {
      check(
        secret.key.type === 'private' && secret.key.asymmetricKeyType === 'x25519',
        'KEY_INVALID',
        'a held X25519 identity is a private X25519 key object',
      );
      this.#secret = null;
      this.#key = secret.key;
      this.recipient = new X25519Recipient(secret.publicKey);
    }
  }

  /** The identity as its key object and public key, for a worker thread (HeldX25519Key). */
  held(): HeldX25519Key {
    return { key: this.#key, publicKey: this.recipient.publicKey };
  }

  #exportable(): Uint8Array {
    if (!this.#secret) fail('KEY_INVALID', 'an identity made from a held key has no secret bytes to export');
    return this.#secret;
  }

  static generate(): X25519Identity {
    return new X25519Identity(random(KEY_LENGTH));
  }

  static parse(text: string): X25519Identity {
    const trimmed = text.trim();
    check(trimmed === trimmed.toUpperCase(), 'KEY_INVALID', 'an identity is written in upper case');
    return new X25519Identity(decodeBech32(trimmed, IDENTITY_HRP, 'identity'));
  }

  /** A copy of the 32-byte secret, for a KMS that wraps it. Never log it. */
  secretBytes(): Uint8Array {
    return Uint8Array.from(this.#exportable());
  }

  /** The Bech32 secret key. Never log it. */
  toString(): string {
    return bech32.encode(IDENTITY_HRP, bech32.toWords(this.#exportable()), false).toUpperCase();
  }

  unwrapFileKey(stanzas: readonly Stanza[]): Uint8Array | null {
    for (const stanza of stanzas) {
      if (stanza.type !== STANZA_TYPE) continue;
      check(stanza.args.length === 1, 'AGE_STANZA_INVALID', 'an X25519 stanza has exactly two arguments');
      const share = decodeUnpaddedExact(stanza.args[0] as string, KEY_LENGTH);
      check(share !== null, 'AGE_STANZA_INVALID', 'X25519 share is not 32 bytes of canonical base64');
      check(stanza.body.length === FILE_KEY_LENGTH + TAG_LENGTH, 'AGE_STANZA_INVALID', 'X25519 body is not 32 bytes');
      const shared = x25519(this.#key, share);
      check(shared !== null, 'AGE_WEAK_SHARE');
      const fileKey = aeadOpen(wrapKey(shared, share, this.recipient.publicKey), stanza.body);
      if (fileKey !== null) return fileKey;
    }
    return null;
  }
}

function parseKeyLines<T>(text: string, parse: (line: string) => T, what: string): T[] {
  const keys: T[] = [];
  for (const [n, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    try {
      keys.push(parse(line));
    } catch (err) {
      fail('KEY_INVALID', `line ${n + 1} is not ${what}`, { cause: err });
    }
  }
  check(keys.length > 0, 'KEY_INVALID', `no line holds ${what}`);
  return keys;
}

/**
 * Parses an identity file as age-keygen writes it: one identity per line,
 * `#` comments and blank lines ignored.
 */
export function parseIdentityFile(text: string): X25519Identity[] {
  return parseKeyLines(text, X25519Identity.parse, 'an AGE-SECRET-KEY-1… identity');
}

/** Parses a recipients file: one `age1…` per line, `#` comments and blank lines ignored. */
export function parseRecipientsFile(text: string): X25519Recipient[] {
  return parseKeyLines(text, X25519Recipient.parse, 'an age1… recipient');
}
