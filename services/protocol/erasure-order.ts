/**
 * An erasure order: how the node that executed a subject's erasure tells each
 * of the consortium's other nodes to erase their own records of that subject.
 * It goes node to node in a POST body, never on the ledger: it is the one
 * place the subject's pseudonym travels, and only to the nodes that can
 * already compute it. The receiving node checks the executing node's
 * signature by the key it knows for that peer, finds the filing receipt on
 * its own view of the shared ledger, and checks the pseudonym against the
 * commitment the filing carries before it erases anything.
 *
 * The signature covers "medvault-erasure-order-v1\n" followed by the RFC 8785
 * canonical JSON of the order without its `sig`.
 */
import { Ajv } from 'ajv';
import { canonicalJson } from '../../anchor/events.ts';
import type { Receipt } from '../../anchor/receipt.ts';
import { keyFingerprint, type SigningKey, verifySignature } from '../../crypto/ed25519.ts';
import { fail } from '../../errors.ts';
import { SCHEMA } from '../../formats.ts';

const DOMAIN = 'medvault-erasure-order-v1\n';

export interface ErasureOrder {
  v: 1;
  type: 'medvault.erasure-order';
  requestId: string;
  /** The subject's pseudonym (never on the ledger: erasure.filed carries a commitment to it). */
  subject: string;
  /** The receipt of the request's erasure.filed. */
  filed: Receipt;
  at: number;
  signer: string;
  signerKey: string;
  sig: string;
}

const validateShape = new Ajv({ strict: true }).compile({
  type: 'object',
  additionalProperties: false,
  required: ['v', 'type', 'requestId', 'subject', 'filed', 'at', 'signer', 'signerKey', 'sig'],
  properties: {
    v: { const: 1 },
    type: { const: 'medvault.erasure-order' },
    requestId: SCHEMA.id,
    subject: SCHEMA.hash,
    filed: { type: 'object' },
    at: { type: 'integer', minimum: 0 },
    signer: SCHEMA.id,
    signerKey: { type: 'string', pattern: '^[A-Za-z0-9+/]{43}=$' },
    sig: { type: 'string', pattern: '^[A-Za-z0-9+/]{86}==$' },
  },
});

const signedBytes = (order: Omit<ErasureOrder, 'sig'>) => {
  const { sig: _omit, ...unsigned } = order as ErasureOrder;
  return Buffer.from(DOMAIN + canonicalJson(unsigned), 'utf8');
};

export function signErasureOrder(
  body: { requestId: string; subject: string; filed: Receipt },
  key: SigningKey,
  at = Date.now(),
): ErasureOrder {
  const unsigned = {
    v: 1 as const,
    type: 'medvault.erasure-order' as const,
    ...body,
    at,
    signer: key.id,
    signerKey: Buffer.from(key.publicKey).toString('base64'),
  };
  return { ...unsigned, sig: Buffer.from(key.sign(signedBytes(unsigned))).toString('base64') };
}

/**
 * Checks an order's form and signature, by a node among `peers` (id → its base64 key);
 * COSIGN_REFUSED saying why otherwise. What it orders is checked by the receiving node.
 */
export function verifyErasureOrder(value: unknown, peers: (id: string) => string | undefined): ErasureOrder {
  if (!validateShape(value)) {
    const [first] = validateShape.errors ?? [];
    fail('COSIGN_REFUSED', `not an erasure order: ${first?.instancePath || 'order'} ${first?.message ?? ''}`);
  }
  const order = value as unknown as ErasureOrder;
  const known = peers(order.signer);
  if (!known) fail('COSIGN_REFUSED', `an order from ${order.signer}, which is not a peer of this node`);
  const key = new Uint8Array(Buffer.from(order.signerKey, 'base64'));
  if (order.signerKey !== known || keyFingerprint(key) !== order.signer) {
    fail('COSIGN_REFUSED', `the order is not signed by the key this node knows for ${order.signer}`);
  }
  if (!verifySignature(key, signedBytes(order), new Uint8Array(Buffer.from(order.sig, 'base64')))) {
    fail('COSIGN_REFUSED', 'the order signature does not verify');
  }
  return order;
}
