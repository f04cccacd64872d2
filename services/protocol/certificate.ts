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
import { canonicalJson } from '../../anchor/events.ts';
import { type Receipt, verifyReceipt } from '../../anchor/receipt.ts';
import { type Trust, type TrustedKeys, trustOf } from '../../anchor/trusted-keys.ts';
import { keyFingerprint, type SigningKey, verifySignature } from '../../crypto/ed25519.ts';
import { fail, isMedvaultError } from '../../errors.ts';
import { SCHEMA } from '../../formats.ts';

const DOMAIN = 'medvault-erasure-certificate-v1\n';
const COSIGN_DOMAIN = 'medvault-erasure-cosignature-v1\n';

/**
 * A consortium node's confirmation of a certificate executed by another:
 * it verified the certificate, found every tombstone on its own view of the
 * shared ledger, and holds nothing of the records (or the subject's key)
 * itself. It signs the certificate as signed by its executor.
 */
export interface Cosignature {
  signer: string;
  signerKey: string;
  at: number;
  confirmed: string;
  sig: string;
}

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
  /**
   * The receipt of the record's record.created, which names the custodian key it was
   * wrapped to: a verifier checks that the destroyed key is that key.
   */
  created?: Receipt;
}

export interface ErasureCertificate {
  v: 1;
  type: 'medvault.erasure-certificate';
  requestId: string;
  /** The receipt of erasure.filed: when and by whom the request was filed, and when it could first run. */
  filed: Receipt;
  /**
   * What was erased: one record, or a subject named only by the commitment the ledger's
   * erasure.filed carries (never the pseudonym). `{ subject }` is the form of
   * certificates made before subjects left the ledger; it is still read.
   */
  scope: { subjectCommitment: string } | { recordId: string } | { subject: string };
  dpo: string;
  executedAt: number;
  /** The custodian key destroyed (subject scope), or null when the subject's key stays (record scope). */
  kms: { backend: string; keyId: string; confirmed: string } | null;
  records: ErasedRecord[];
  /**
   * For a subject erased across the consortium: the other nodes that must each erase their
   * own part and confirm before the erasure is complete (signed by the executing node).
   */
  consortium?: string[];
  /**
   * When the last backup that may still hold the destroyed key expires (ms): the erasure is
   * complete for every backup after that. Absent when the node keeps no backups.
   */
  backupsUntil?: number;
  signer: string;
  signerKey: string;
  sig: string;
  /** Other nodes' confirmations; not covered by the executor's signature (they are added after it). */
  cosignatures?: Cosignature[];
  /**
   * The other nodes' own certificates for the same request (their records, key and
   * tombstones), each signed by that node; added after the executor's signature.
   */
  parts?: ErasureCertificate[];
}

const { id: ID, hash: HASH } = SCHEMA;
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
        {
          type: 'object',
          additionalProperties: false,
          required: ['subjectCommitment'],
          properties: { subjectCommitment: HASH },
        },
        { type: 'object', additionalProperties: false, required: ['recordId'], properties: { recordId: ID } },
        { type: 'object', additionalProperties: false, required: ['subject'], properties: { subject: HASH } },
      ],
    },
    consortium: { type: 'array', maxItems: 256, uniqueItems: true, items: ID },
    backupsUntil: { type: 'integer', minimum: 0 },
    parts: { type: 'array', maxItems: 256, items: { type: 'object' } },
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
          created: { type: 'object' },
        },
      },
    },
    signer: ID,
    signerKey: { type: 'string', pattern: '^[A-Za-z0-9+/]{43}=$' },
    sig: { type: 'string', pattern: '^[A-Za-z0-9+/]{85}[AQgw]==$' },
    cosignatures: {
      type: 'array',
      maxItems: 256,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['signer', 'signerKey', 'at', 'confirmed', 'sig'],
        properties: {
          signer: ID,
          signerKey: { type: 'string', pattern: '^[A-Za-z0-9+/]{43}=$' },
          at: { type: 'integer', minimum: 0 },
          confirmed: TEXT,
          sig: { type: 'string', pattern: '^[A-Za-z0-9+/]{85}[AQgw]==$' },
        },
      },
    },
  },
});

