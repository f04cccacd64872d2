/**
 * Request authentication: every request but the public ones must be signed
 * by an active member's Ed25519 key (services/protocol/signing.ts), within
 * `window` of the node's clock, never before the node started (so a restart
 * cannot be used to replay), with a nonce used once. A member of another
 * node must come forwarded by that node, whose signature covers the member's.
 */
import type { FastifyRequest } from 'fastify';
import { verifySignature, verifySignatureAsync } from '../../crypto/ed25519.ts';
import { fail } from '../../errors.ts';
import { ID } from '../../formats.ts';
import { bodyHash, FORWARD_HEADER, forwardMessage, HEADER, requestMessage } from '../protocol/signing.ts';
import { peerFingerprint } from '../protocol/tls.ts';
import type { MemberRow } from '../vault/metadata.ts';
import type { Vault } from '../vault/vault.ts';

export interface AuthState {
  startedAt: number;
  window: number;
  /** nonce -> expiry */
  seen: Map<string, number>;
}

/** The exact form of each signature header: one value, canonical, nothing around it. */
const FORM: Record<keyof typeof HEADER, RegExp> = {
  key: ID,
  time: /^[1-9][0-9]{0,15}$/,
  nonce: ID,
  body: /^(?:[0-9a-f]{64}|UNSIGNED-PAYLOAD)$/,
  // 64 bytes, canonical base64: the last character before the padding carries 2 bits and 4 zero bits
  signature: /^[A-Za-z0-9+/]{85}[AQgw]==$/,
};
const FORWARD_FORM = { via: ID, signature: /^[A-Za-z0-9+/]{85}[AQgw]==$/ };

/** The signature headers of a request, each checked to be present once and in its exact form. */
export interface SignatureHeaders {
  values: Record<keyof typeof HEADER, string>;
  via?: string;
  viaSignature?: string;
}

/**
 * Reads the signature headers from `distinct` (each header name → every value it was sent
 * with, as Node's headersDistinct): AUTH_REQUIRED when one is missing, AUTH_INVALID when one
 * is repeated or not exactly in its form (canonical base64, lower-case hex, no junk). Pure:
 * the fuzz suite feeds it random and mutated headers.
 */
export function readSignatureHeaders(distinct: Record<string, string[] | undefined>): SignatureHeaders {
  const single = (name: string): string | undefined => {
    const values = distinct[name];
    if (values === undefined || values.length === 0) return undefined;
    if (values.length !== 1) fail('AUTH_INVALID', `the ${name} header is sent more than once`);
    return values[0];
  };
  const values = Object.fromEntries(
    (Object.keys(HEADER) as Array<keyof typeof HEADER>).map((k) => [k, single(HEADER[k])]),
  ) as Record<keyof typeof HEADER, string | undefined>;
  if (Object.values(values).some((v) => v === undefined)) {
    fail('AUTH_REQUIRED', `send the ${Object.values(HEADER).join(', ')} headers`);
  }
  for (const [k, form] of Object.entries(FORM) as Array<[keyof typeof HEADER, RegExp]>) {
    if (!form.test(values[k] as string)) fail('AUTH_INVALID', `malformed ${HEADER[k]} header`);
  }
  const via = single(FORWARD_HEADER.via);
  const viaSignature = single(FORWARD_HEADER.signature);
  if (via !== undefined && !FORWARD_FORM.via.test(via)) fail('AUTH_INVALID', `malformed ${FORWARD_HEADER.via} header`);
  if (viaSignature !== undefined && !FORWARD_FORM.signature.test(viaSignature)) {
    fail('AUTH_INVALID', `malformed ${FORWARD_HEADER.signature} header`);
  }
  return {
    values: values as Record<keyof typeof HEADER, string>,
    ...(via === undefined ? {} : { via }),
    ...(viaSignature === undefined ? {} : { viaSignature }),
  };
}

/**
 * What can be checked before a byte of the body is read: every signature header present
 * once and in its exact form, the time fresh, the key an active member's (a member of
 * another node learnt from the ledger first when a configured peer forwards it). A request
 * that fails here is refused without its body being read or parsed.
 */
