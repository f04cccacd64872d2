/**
 * Ledger events: what the vault anchors. Each type has a closed JSON schema
 * (no property beyond those listed), and every value is a random id, a hash,
 * a key fingerprint, a keyed pseudonym, a short code, a number or a flag:
 * never a name, a national id, free text or a low-entropy hash of one.
 *
 * The byte encoding is RFC 8785 canonical JSON (sorted keys, no whitespace),
 * so any member, in any language, re-derives the same leaf from an event.
 */
import { createHash } from 'node:crypto';
import { Ajv, type ValidateFunction } from 'ajv';
import canonicalize from 'canonicalize';
import { fail } from '../errors.ts';
import { ROLES, SCHEMA } from '../formats.ts';

const ID = { type: 'string', format: 'hex32' }; // 128-bit random id or key fingerprint
const HASH = { type: 'string', format: 'hex64' }; // SHA-256, or an HMAC-SHA-256 pseudonym
const CODE = SCHEMA.purpose; // a purpose or reason code
const TIME = { type: 'integer', minimum: 0, maximum: 8.64e15 }; // milliseconds since the epoch
/**
 * Fields an event may leave out, in groups: each group all together or none
 * (the rest are required).
 * - member.added: the directory's public keys, absent for members anchored before it.
 * - record.created: `subject` only in events written before subjects left the ledger
 *   (accepted when read, never written now); `custodian` in every event written since.
 * - node.joined: `tls` only for a node that serves TLS.
 * - key.rotated: the new public keys only for a reader in the consortium's directory.
 */
const OPTIONAL_GROUPS: Partial<Record<string, readonly (readonly string[])[]>> = {
  'member.added': [['signingKey', 'recipient', 'node']],
  'record.created': [['subject'], ['custodian']],
  'node.joined': [['tls']],
  'key.rotated': [['signingKey', 'recipient']],
};
const OPTIONAL: Partial<Record<string, readonly string[]>> = Object.fromEntries(
  Object.entries(OPTIONAL_GROUPS).map(([type, groups]) => [type, (groups ?? []).flat()]),
);
const ROLE = { enum: ROLES };

const FIELDS = {
  'record.created': {
    recordId: ID,
    ciphertextHash: HASH,
    headerHash: HASH,
    size: { type: 'integer', minimum: 0 },
    uploader: ID,
    // Legacy only: the subject's pseudonym linked every record of a patient for ever; no longer written.
    subject: HASH,
    node: ID,
    // The fingerprint of the subject's custodian key the record is wrapped to: an erasure
    // certificate's destroyed key is checked against it. Not personal: a random key's id.
    custodian: ID,
  },
  'record.reencrypted': {
    recordId: ID,
    ciphertextHash: HASH,
    headerHash: HASH,
    size: { type: 'integer', minimum: 0 },
    by: ID,
  },
  'record.accessed': { recordId: ID, reader: ID, node: ID },
  'acl.granted': { recordId: ID, reader: ID, grantor: ID, purpose: CODE, expiresAt: TIME },
  'acl.revoked': { recordId: ID, reader: ID, revoker: ID, reencrypted: { type: 'boolean' } },
  'access.emergency': { recordId: ID, reader: ID, reasonDigest: HASH },
  'record.erased': { recordId: ID, ciphertextHash: HASH, dpo: ID, requestId: ID },
  'erasure.filed': {
    requestId: ID,
    dpo: ID,
    scope: { enum: ['subject', 'record'] },
    // A record id (scope record) or, for a subject, a commitment to it:
    // SHA-256("medvault-erasure-target-v1\n" ‖ requestId ‖ "\n" ‖ pseudonym), which the nodes
    // given the pseudonym can check and nobody else can link (subjectCommitment below).
    // Events written before the commitment carried the pseudonym itself.
    target: { type: 'string', pattern: '^([0-9a-f]{32}|[0-9a-f]{64})$' },
    executeAt: TIME,
  },
  'erasure.cancelled': { requestId: ID, by: ID },
  'member.added': {
    member: ID,
    role: ROLE,
    by: ID,
    // The consortium's member directory (services/vault/consortium-index.ts): a node publishes its own
    // members' public keys (no name) and itself as their node. Optional: members anchored
    // before the directory existed, and members of other nodes registered by hand, have none.
    signingKey: HASH, // the Ed25519 public key, hex (member is its fingerprint)
    recipient: HASH, // the X25519 public key of the member's age recipient, hex
    node: ID,
  },
  'member.removed': { member: ID, by: ID },
  // An admin gives (granted: true) or withdraws a capability; 'emergency' is break-glass access.
  'member.capability': { member: ID, capability: { enum: ['emergency'] }, granted: { type: 'boolean' }, by: ID },
  // A DPO closed the review of a break-glass access, with its outcome (no free text).
  'review.closed': { recordId: ID, reviewId: ID, dpo: ID, outcome: { enum: ['justified', 'unjustified'] } },
  // A member's signing and decryption keys replaced (by itself, or by an admin for a lost key):
  // its id stays, its grants carry over (each header rewrapped to the new recipient), the
  // previous key signs nothing again. The keys' fingerprints; for a reader in the directory
  // (member.added), its new public keys too, so the nodes it is granted records at rewrap them.
  'key.rotated': { member: ID, previousKey: ID, newKey: ID, by: ID, signingKey: HASH, recipient: HASH },
  // The consortium's nodes (services/vault/consortium.ts). A node of the consortium invites
  // another node's key (admin `by`), committing to the sealed invite it handed over
  // (SHA-256 of its plaintext, which holds a secret: nothing can be learned from the digest);
  // the invited node announces itself, in a block it signs, with its public keys and the URL
  // its peers reach it at (again when the URL changes); a node leaves the same way.
  'node.invited': { node: ID, by: ID, invite: HASH },
  // `tls`: the SHA-256 fingerprint of the certificate the node serves with (services/protocol/tls.ts),
  // which its peers pin; absent for a node without TLS.
  'node.joined': {
    node: ID,
    signingKey: HASH,
    recipient: HASH,
    url: { type: 'string', format: 'nodeUrl' },
    tls: HASH,
  },
  'node.left': { node: ID },
  // A joined node's vote (its admin `by`) to remove another joined node from the consortium: once
  // more than half of the other joined nodes voted, in blocks each signed itself, the node is
  // removed (services/vault/consortium-index.ts); nobody takes it as a peer any more.
  'node.removal': { node: ID, by: ID },
  // A node replaces its key (anchor/trusted-keys.ts), in a block its old key signs: the new key's
  // id and public keys (hex), and the new key's signature accepting the hand-over (hex).
  'node.key': {
    node: ID,
    successor: ID,
    signingKey: HASH,
    recipient: HASH,
    proof: { type: 'string', pattern: '^[0-9a-f]{128}$' },
  },
} as const;

