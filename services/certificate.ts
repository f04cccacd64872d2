/**
 * Erasure certificates: what an erasure destroyed, signed by the node that
 * executed it, with the ledger receipt of every tombstone. Anyone verifies
 * one offline: the signature under the signer key it names, and each
 * tombstone receipt (a `record.erased` event for that very record, ciphertext
 * hash and request, in a signed block).
 *
 * The signature covers "medvault-erasure-certificate-v1\n" followed by the
 * RFC 8785 canonical JSON of the certificate without its `sig`.
 */
import { Ajv } from 'ajv';
import { canonicalJson } from '../anchor/events.ts';
import { type Receipt, verifyReceipt } from '../anchor/receipt.ts';
import { keyFingerprint, type SigningKey, verifySignature } from '../crypto/ed25519.ts';
import { fail, isMedvaultError } from '../errors.ts';

const DOMAIN = 'medvault-erasure-certificate-v1\n';

export interface StoreConfirmation {
  ref: string;
  removed: boolean;
  confirmed: string;
}

export interface ErasedRecord {
  recordId: string;
  ciphertextHash: string;
  stores: StoreConfirmation[];
  tombstone: Receipt;
}

export interface ErasureCertificate {
  v: 1;
  type: 'medvault.erasure-certificate';
  requestId: string;
  /** The receipt of erasure.filed: when and by whom the request was filed, and when it could first run. */
  filed: Receipt;
  scope: { subject: string } | { recordId: string };
  dpo: string;
  executedAt: number;
  /** The custodian key destroyed (subject scope), or null when the subject's key stays (record scope). */
  kms: { backend: string; keyId: string; confirmed: string } | null;
  records: ErasedRecord[];
  signer: string;
  signerKey: string;
  sig: string;
}

const ID = { type: 'string', pattern: '^[0-9a-f]{32}$' };
const HASH = { type: 'string', pattern: '^[0-9a-f]{64}$' };
const TEXT = { type: 'string', maxLength: 1000 };
const validateShape = new Ajv({ strict: true }).compile({
  type: 'object',
  additionalProperties: false,
  required: [
    'v',
    'type',
    'requestId',
    'filed',
    'scope',
    'dpo',
    'executedAt',
    'kms',
    'records',
    'signer',
    'signerKey',
    'sig',
  ],
  properties: {
    v: { const: 1 },
    type: { const: 'medvault.erasure-certificate' },
    requestId: ID,
    filed: { type: 'object' },
    scope: {
      oneOf: [
        { type: 'object', additionalProperties: false, required: ['subject'], properties: { subject: HASH } },
        { type: 'object', additionalProperties: false, required: ['recordId'], properties: { recordId: ID } },
      ],
    },
    dpo: ID,
    executedAt: { type: 'integer', minimum: 0 },
    kms: {
      oneOf: [
        { type: 'null' },
        {
          type: 'object',
          additionalProperties: false,
          required: ['backend', 'keyId', 'confirmed'],
          properties: { backend: { type: 'string', maxLength: 40 }, keyId: TEXT, confirmed: TEXT },
        },
      ],
    },
    records: {
      type: 'array',
      maxItems: 1_000_000,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['recordId', 'ciphertextHash', 'stores', 'tombstone'],
        properties: {
          recordId: ID,
          ciphertextHash: HASH,
          stores: {
            type: 'array',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['ref', 'removed', 'confirmed'],
              properties: { ref: TEXT, removed: { type: 'boolean' }, confirmed: TEXT },
            },
          },
          tombstone: { type: 'object' },
        },
      },
    },
    signer: ID,
    signerKey: { type: 'string', pattern: '^[A-Za-z0-9+/]{43}=$' },
    sig: { type: 'string', pattern: '^[A-Za-z0-9+/]{86}==$' },
  },
});

function signedBytes(cert: Omit<ErasureCertificate, 'sig'>): Uint8Array {
  const { sig: _omit, ...unsigned } = cert as ErasureCertificate;
  return Buffer.from(DOMAIN + canonicalJson(unsigned), 'utf8');
}

export function signCertificate(
  body: Omit<ErasureCertificate, 'v' | 'type' | 'signer' | 'signerKey' | 'sig'>,
  key: SigningKey,
): ErasureCertificate {
  const unsigned = {
    v: 1 as const,
    type: 'medvault.erasure-certificate' as const,
    ...body,
    signer: key.id,
    signerKey: Buffer.from(key.publicKey).toString('base64'),
  };
  return { ...unsigned, sig: Buffer.from(key.sign(signedBytes(unsigned))).toString('base64') };
}

export interface VerifiedCertificate {
  requestId: string;
  signer: string;
  records: number;
  keyDestroyed: boolean;
}

/**
 * Verifies a certificate offline; throws CERTIFICATE_INVALID saying what
 * failed. With `trusted`, the signer and every tombstone's block signer must
 * be among those key ids.
 */
export function verifyCertificate(value: unknown, options: { trusted?: Iterable<string> } = {}): VerifiedCertificate {
  if (!validateShape(value)) {
    const [first] = validateShape.errors ?? [];
    fail('CERTIFICATE_INVALID', `not a certificate: ${first?.instancePath || 'certificate'} ${first?.message ?? ''}`);
  }
  const cert = value as unknown as ErasureCertificate;
  const signerKey = new Uint8Array(Buffer.from(cert.signerKey, 'base64'));
  if (keyFingerprint(signerKey) !== cert.signer) fail('CERTIFICATE_INVALID', 'the signer id does not match its key');
  if (!verifySignature(signerKey, signedBytes(cert), new Uint8Array(Buffer.from(cert.sig, 'base64')))) {
    fail('CERTIFICATE_INVALID', 'the signature does not verify');
  }
  const trusted = options.trusted ? [...options.trusted] : undefined;
  if (trusted && !trusted.includes(cert.signer)) {
    fail('CERTIFICATE_INVALID', `signed by ${cert.signer}, which is not a trusted member key`);
  }
  try {
    const { event } = verifyReceipt(cert.filed, trusted ? { trusted } : {});
    if (event.type !== 'erasure.filed' || event.requestId !== cert.requestId || event.dpo !== cert.dpo) {
      fail('CERTIFICATE_INVALID', 'its filing receipt is for another request');
    }
  } catch (err) {
    if (isMedvaultError(err) && err.code === 'RECEIPT_INVALID') fail('CERTIFICATE_INVALID', `filing: ${err.message}`);
    throw err;
  }
  for (const record of cert.records) {
    let event: Receipt['event'];
    try {
      ({ event } = verifyReceipt(record.tombstone, trusted ? { trusted } : {}));
    } catch (err) {
      if (isMedvaultError(err)) fail('CERTIFICATE_INVALID', `record ${record.recordId}: ${err.message}`);
      throw err;
    }
    if (
      event.type !== 'record.erased' ||
      event.recordId !== record.recordId ||
      event.ciphertextHash !== record.ciphertextHash ||
      event.requestId !== cert.requestId
    ) {
      fail('CERTIFICATE_INVALID', `record ${record.recordId}: its tombstone is for another erasure`);
    }
  }
  return { requestId: cert.requestId, signer: cert.signer, records: cert.records.length, keyDestroyed: !!cert.kms };
}
