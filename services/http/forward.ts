/**
 * Forwarding a member's request about a record this node does not hold to
 * the node that does (the ledger says which), and relaying the answer.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { type Dispatcher, request as undiciRequest } from 'undici';
import { fail, isMedvaultError } from '../../errors.ts';
import { FORWARD_HEADER, HEADER } from '../protocol/signing.ts';
import type { MemberRow } from '../vault/metadata.ts';
import type { Vault } from '../vault/vault.ts';

/** Response headers a forwarded fetch passes back to the member. */
const RELAYED = [
  'content-type',
  'content-length',
  'medvault-header-length',
  'medvault-receipt',
  'medvault-content-receipt',
  'medvault-review-id',
];

/**
 * Runs `local` for record `id`; when this node has no such record, forwards
 * the request to the node holding it (the ledger says which) and returns
 * null, the answer relayed.
 */
export async function here<T>(
  request: FastifyRequest,
  reply: FastifyReply,
  vault: Vault,
  id: string,
  local: () => Promise<T>,
): Promise<T | null> {
  try {
    return await local();
  } catch (err) {
    if (isMedvaultError(err, 'RECORD_NOT_FOUND') && (await forwardIfElsewhere(request, reply, vault, id))) return null;
    throw err;
  }
}

/**
 * Forwards a member's request about record `id`, which this node does not
 * hold, to the node holding it, when that is another node, and relays the
 * answer: true when it did; false when the ledger names no other node.
 */
async function forwardIfElsewhere(
  request: FastifyRequest,
  reply: FastifyReply,
  vault: Vault,
  id: string,
): Promise<boolean> {
  const actor = request.member as MemberRow;
  if (actor.node !== null) return false; // a forwarded request is not forwarded again
  const holder = await vault.holderElsewhere(id);
  if (!holder) return false;
  const peer = vault.peers.get(holder);
  if (!peer) fail('PEER_UNKNOWN', `record ${id} is held by node ${holder}`);
  const memberSignature = request.headers[HEADER.signature] as string;
  const headers: Record<string, string> = {
    [FORWARD_HEADER.via]: vault.nodeId,
    [FORWARD_HEADER.signature]: vault.signForward(actor.id, memberSignature),
  };
  for (const name of Object.values(HEADER)) headers[name] = request.headers[name] as string;
  // A JSON body (break-glass: the reason) goes as it came: the member's signature covers its hash.
  const body = request.rawBody ?? undefined;
  if (body) headers['content-type'] = 'application/json';
  let response: Dispatcher.ResponseData;
  try {
    // The peer has the peer timeout (30 s unless configured) to answer, then as long as its
    // record takes with no pause that long in it: a large record is relayed whole, however long
    // it takes (fetch's abort signal used to cut every relay at 30 s). The body passes through
    // as a Node stream, not a web stream.
    response = await undiciRequest(`${peer.url.replace(/\/$/, '')}${request.url}`, {
      method: request.method as Dispatcher.HttpMethod,
      headers,
      body: body ?? null,
      headersTimeout: vault.peers.timeoutMs,
      bodyTimeout: vault.peers.timeoutMs,
      dispatcher: vault.peers.dispatcher(peer),
    });
  } catch (err) {
    fail('PEER_UNAVAILABLE', `node ${holder} at ${peer.url}: ${(err as Error).message}`, { cause: err });
  }
  reply.code(response.statusCode).header('medvault-held-by', holder);
  for (const name of RELAYED) {
    const value = response.headers[name];
    if (typeof value === 'string') reply.header(name, value);
  }
  // The reply is sent, not returned: a reply is thenable, and an async function would wait on it.
  void reply.send(response.body);
  return true;
}