export type EventType = keyof typeof FIELDS;
export const EVENT_TYPES = Object.keys(FIELDS) as EventType[];

/** An event: its type, when it happened (ms), and the fields of its type. */
export interface LedgerEvent {
  type: EventType;
  at: number;
  [field: string]: string | number | boolean;
}

// Lower-case hex of a given length, checked by decoding it (a hex write stops
// at the first pair that is not hex): 3-4x cheaper here than a regular
// expression, and every event carries four to seven of these.
// Upper-case digits, which the decode accepts, are refused by a regular expression test,
// which allocates nothing (toLowerCase made a copy of every value).
const HEX_SCRATCH = Buffer.allocUnsafe(32);
const UPPER_HEX = /[A-F]/;
const lowerHex = (digits: number) => (value: string) =>
  value.length === digits && HEX_SCRATCH.write(value, 0, 'hex') === digits / 2 && !UPPER_HEX.test(value);

const ajv = new Ajv({ allErrors: false, strict: true });
ajv.addFormat('hex32', { type: 'string', validate: lowerHex(32) });
ajv.addFormat('hex64', { type: 'string', validate: lowerHex(64) });
// A node's API address: http(s), a host and an optional port and path, nothing else (no credentials, query or space).
ajv.addFormat('nodeUrl', {
  type: 'string',
  validate: (v: string) => /^https?:\/\/[a-z0-9.[\]:-]{1,200}(\/[\w./-]{0,200})?$/i.test(v),
});
const validators = new Map<string, ValidateFunction>(
  Object.entries(FIELDS).map(([type, fields]) => {
    const optional = OPTIONAL[type] ?? [];
    // Within a group, the first field requires the rest and each of the rest the first.
    const dependencies = Object.fromEntries(
      (OPTIONAL_GROUPS[type] ?? [])
        .filter((group) => group.length > 1)
        .flatMap(([first, ...rest]) => [[first as string, rest], ...rest.map((k) => [k, [first as string]])]),
    );
    return [
      type,
      ajv.compile({
        type: 'object',
        properties: { type: { const: type }, at: TIME, ...fields },
        required: ['type', 'at', ...Object.keys(fields).filter((k) => !optional.includes(k))],
        ...(Object.keys(dependencies).length > 0 ? { dependencies } : {}),
        additionalProperties: false,
      }),
    ];
  }),
);

