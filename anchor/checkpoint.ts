/**
 * Ledger checkpoints: "the ledger's block at height H has hash X", signed by
 * every consortium node that checked it on its own view of the ledger. A node
 * signs a checkpoint only if the chain up to it verifies and extends the last
 * checkpoint it signed, so a member that rewrites history (in etcd, say)
 * cannot get it signed, and anyone holding an earlier checkpoint detects the
 * rewrite: the block at that height no longer has that hash.
 *
 * checkpoint = { v, type, height, blockHash, signatures: [{ signer, signerKey, at, sig }] }
 * Each signature covers "medvault-ledger-checkpoint-v1\n" followed by the RFC
 * 8785 canonical JSON of { checkpoint: { v, type, height, blockHash }, signer:
 * { signer, signerKey, at } }.
 */
import { Ajv } from 'ajv';
import { keyFingerprint, type SigningKey, verifySignature } from '../crypto/ed25519.ts';
import { fail } from '../errors.ts';
import { SCHEMA } from '../formats.ts';
import { blockHash } from './block.ts';
import { canonicalJson } from './events.ts';
import type { Ledger } from './ledger.ts';
import { type Trust, trustOf } from './trusted-keys.ts';

const DOMAIN = 'medvault-ledger-checkpoint-v1\n';

export interface CheckpointBody {
  v: 1;
  type: 'medvault.ledger-checkpoint';
  height: number;
  blockHash: string;
}

export interface CheckpointSignature {
  signer: string;
  signerKey: string;
  at: number;
  sig: string;
}

export interface Checkpoint extends CheckpointBody {
  signatures: CheckpointSignature[];
}

const KEY = { type: 'string', pattern: '^[A-Za-z0-9+/]{43}=$' };
const validateShape = new Ajv({ strict: true }).compile({
  type: 'object',
  additionalProperties: false,
  required: ['v', 'type', 'height', 'blockHash', 'signatures'],
  properties: {
    v: { const: 1 },
    type: { const: 'medvault.ledger-checkpoint' },
    height: { type: 'integer', minimum: 0 },
    blockHash: SCHEMA.hash,
    signatures: {
      type: 'array',
      minItems: 1,
      maxItems: 256,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['signer', 'signerKey', 'at', 'sig'],
        properties: {
          signer: SCHEMA.id,
          signerKey: KEY,
          at: { type: 'integer', minimum: 0 },
          sig: { type: 'string', pattern: '^[A-Za-z0-9+/]{86}==$' },
        },
      },
    },
  },
});

export function checkpointBody(height: number, hash: string): CheckpointBody {
  return { v: 1, type: 'medvault.ledger-checkpoint', height, blockHash: hash };
}

function signedBytes(body: CheckpointBody, signer: Omit<CheckpointSignature, 'sig'>): Uint8Array {
  const { v, type, height, blockHash: hash } = body;
  return Buffer.from(DOMAIN + canonicalJson({ checkpoint: { v, type, height, blockHash: hash }, signer }), 'utf8');
}

/** One node's signature over a checkpoint body it has checked. */
export function signCheckpoint(body: CheckpointBody, key: SigningKey, at = Date.now()): CheckpointSignature {
  const signer = { signer: key.id, signerKey: Buffer.from(key.publicKey).toString('base64'), at };
  return { ...signer, sig: Buffer.from(key.sign(signedBytes(body, signer))).toString('base64') };
}

export interface VerifiedCheckpoint {
  height: number;
  blockHash: string;
  /** The node key ids whose signatures verified, in order. */
  signers: string[];
}

/**
 * Verifies a checkpoint offline; throws CHECKPOINT_INVALID saying what
 * failed. Every signature must verify and be by a distinct key; with
 * `trusted`, every signer must be one of those key ids, and with `quorum`,
 * at least that many must have signed.
 */
export function verifyCheckpoint(
  value: unknown,
  options: { trusted?: Trust; quorum?: number } = {},
): VerifiedCheckpoint {
  if (!validateShape(value)) {
    const [first] = validateShape.errors ?? [];
    fail('CHECKPOINT_INVALID', `not a checkpoint: ${first?.instancePath || 'checkpoint'} ${first?.message ?? ''}`);
  }
  const checkpoint = value as unknown as Checkpoint;
  const trusted = trustOf(options.trusted);
  const signers: string[] = [];
  for (const { sig, ...signer } of checkpoint.signatures) {
    const key = new Uint8Array(Buffer.from(signer.signerKey, 'base64'));
    if (keyFingerprint(key) !== signer.signer) fail('CHECKPOINT_INVALID', `${signer.signer}: not that key's id`);
    if (signers.includes(signer.signer)) fail('CHECKPOINT_INVALID', `${signer.signer} signed twice`);
    if (!verifySignature(key, signedBytes(checkpoint, signer), new Uint8Array(Buffer.from(sig, 'base64')))) {
      fail('CHECKPOINT_INVALID', `the signature by ${signer.signer} does not verify`);
    }
    if (trusted && !trusted.allows(signer.signer, checkpoint.height)) {
      fail('CHECKPOINT_INVALID', `signed by ${signer.signer}, which is not a trusted node key at that height`);
    }
    signers.push(signer.signer);
  }
  if (options.quorum !== undefined && signers.length < options.quorum) {
    fail('CHECKPOINT_INVALID', `${signers.length} signatures, fewer than the ${options.quorum} required`);
  }
  return { height: checkpoint.height, blockHash: checkpoint.blockHash, signers };
}

/** Throws LEDGER_REWRITTEN unless `ledger` holds the checkpoint's block at its height. */
export async function checkCheckpointOnLedger(
  ledger: Ledger,
  checkpoint: Pick<CheckpointBody, 'height' | 'blockHash'>,
): Promise<void> {
  const block = await ledger.get(checkpoint.height);
  if (!block) fail('LEDGER_REWRITTEN', `the ledger has no block ${checkpoint.height}, which a checkpoint names`);
  if (blockHash(block.header) !== checkpoint.blockHash) {
    fail('LEDGER_REWRITTEN', `block ${checkpoint.height} is not the block its checkpoint names`);
  }
}
