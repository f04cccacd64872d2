/**
 * Request authentication: every request but the public ones must be signed
 * by an active member's Ed25519 key (services/protocol/signing.ts), within
 * `window` of the node's clock, never before the node started (so a restart
 * cannot be used to replay), with a nonce used once. A member of another
 * node must come forwarded by that node, whose signature covers the member's.
 */
import type { FastifyRequest } from 'fastify';
import { verifySignature } from '../../crypto/ed25519.ts';
import { fail } from '../../errors.ts';
import { ID } from '../../formats.ts';
import {
  bodyHash,
  FORWARD_HEADER,
  forwardMessage,
  HEADER,
  requestMessage,
  UNSIGNED_PAYLOAD,
} from '../protocol/signing.ts';
import type { MemberRow } from '../vault/metadata.ts';
import type { Vault } from '../vault/vault.ts';

export interface AuthState {
  startedAt: number;
  window: number;
  /** nonce -> expiry */
  seen: Map<string, number>;
}

export function authenticate(request: FastifyRequest, vault: Vault, state: AuthState): MemberRow {
  const header = (name: string) => {
    const value = request.headers[name];
    return typeof value === 'string' ? value : undefined;
  };
  const key = header(HEADER.key);
  const time = header(HEADER.time);
  const nonce = header(HEADER.nonce);
  const hash = header(HEADER.body);
  const signature = header(HEADER.signature);
  if (!key || !time || !nonce || !hash || !signature)
    fail('AUTH_REQUIRED', `send the ${Object.values(HEADER).join(', ')} headers`);
  if (!ID.test(nonce) || !/^[0-9]{1,16}$/.test(time)) fail('AUTH_INVALID', 'malformed nonce or time');
  const at = Number(time);
  const now = Date.now();
  if (Math.abs(now - at) > state.window || at < state.startedAt) {
    fail('AUTH_EXPIRED', `signed at ${at}, the node's time is ${now}; sign each request when sending it`);
  }
  const member = vault.member(key);
  if (!member) fail('AUTH_INVALID', 'the key is not an active member key');
  const streamed = request.headers['content-type']?.startsWith('application/octet-stream');
  const expected = streamed ? UNSIGNED_PAYLOAD : bodyHash(request.rawBody ?? undefined);
  if (hash !== expected) fail('AUTH_INVALID', 'the body does not match its signed hash');
  const message = requestMessage({ method: request.method, path: request.url, time, nonce, bodyHash: hash });
  const valid = verifySignature(
    Buffer.from(member.signingKey, 'base64'),
    message,
    new Uint8Array(Buffer.from(signature, 'base64')),
  );
  if (!valid) fail('AUTH_INVALID');
  if (member.node !== null) checkForwarded(member, signature, header, vault);
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
): void {
  const via = header(FORWARD_HEADER.via);
  const signature = header(FORWARD_HEADER.signature);
  if (!via || !signature) fail('AUTH_INVALID', `a member of node ${member.node}: send requests through that node`);
  if (via !== member.node) fail('AUTH_INVALID', `forwarded by ${via}, but the member belongs to node ${member.node}`);
  const key = vault.peers.get(via)?.signingKey; // checkPeers made sure it is that node's key
  if (!key) fail('AUTH_INVALID', `forwarded by ${via}, a node whose key this node is not configured with`);
  const valid = verifySignature(
    Buffer.from(key, 'base64'),
    forwardMessage(via, member.id, memberSignature),
    new Uint8Array(Buffer.from(signature, 'base64')),
  );
  if (!valid) fail('AUTH_INVALID', 'the forwarding signature does not verify');
}