/**
 * What an erasure.filed event names for a subject: a commitment to the pseudonym under
 * the request id, so the ledger never carries the pseudonym (nor links this erasure to
 * the patient's other erasures).
 */
export function subjectCommitment(requestId: string, subject: string): string {
  return createHash('sha256').update(`medvault-erasure-target-v1\n${requestId}\n${subject}`, 'utf8').digest('hex');
}

/** Throws EVENT_INVALID unless `value` is a well-formed event of a known type. */
export function validateEvent(value: unknown): asserts value is LedgerEvent {
  const type = (value as { type?: unknown } | null)?.type;
  const validate = typeof type === 'string' ? validators.get(type) : undefined;
  if (!validate) fail('EVENT_INVALID', `unknown event type ${JSON.stringify(type)}`);
  if (!validate(value)) {
    const [first] = validate.errors ?? [];
    fail('EVENT_INVALID', `${type}: ${first?.instancePath || 'event'} ${first?.message ?? 'is invalid'}`);
  }
}

/**
 * How a validated value is written in canonical JSON: as it is between quotes
 * (a string every character of which is printable ASCII other than `"` and
 * `\`, which RFC 8785 writes unescaped), or as JSON.stringify writes it.
 * Numbers (safe integers) and flags are concatenated: ECMAScript's ToString
 * is RFC 8785's number form.
 */
function valueWriter(key: string, schema: Record<string, unknown>): string {
  const at = `e[${JSON.stringify(key)}]`;
  const plain = (value: unknown) => typeof value === 'string' && /^[\x20-\x21\x23-\x5b\x5d-\x7e]*$/.test(value);
  if (schema.type === 'integer' || schema.type === 'boolean') return `${at}`;
  if (schema.format === 'hex32' || schema.format === 'hex64') return `'"' + ${at} + '"'`;
  if ('const' in schema && plain(schema.const)) return `'"' + ${at} + '"'`;
  if (Array.isArray(schema.enum) && schema.enum.every(plain)) return `'"' + ${at} + '"'`;
  return `JSON.stringify(${at})`; // anything else is escaped as it must be
}

/**
 * The canonical JSON writer of one event type, compiled once from its field
 * table: the keys in sorted order, each value written by valueWriter, an
 * optional field only when present. It assumes a validated event (exactly
 * these keys, each value of its schema), which eventJson checks first.
 */
function compileWriter(type: string, fields: Record<string, Record<string, unknown>>): (e: LedgerEvent) => string {
  const optional = OPTIONAL[type] ?? [];
  const schemas: Record<string, Record<string, unknown>> = { type: { const: type }, at: TIME, ...fields };
  const keys = Object.keys(schemas).sort();
  if (optional.includes(keys[0] as string)) throw new Error(`${type}: the first key in order must be required`);
  const pieces = keys.map((key, i) => {
    const piece = `${JSON.stringify(`${i === 0 ? '{' : ','}${JSON.stringify(key)}:`)} + ${valueWriter(key, schemas[key] as Record<string, unknown>)}`;
    return optional.includes(key) ? `(e[${JSON.stringify(key)}] === undefined ? '' : ${piece})` : piece;
  });
  // Generated code (as ajv's validators are): straight-line concatenation is 5x faster than
  // copying the event in key order for JSON.stringify, the ledger's hottest step.
  return new Function('e', `return ${pieces.join(' + ')} + '}';`) as (e: LedgerEvent) => string;
}

const WRITERS = new Map<string, (e: LedgerEvent) => string>(
  Object.entries(FIELDS).map(([type, fields]) => [
    type,
    compileWriter(type, fields as unknown as Record<string, Record<string, unknown>>),
  ]),
);

/**
 * The canonical JSON of an event (validating it): RFC 8785 output, which for
 * a valid event (a flat object of safe-character strings, safe integers and
 * flags) is its keys in sorted order with the values as they are; the tests
 * check it against the general `canonicalize` for every type.
 */
export function eventJson(event: LedgerEvent): string {
  validateEvent(event);
  return (WRITERS.get(event.type) as (e: LedgerEvent) => string)(event);
}

/** The canonical bytes of an event: the Merkle leaf data. */
export function encodeEvent(event: LedgerEvent): Uint8Array {
  return Buffer.from(eventJson(event), 'utf8');
}

/** Canonical JSON of any plain value (blocks, receipts, certificates). */
export function canonicalJson(value: unknown): string {
  return canonicalize(value) as string;
}
