/**
 * Receipts: the proof, for one event, that it is in a signed block.
 *
 * receipt = { v: 1, event, leafIndex, auditPath: [hex…], block: header }
 *
 * Offline verification needs nothing else: the event's canonical bytes give
 * its leaf hash, the audit path leads to the header's root for a tree of the
 * header's (signed) event count, and the header's signature verifies under
 * its signer key. Whether that signer is a consortium member is checked
 * against a trusted list when one is given. Online verification (see
 * ledger.ts) then checks the ledger holds that very header at that height.
 */
import { Ajv } from 'ajv';
import { leafHash, type MerkleTree, verifyInclusion } from '../crypto/merkle.ts';
import { fail, isMedvaultError } from '../errors.ts';
import { SCHEMA } from '../formats.ts';
import { type Block, type BlockHeader, blockHash, headerSignatureValid } from './block.ts';
import { canonicalJson, encodeEvent, type LedgerEvent } from './events.ts';
import { type Trust, trustOf } from './trusted-keys.ts';

export interface Receipt {
  v: 1;
  event: LedgerEvent;
  leafIndex: number;
  auditPath: string[];
  block: BlockHeader;
}

export interface VerifiedReceipt {
  event: LedgerEvent;
  height: number;
  blockHash: string;
  signer: string;
}

const HEX64 = SCHEMA.hash;
const BASE64 = { type: 'string', pattern: '^[A-Za-z0-9+/]*={0,2}$' };
const COUNT = { type: 'integer', minimum: 0 };
const validateShape = new Ajv({ strict: true }).compile({
  type: 'object',
  required: ['v', 'event', 'leafIndex', 'auditPath', 'block'],
  additionalProperties: false,
  properties: {
    v: { const: 1 },
    event: { type: 'object' },
    leafIndex: COUNT,
    auditPath: { type: 'array', items: HEX64, maxItems: 64 },
    block: {
      type: 'object',
      required: ['v', 'height', 'prev', 'root', 'count', 'time', 'signer', 'signerKey', 'sig'],
      additionalProperties: false,
      properties: {
        v: { const: 1 },
        height: COUNT,
        prev: HEX64,
        root: HEX64,
        count: { type: 'integer', minimum: 1 },
        time: COUNT,
        signer: SCHEMA.id,
        signerKey: BASE64,
        sig: BASE64,
      },
    },
  },
});

/**
 * The receipt of event `leafIndex` of `block`. The tree keeps its levels as
 * hex, so an audit path is ~10 references to strings it already holds:
 * cheaper to make for each of a block's 1,000 callers than to defer.
 */
export function makeReceipt(block: Block, tree: MerkleTree, leafIndex: number): Receipt {
  return {
    v: 1,
    event: block.events[leafIndex] as LedgerEvent,
    leafIndex,
    auditPath: tree.inclusionProofHex(leafIndex),
    block: block.header,
  };
}

/**
 * Verifies a receipt offline. Throws RECEIPT_INVALID saying what failed;
 * with `trusted`, the block's signer must be one of those key fingerprints
 * (followed through their key history: it signs that height).
 */
/** Headers (canonical JSON, signature included) whose signature was checked already. */
export interface HeaderMemo {
  has(header: string): boolean;
  add(header: string): unknown;
}

export function verifyReceipt(
  receipt: unknown,
  options: { trusted?: Trust; verifiedHeaders?: HeaderMemo } = {},
): VerifiedReceipt {
  if (!validateShape(receipt)) {
    const [first] = validateShape.errors ?? [];
    fail('RECEIPT_INVALID', `not a receipt: ${first?.instancePath || 'receipt'} ${first?.message ?? ''}`.trim());
  }
  const r = receipt as unknown as Receipt;
  let leaf: Uint8Array;
  try {
    leaf = leafHash(encodeEvent(r.event));
  } catch (err) {
    if (isMedvaultError(err)) fail('RECEIPT_INVALID', `its event is malformed (${err.message})`);
    throw err;
  }
  const path = r.auditPath.map((h) => new Uint8Array(Buffer.from(h, 'hex')));
  const root = new Uint8Array(Buffer.from(r.block.root, 'hex'));
  if (!verifyInclusion(r.leafIndex, r.block.count, leaf, path, root)) {
    fail('RECEIPT_INVALID', 'the event is not in the block: its audit path does not lead to the block root');
  }
  // Many receipts of one document (a certificate's tombstones) share a few blocks: a header,
  // byte for byte, is checked once per document (`verifiedHeaders`, which the caller scopes).
  const header = options.verifiedHeaders ? canonicalJson(r.block) : '';
  if (!options.verifiedHeaders?.has(header)) {
    if (!headerSignatureValid(r.block)) fail('RECEIPT_INVALID', 'the block header signature does not verify');
    options.verifiedHeaders?.add(header);
  }
  const trusted = trustOf(options.trusted);
  if (trusted && !trusted.allows(r.block.signer, r.block.height)) {
    fail(
      'RECEIPT_INVALID',
      trusted.allows(r.block.signer)
        ? `block ${r.block.height} was signed by ${r.block.signer}, a node key that did not sign at that height (replaced)`
        : `the block was signed by ${r.block.signer}, which is not a trusted member key`,
    );
  }
  return { event: r.event, height: r.block.height, blockHash: blockHash(r.block), signer: r.block.signer };
}
