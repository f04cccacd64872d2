/**
 * Orders one node sends another, node to node in a POST body, never on the
 * ledger: they are the one place a subject's pseudonym travels, and only to
 * the nodes that can already compute it. The receiving node checks the
 * sender's signature by the key it knows for that peer (the ledger's
 * node.joined, or configuration) before it does anything.
 *
 * - An erasure order: the node that executed a subject's erasure tells each
 *   other node to erase its own records of that subject; the receiver also
 *   finds the filing receipt on its own view of the shared ledger and checks
 *   the pseudonym against the commitment the filing carries.
 * - A report order: a DPO's subject access report (GDPR Art. 15) asks each
 *   other node for its records of the subject and their trails; the
 *   receiver also refuses an order older than five minutes.
 *
 * Each signature covers the order's domain ("medvault-erasure-order-v1\n",
 * "medvault-report-order-v1\n") followed by the RFC 8785 canonical JSON of
 * the order without its `sig`.
 */
import { Ajv, type ValidateFunction } from 'ajv';
import { canonicalJson } from '../../anchor/events.ts';
import type { Receipt } from '../../anchor/receipt.ts';
import { keyFingerprint, type SigningKey, verifySignature } from '../../crypto/ed25519.ts';
import { type ErrorCode, fail } from '../../errors.ts';
import { SCHEMA } from '../../formats.ts';

/** What every order carries besides its own fields: when, and who signed it with what key. */
interface Signed {
  at: number;
  signer: string;
  signerKey: string;
  sig: string;
}

export interface ErasureOrder extends Signed {
  v: 1;
  type: 'medvault.erasure-order';
  requestId: string;
  /** The subject's pseudonym (never on the ledger: erasure.filed carries a commitment to it). */
  subject: string;
  /** The receipt of the request's erasure.filed. */
  filed: Receipt;
}

export interface ReportOrder extends Signed {
  v: 1;
  type: 'medvault.report-order';
  /** A fresh random id, so that no two orders are the same. */
  requestId: string;
  /** The subject's pseudonym. */
  subject: string;
  /** The DPO who asked for the report (a member of the sending node). */
  dpo: string;
}

const ajv = new Ajv({ strict: true });
const SIGNED = {
  at: { type: 'integer', minimum: 0 },
  signer: SCHEMA.id,
  signerKey: { type: 'string', pattern: '^[A-Za-z0-9+/]{43}=$' },
  sig: { type: 'string', pattern: '^[A-Za-z0-9+/]{85}[AQgw]==$' },
};
const shape = (type: string, fields: Record<string, unknown>) =>
  ajv.compile({
    type: 'object',
    additionalProperties: false,
    required: ['v', 'type', ...Object.keys(fields), ...Object.keys(SIGNED)],
    properties: { v: { const: 1 }, type: { const: type }, ...fields, ...SIGNED },
  });

interface Kind {
  domain: string;
  type: string;
  validate: ValidateFunction;
  /** The code a refusal carries. */
  code: ErrorCode;
}

const ERASURE: Kind = {
  domain: 'medvault-erasure-order-v1\n',
  type: 'medvault.erasure-order',
  validate: shape('medvault.erasure-order', { requestId: SCHEMA.id, subject: SCHEMA.hash, filed: { type: 'object' } }),
  code: 'COSIGN_REFUSED',
};
const REPORT: Kind = {
  domain: 'medvault-report-order-v1\n',
  type: 'medvault.report-order',
  validate: shape('medvault.report-order', { requestId: SCHEMA.id, subject: SCHEMA.hash, dpo: SCHEMA.id }),
  code: 'FORBIDDEN',
};

const signedBytes = (kind: Kind, order: object) => {
  const { sig: _omit, ...unsigned } = order as Signed;
  return Buffer.from(kind.domain + canonicalJson(unsigned), 'utf8');
};

function sign<T extends Signed>(kind: Kind, body: object, key: SigningKey, at: number): T {
  const unsigned = {
    v: 1 as const,
    type: kind.type,
    ...body,
    at,
    signer: key.id,
    signerKey: Buffer.from(key.publicKey).toString('base64'),
  };
  return { ...unsigned, sig: Buffer.from(key.sign(signedBytes(kind, unsigned))).toString('base64') } as unknown as T;
}

/** An order's form and its signature by a node among `peers` (id → its base64 key); `kind.code` otherwise. */
function verify<T extends Signed>(kind: Kind, value: unknown, peers: (id: string) => string | undefined): T {
  if (!kind.validate(value)) {
    const [first] = kind.validate.errors ?? [];
    fail(kind.code, `not a ${kind.type}: ${first?.instancePath || 'order'} ${first?.message ?? ''}`);
  }
  const order = value as unknown as T;
  const known = peers(order.signer);
  if (!known) fail(kind.code, `an order from ${order.signer}, which is not a peer of this node`);
  const key = new Uint8Array(Buffer.from(order.signerKey, 'base64'));
  if (order.signerKey !== known || keyFingerprint(key) !== order.signer) {
    fail(kind.code, `the order is not signed by the key this node knows for ${order.signer}`);
  }
  if (!verifySignature(key, signedBytes(kind, order), new Uint8Array(Buffer.from(order.sig, 'base64')))) {
    fail(kind.code, 'the order signature does not verify');
  }
  return order;
}

export function signErasureOrder(
  body: { requestId: string; subject: string; filed: Receipt },
  key: SigningKey,
  at = Date.now(),
): ErasureOrder {
  return sign<ErasureOrder>(ERASURE, body, key, at);
}

/** Checks an erasure order's form and signature (COSIGN_REFUSED); what it orders is checked by the receiver. */
export function verifyErasureOrder(value: unknown, peers: (id: string) => string | undefined): ErasureOrder {
  return verify<ErasureOrder>(ERASURE, value, peers);
}

export function signReportOrder(
  body: { requestId: string; subject: string; dpo: string },
  key: SigningKey,
  at = Date.now(),
): ReportOrder {
  return sign<ReportOrder>(REPORT, body, key, at);
}

/** How old a report order may be when it arrives. */
export const REPORT_ORDER_WINDOW_MS = 5 * 60_000;

/** Checks a report order's form, signature and age (FORBIDDEN). */
export function verifyReportOrder(
  value: unknown,
  peers: (id: string) => string | undefined,
  now = Date.now(),
): ReportOrder {
  const order = verify<ReportOrder>(REPORT, value, peers);
  if (Math.abs(now - order.at) > REPORT_ORDER_WINDOW_MS) fail('FORBIDDEN', 'the report order is stale');
  return order;
}