export async function precheck(request: FastifyRequest, vault: Vault, state: AuthState): Promise<MemberRow> {
  const { values, via } = readSignatureHeaders(request.raw.headersDistinct);
  const at = Number(values.time);
  const now = Date.now();
  if (Math.abs(now - at) > state.window || at < state.startedAt) {
    fail('AUTH_EXPIRED', `signed at ${at}, the node's time is ${now}; sign each request when sending it`);
  }
  const key = values.key as string;
  if (via !== undefined) await vault.learnMember(key, via);
  const member = vault.memberByKey(key);
  if (!member) fail('AUTH_INVALID', 'the key is not an active member key');
  return member;
}

/**
 * The rest, once the body is read: its hash is the signed one (an upload streams: it signs
 * UNSIGNED-PAYLOAD and a trailer, or its hash, checked as it arrives), the signature verifies by the member's key, a member of another node
 * comes forwarded by that node, and the nonce is new.
 */
export async function authenticate(
  request: FastifyRequest,
  vault: Vault,
  state: AuthState,
  member: MemberRow,
): Promise<MemberRow> {
  const header = (name: string) => request.headers[name] as string | undefined;
  const hash = header(HEADER.body) as string;
  const nonce = header(HEADER.nonce) as string;
  const signature = header(HEADER.signature) as string;
  const streamed = request.headers['content-type']?.startsWith('application/octet-stream');
  if (!streamed && hash !== bodyHash(request.rawBody ?? undefined)) {
    fail('AUTH_INVALID', 'the body does not match its signed hash');
  }
  const message = requestMessage({
    method: request.method,
    path: request.url,
    time: header(HEADER.time) as string,
    nonce,
    bodyHash: hash,
  });
  // On the thread pool (the main thread serves other requests meanwhile); the nonce is checked
  // and kept after it, with no await between, so one nonce passes once.
  const valid = await verifySignatureAsync(
    Buffer.from(member.signingKey, 'base64'),
    message,
    new Uint8Array(Buffer.from(signature, 'base64')),
  );
  if (!valid) fail('AUTH_INVALID');
  if (member.node !== null) checkForwarded(member, signature, header, vault, request.raw.socket);
  const now = Date.now();
  if (state.seen.has(nonce)) fail('AUTH_REPLAY');
  if (state.seen.size > 100_000) for (const [n, expiry] of state.seen) if (expiry < now) state.seen.delete(n);
  state.seen.set(nonce, now + 2 * state.window);
  return member;
}

/**
 * A member of another node reaches this node only through that node: the
 * request must carry that node's signature over the member's own (whose
 * signature the caller has checked), by the key this node knows for that peer.
 */
function checkForwarded(
  member: MemberRow,
  memberSignature: string,
  header: (name: string) => string | undefined,
  vault: Vault,
  socket: unknown,
): void {
  const via = header(FORWARD_HEADER.via);
  const signature = header(FORWARD_HEADER.signature);
  if (!via || !signature) fail('AUTH_INVALID', `a member of node ${member.node}: send requests through that node`);
  if (via !== member.node) fail('AUTH_INVALID', `forwarded by ${via}, but the member belongs to node ${member.node}`);
  const peer = vault.peers.get(via);
  const key = peer?.signingKey; // checkPeers made sure it is that node's key
  if (!key) fail('AUTH_INVALID', `forwarded by ${via}, a node whose key this node is not configured with`);
  // A node that serves TLS calls over mutual TLS with the certificate the ledger pins for it.
  if (peer.tls && peerFingerprint(socket) !== peer.tls) {
    fail('AUTH_INVALID', `forwarded by ${via} without the TLS client certificate the ledger names for it`);
  }
  const valid = verifySignature(
    Buffer.from(key, 'base64'),
    forwardMessage(via, member.id, memberSignature),
    new Uint8Array(Buffer.from(signature, 'base64')),
  );
  if (!valid) fail('AUTH_INVALID', 'the forwarding signature does not verify');
}