function signedBytes(cert: Omit<ErasureCertificate, 'sig'>): Uint8Array {
  const { sig: _omit, cosignatures: _later, parts: _after, ...unsigned } = cert as ErasureCertificate;
  return Buffer.from(DOMAIN + canonicalJson(unsigned), 'utf8');
}

function cosignedBytes(cert: ErasureCertificate, cosigner: Omit<Cosignature, 'sig'>): Uint8Array {
  const { cosignatures: _others, parts: _after, ...executed } = cert;
  return Buffer.from(COSIGN_DOMAIN + canonicalJson({ certificate: executed, cosigner }), 'utf8');
}

/** A node's cosignature over a certificate it has checked (see Cosignature). */
export function cosignCertificate(
  cert: ErasureCertificate,
  key: SigningKey,
  confirmed: string,
  at = Date.now(),
): Cosignature {
  const cosigner = { signer: key.id, signerKey: Buffer.from(key.publicKey).toString('base64'), at, confirmed };
  return { ...cosigner, sig: Buffer.from(key.sign(cosignedBytes(cert, cosigner))).toString('base64') };
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
  /** Records erased, on the executing node and in every part. */
  records: number;
  /** A custodian key was destroyed, and every record that names its key was wrapped to it. */
  keyDestroyed: boolean;
  /** The node ids that cosigned it (each signature verified). */
  cosigners: string[];
  /** What each node erased: the executor first, then each part. */
  nodes: Array<{ node: string; records: number; keyDestroyed: boolean }>;
  /** Every node of `consortium` sent its part and cosigned (true when there is no consortium). */
  complete: boolean;
  /** The nodes of `consortium` that have not (yet) both erased their part and cosigned. */
  missing: string[];
}

/**
 * Verifies a certificate offline; throws CERTIFICATE_INVALID saying what
 * failed. With `trusted`, the signer and every tombstone's block signer must
 * be among those key ids (followed through their key history: anchor/trusted-keys.ts); with `cosigners`, every cosigner must be one of
 * those (every cosignature is verified either way; see `cosigners` in the result).
 */
