/**
 * The identifier and code formats every layer shares, written once: record,
 * request and member ids, hashes and pseudonyms, purposes, member names and
 * roles. Each comes as a regular expression (for code) and as the source of
 * a JSON-schema `pattern` (for ajv and fastify), built from the same string.
 */

/** A random 128-bit id, or an Ed25519 key's fingerprint: 32 lower-case hex digits. */
export const ID_SOURCE = '^[0-9a-f]{32}$';
/** A SHA-256 digest or an HMAC-SHA-256 pseudonym: 64 lower-case hex digits. */
export const HASH_SOURCE = '^[0-9a-f]{64}$';
/** A purpose of use (or any short code): lower-case, starts with a letter, at most 40 characters. */
export const PURPOSE_SOURCE = '^[a-z][a-z0-9._-]{0,39}$';
/** A member's name: lower-case, at most 63 characters. */
export const MEMBER_NAME_SOURCE = '^[a-z0-9][a-z0-9._-]{0,62}$';

export const ID = new RegExp(ID_SOURCE);
export const HASH = new RegExp(HASH_SOURCE);
export const PURPOSE = new RegExp(PURPOSE_SOURCE);
export const MEMBER_NAME = new RegExp(MEMBER_NAME_SOURCE);

export type Role = 'uploader' | 'reader' | 'dpo' | 'admin';
export const ROLES: readonly Role[] = ['uploader', 'reader', 'dpo', 'admin'];

/** JSON-schema fragments for the same formats. */
export const SCHEMA = {
  id: { type: 'string', pattern: ID_SOURCE },
  hash: { type: 'string', pattern: HASH_SOURCE },
  purpose: { type: 'string', pattern: PURPOSE_SOURCE },
  memberName: { type: 'string', pattern: MEMBER_NAME_SOURCE },
  role: { type: 'string', enum: ROLES },
} as const;

/** The SQL CHECK list of the roles, for the metadata schema. */
export const ROLES_SQL = ROLES.map((r) => `'${r}'`).join(', ');
