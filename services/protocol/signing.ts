/**
 * Signed requests: a member proves each request with its Ed25519 key. No
 * shared secret, no bearer token: a captured request is useless after its
 * window, and inside it the nonce makes it single-use.
 *
 * The signed message is
 *   "medvault-request-v1\n" METHOD "\n" PATH?QUERY "\n" TIME "\n" NONCE "\n" BODY-SHA256
 * where TIME is milliseconds since the epoch, NONCE 32 hex digits, and
 * BODY-SHA256 the hex SHA-256 of the body, or "UNSIGNED-PAYLOAD" for a
 * streamed upload. A streamed upload is signed end to end by a trailer sent
 * after its last byte (BODY_TRAILER): the member's signature over
 *   "medvault-body-v1\n" REQUEST-SIGNATURE "\n" SHA-256 OF EVERY BODY BYTE
 * which binds the bytes to that very request; the node checks it before it
 * keeps or anchors anything, so a relay cannot swap the ciphertext. A client
 * that cannot send trailers (a browser) and holds the whole ciphertext before
 * sending signs its SHA-256 as BODY-SHA256 instead; the node checks the bytes
 * against it as they arrive, with the same effect.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { SigningKey } from '../../crypto/ed25519.ts';

export const HEADER = {
  key: 'medvault-key',
  time: 'medvault-time',
  nonce: 'medvault-nonce',
  body: 'medvault-content-sha256',
  signature: 'medvault-signature',
} as const;

/**
 * A fetch one node forwards for its member to the node holding the record
 * carries the member's own signature headers unchanged, and these: the
 * forwarding node's id and its signature over forwardMessage.
 */
export const FORWARD_HEADER = {
  via: 'medvault-via',
  signature: 'medvault-via-signature',
} as const;

export const UNSIGNED_PAYLOAD = 'UNSIGNED-PAYLOAD';
/** The HTTP trailer that signs a streamed upload's bytes (module comment). */
export const BODY_TRAILER = 'medvault-body-signature';
const DOMAIN = 'medvault-request-v1';

export interface SignedParts {
  method: string;
  path: string;
  time: string;
  nonce: string;
  bodyHash: string;
}

export function requestMessage(parts: SignedParts): Uint8Array {
  return Buffer.from(
    [DOMAIN, parts.method.toUpperCase(), parts.path, parts.time, parts.nonce, parts.bodyHash].join('\n'),
    'utf8',
  );
}

export function bodyHash(body: Uint8Array | string | undefined): string {
  return createHash('sha256')
    .update(body ?? '')
    .digest('hex');
}

/** The headers that sign a request for `path` (with its query string). */
export function signRequest(
  key: SigningKey,
  method: string,
  path: string,
  body: Uint8Array | string | typeof UNSIGNED_PAYLOAD | undefined,
  now = Date.now(),
): Record<string, string> {
  return signRequestHash(key, method, path, body === UNSIGNED_PAYLOAD ? UNSIGNED_PAYLOAD : bodyHash(body), now);
}

/** The same, for a body whose SHA-256 (hex) the caller already has: an upload held whole. */
export function signRequestHash(
  key: SigningKey,
  method: string,
  path: string,
  hash: string,
  now = Date.now(),
): Record<string, string> {
  const parts: SignedParts = {
    method,
    path,
    time: String(now),
    nonce: randomBytes(16).toString('hex'),
    bodyHash: hash,
  };
  return {
    [HEADER.key]: key.id,
    [HEADER.time]: parts.time,
    [HEADER.nonce]: parts.nonce,
    [HEADER.body]: parts.bodyHash,
    [HEADER.signature]: Buffer.from(key.sign(requestMessage(parts))).toString('base64'),
  };
}

/**
 * What a forwarding node signs: that it relays this member's request, whose
 * own signature covers the method, path, time, nonce and body.
 *   "medvault-forward-v1\n" VIA-NODE-ID "\n" MEMBER-ID "\n" MEMBER-SIGNATURE
 */
export function forwardMessage(via: string, member: string, memberSignature: string): Uint8Array {
  return Buffer.from(['medvault-forward-v1', via, member, memberSignature].join('\n'), 'utf8');
}

/** What a member signs in an upload's trailer: its request signature and the body's SHA-256 (hex). */
export function bodyMessage(requestSignature: string, bodySha256: string): Uint8Array {
  return Buffer.from(['medvault-body-v1', requestSignature, bodySha256].join('\n'), 'utf8');
}