export function verifyCertificate(
  value: unknown,
  options: { trusted?: Trust; cosigners?: Iterable<string>; verifiedHeaders?: Set<string> } = {},
): VerifiedCertificate {
  // The block headers checked while verifying this certificate (its parts included).
  const verifiedHeaders = options.verifiedHeaders ?? new Set<string>();
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
  const trusted = trustOf(options.trusted);
  if (trusted && !trusted.allows(cert.signer)) {
    fail('CERTIFICATE_INVALID', `signed by ${cert.signer}, which is not a trusted member key`);
  }
  const filed = receiptEvent(cert.filed, trusted, 'filing', verifiedHeaders);
  if (filed.type !== 'erasure.filed' || filed.requestId !== cert.requestId || filed.dpo !== cert.dpo) {
    fail('CERTIFICATE_INVALID', 'its filing receipt is for another request');
  }
  const target =
    'recordId' in cert.scope
      ? cert.scope.recordId
      : 'subjectCommitment' in cert.scope
        ? cert.scope.subjectCommitment
        : cert.scope.subject;
  if (filed.scope !== ('recordId' in cert.scope ? 'record' : 'subject') || filed.target !== target) {
    fail('CERTIFICATE_INVALID', 'its scope is not what the filing receipt names');
  }
  if ('recordId' in cert.scope && cert.records.some((r) => r.recordId !== target)) {
    fail('CERTIFICATE_INVALID', 'a record-scope certificate lists another record');
  }
  if ('subjectCommitment' in cert.scope && cert.records.length > 0 && !cert.kms) {
    fail('CERTIFICATE_INVALID', 'records of the subject were erased, but no custodian key was destroyed');
  }
  for (const record of cert.records) {
    let event: Receipt['event'];
    try {
      ({ event } = verifyReceipt(record.tombstone, { ...(trusted ? { trusted } : {}), verifiedHeaders }));
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
    if (record.created) {
      const created = receiptEvent(record.created, trusted, `record ${record.recordId} creation`, verifiedHeaders);
      if (created.type !== 'record.created' || created.recordId !== record.recordId) {
        fail('CERTIFICATE_INVALID', `record ${record.recordId}: its creation receipt is for another record`);
      }
      // The destroyed key is the one the record was wrapped to (records anchored since custodians are).
      if (cert.kms && created.custodian !== undefined && created.custodian !== cert.kms.keyId) {
        fail(
          'CERTIFICATE_INVALID',
          `record ${record.recordId} was wrapped to key ${created.custodian}, not the destroyed key ${cert.kms.keyId}`,
        );
      }
    } else if ('subjectCommitment' in cert.scope) {
      fail('CERTIFICATE_INVALID', `record ${record.recordId}: no creation receipt to check the destroyed key against`);
    }
  }
  const cosigners: string[] = [];
  const allowedCosigners = options.cosigners ? [...options.cosigners] : undefined;
  for (const cosignature of cert.cosignatures ?? []) {
    const { sig, ...cosigner } = cosignature;
    const key = new Uint8Array(Buffer.from(cosigner.signerKey, 'base64'));
    if (keyFingerprint(key) !== cosigner.signer || cosigner.signer === cert.signer) {
      fail('CERTIFICATE_INVALID', `cosignature by ${cosigner.signer}: not a separate node's key`);
    }
    if (!verifySignature(key, cosignedBytes(cert, cosigner), new Uint8Array(Buffer.from(sig, 'base64')))) {
      fail('CERTIFICATE_INVALID', `cosignature by ${cosigner.signer} does not verify`);
    }
    if (allowedCosigners && !allowedCosigners.includes(cosigner.signer)) {
      fail('CERTIFICATE_INVALID', `cosigned by ${cosigner.signer}, which is not a trusted node key`);
    }
    if (cosigners.includes(cosigner.signer)) fail('CERTIFICATE_INVALID', `${cosigner.signer} cosigned twice`);
    cosigners.push(cosigner.signer);
  }
  const nodes = [{ node: cert.signer, records: cert.records.length, keyDestroyed: !!cert.kms }];
  const consortium = cert.consortium ?? [];
  if (consortium.includes(cert.signer)) fail('CERTIFICATE_INVALID', 'the executing node is not its own peer');
  for (const part of cert.parts ?? []) {
    const p = part as ErasureCertificate;
    if (p.parts || p.consortium) fail('CERTIFICATE_INVALID', 'a part has parts of its own');
    let verified: VerifiedCertificate;
    try {
      verified = verifyCertificate(part, { ...(trusted ? { trusted } : {}), verifiedHeaders });
    } catch (err) {
      if (isMedvaultError(err)) fail('CERTIFICATE_INVALID', `the part of ${p.signer}: ${err.message}`);
      throw err;
    }
    if (p.requestId !== cert.requestId || canonicalJson(p.filed) !== canonicalJson(cert.filed)) {
      fail('CERTIFICATE_INVALID', `the part of ${p.signer} is for another request`);
    }
    if (!consortium.includes(p.signer) || nodes.some((n) => n.node === p.signer)) {
      fail('CERTIFICATE_INVALID', `a part by ${p.signer}, which is not one of the consortium's other nodes`);
    }
    nodes.push({ node: p.signer, records: verified.records, keyDestroyed: verified.keyDestroyed });
  }
  const missing = missingNodes(
    consortium,
    cosigners,
    nodes.map((n) => n.node),
  );
  return {
    requestId: cert.requestId,
    signer: cert.signer,
    records: nodes.reduce((sum, n) => sum + n.records, 0),
    keyDestroyed: !!cert.kms,
    cosigners,
    nodes,
    complete: missing.length === 0,
    missing,
  };
}

/** The nodes of `consortium` that have not both sent their part and cosigned. */
export function missingNodes(
  consortium: readonly string[],
  cosigners: readonly string[],
  parts: readonly string[],
): string[] {
  return consortium.filter((n) => !cosigners.includes(n) || !parts.includes(n));
}

/** A receipt's event, verified offline; CERTIFICATE_INVALID naming `what` when it does not verify. */
function receiptEvent(
  receipt: Receipt,
  trusted: TrustedKeys | undefined,
  what: string,
  verifiedHeaders: Set<string>,
): Receipt['event'] {
  try {
    return verifyReceipt(receipt, { ...(trusted ? { trusted } : {}), verifiedHeaders }).event;
  } catch (err) {
    if (isMedvaultError(err)) fail('CERTIFICATE_INVALID', `${what}: ${err.message}`);
    throw err;
  }
}
