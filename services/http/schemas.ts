/** JSON-schema pieces the routes share (formats from formats.ts). */
import { SCHEMA } from '../../formats.ts';

export const ID = SCHEMA.id;
export const HASH = SCHEMA.hash;
export const PURPOSE = SCHEMA.purpose;
export const ROLE = SCHEMA.role;
export const TIME = { type: 'integer', minimum: 0 };
export const DELAY = { type: 'integer', minimum: 0, maximum: 90 * 86_400 };
export const ERROR = {
  type: 'object',
  properties: {
    code: { type: 'string' },
    message: { type: 'string' },
    recordId: { type: 'string', description: 'OUTCOME_PENDING: the record to ask about later' },
    requestId: { type: 'string', description: 'OUTCOME_PENDING: the erasure request to ask about later' },
    memberId: { type: 'string', description: 'OUTCOME_PENDING: the member whose key rotation the ledger settles' },
  },
  required: ['code', 'message'],
};
export const MEMBER = {
  type: 'object',
  properties: {
    id: ID,
    name: { type: 'string' },
    role: ROLE,
    signingKey: { type: 'string' },
    keyId: { ...ID, description: 'the id of the key it signs with now (its id until it rotates its keys)' },
    recipient: { type: 'string' },
    node: { type: ['string', 'null'], description: "a member of another node: that node's id" },
    addedAt: TIME,
    removedAt: { type: ['integer', 'null'] },
    emergencyAccess: { type: 'boolean', description: 'may open records by break-glass' },
  },
};
/** Params of a route on one record (or erasure, review, member) id. */
export const ID_PARAMS = { type: 'object', required: ['id'], properties: { id: ID } };
export const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, ERROR]));
export const STANDARD_ERRORS = errors(400, 401, 403, 404, 429, 503);
/** A 201 answer's body, whatever its fields (the OpenAPI document's success code). */
export const CREATED = { type: 'object', additionalProperties: true };
