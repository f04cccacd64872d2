/** Events for tests: random ids and hashes, one well-formed event of each type. */
import { randomBytes } from 'node:crypto';
import type { EventType, LedgerEvent } from '../../anchor/events.ts';

// Ids and hashes drawn from a pool refilled 64 KiB at a time: one randomBytes
// call per few hundred events, so generating events costs little in benchmarks.
let pool = Buffer.alloc(0);
function randomHex(bytes: number): string {
  if (pool.length < bytes) pool = randomBytes(64 * 1024);
  const out = pool.subarray(0, bytes).toString('hex');
  pool = pool.subarray(bytes);
  return out;
}

export const id = () => randomHex(16);
export const hash = () => randomHex(32);

export function sampleEvent(type: EventType = 'record.created', at = Date.now()): LedgerEvent {
  const fields: Record<EventType, Record<string, string | number | boolean>> = {
    'record.created': {
      recordId: id(),
      ciphertextHash: hash(),
      headerHash: hash(),
      size: 1234,
      uploader: id(),
      node: id(),
      custodian: id(),
    },
    'record.reencrypted': { recordId: id(), ciphertextHash: hash(), headerHash: hash(), size: 99, by: id() },
    'record.accessed': { recordId: id(), reader: id(), node: id() },
    'acl.granted': { recordId: id(), reader: id(), grantor: id(), purpose: 'treatment', expiresAt: at + 86_400_000 },
    'acl.revoked': { recordId: id(), reader: id(), revoker: id(), reencrypted: false },
    'access.emergency': { recordId: id(), reader: id(), reasonDigest: hash() },
    'record.erased': { recordId: id(), ciphertextHash: hash(), dpo: id(), requestId: id() },
    'erasure.filed': { requestId: id(), dpo: id(), scope: 'subject', target: hash(), executeAt: at + 86_400_000 },
    'erasure.cancelled': { requestId: id(), by: id() },
    'member.added': { member: id(), role: 'reader', by: id() },
    'member.removed': { member: id(), by: id() },
    'key.rotated': { member: id(), previousKey: id(), newKey: id(), by: id() },
    'member.capability': { member: id(), capability: 'emergency', granted: true, by: id() },
    'review.closed': { recordId: id(), reviewId: id(), dpo: id(), outcome: 'justified' },
    'node.invited': { node: id(), by: id(), invite: hash() },
    'node.joined': { node: id(), signingKey: hash(), recipient: hash(), url: 'https://node-b.example:7400' },
    'node.left': { node: id() },
    'node.removal': { node: id(), by: id() },
    'node.key': { node: id(), successor: id(), signingKey: hash(), recipient: hash(), proof: hash() + hash() },
  };
  return { type, at, ...fields[type] } as LedgerEvent;
}
