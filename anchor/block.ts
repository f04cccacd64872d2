/**
 * Blocks: a batch of events under one signed, hash-linked header.
 *
 * header = { v, height, prev, root, count, time, signer, signerKey, sig }
 *   prev      hex SHA-256 of the previous header (64 zeros for height 0)
 *   root      hex RFC 9162 Merkle root of the events' canonical bytes
 *   signer    fingerprint of signerKey (crypto/ed25519.ts)
 *   signerKey base64 Ed25519 public key, so a header verifies on its own;
 *             whether that key is a consortium member is the verifier's call
 *   sig       base64 Ed25519 signature over "medvault/block/v1\n" || canonical
 *             JSON of the header without sig
 * The block hash is SHA-256 of the canonical JSON of the whole header.
 */
import { isAscii } from 'node:buffer';
import { keyFingerprint, type SigningKey, verifySignature } from '../crypto/ed25519.ts';
import { leafHashHex, MerkleTree, sha256Hex } from '../crypto/merkle.ts';
import { check, fail } from '../errors.ts';
import { canonicalJson, eventJson, type LedgerEvent } from './events.ts';

export const GENESIS_PREV = '0'.repeat(64);
const SIGNING_LABEL = 'medvault/block/v1\n';

export interface BlockHeader {
  v: 1;
  height: number;
  prev: string;
  root: string;
  count: number;
  time: number;
  signer: string;
  signerKey: string;
  sig: string;
}

export interface Block {
  header: BlockHeader;
  events: LedgerEvent[];
}

/** An event's canonical JSON (validated) and its Merkle leaf hash, hex. */
export interface EncodedEvent {
  json: string;
  leaf: string;
}

export function encodeForBlock(event: LedgerEvent): EncodedEvent {
  const json = eventJson(event);
  return { json, leaf: leafHashHex(json) };
}

/** The Merkle tree of a block's events (validating them). */
export function eventsTree(events: readonly LedgerEvent[]): MerkleTree {
  return MerkleTree.fromLeafHex(events.map((event) => leafHashHex(eventJson(event))));
}

/** The events' canonical JSON of blocks built here, so storing a block does not encode its events again. */
const eventsJson = new WeakMap<Block, string[]>();

/**
 * A block as stored by the ledgers: JSON of { header, events }, each event in
 * its canonical form. Readers parse it with JSON.parse.
 *
 * Valid events and headers are ASCII (ids, hashes, codes, numbers), so the
 * pieces are written straight into one buffer of their summed lengths, 6x
 * cheaper than joining them into one large string and encoding that. If
 * every piece wrote as many bytes as it has characters and every byte is
 * below 0x80 (UTF-8 writes any other character as bytes above it), all was
 * ASCII and the buffer is exact; otherwise the block is encoded the long way.
 */
export function serializeBlock(block: Block): Buffer {
  const events = eventsJson.get(block) ?? block.events.map(eventJson);
  const head = `{"header":${JSON.stringify(block.header)},"events":[`;
  let length = head.length + Math.max(events.length - 1, 0) + 2; // the commas, then "]}"
  for (const json of events) length += json.length;
  const out = Buffer.allocUnsafe(length);
  let exact = true;
  const put = (text: string, at: number) => {
    const written = out.write(text, at, 'utf8');
    exact &&= written === text.length;
    return at + written;
  };
  let at = put(head, 0);
  for (let i = 0; i < events.length; i++) {
    if (i > 0) out[at++] = 0x2c; // ,
    at = put(events[i] as string, at);
  }
  at = put(']}', at);
  if (exact && at === length && isAscii(out)) return out;
  return Buffer.from(`${head}${events.join(',')}]}`, 'utf8');
}

function signingBytes(header: Omit<BlockHeader, 'sig'> & { sig?: string }): Uint8Array {
  const { sig: _sig, ...unsigned } = header;
  return Buffer.from(SIGNING_LABEL + canonicalJson(unsigned), 'utf8');
}

export function blockHash(header: BlockHeader): string {
  return sha256Hex(canonicalJson(header));
}

/**
 * Builds and signs the block after `previous` (null for the first block).
 * `encoded`, when given, are the events already encoded (encodeForBlock).
 */
export function buildBlock(
  previous: BlockHeader | null,
  events: LedgerEvent[],
  signer: SigningKey,
  options: { time?: number; encoded?: EncodedEvent[] } = {},
): { block: Block; tree: MerkleTree } {
  check(events.length > 0, 'INVALID_ARGUMENT', 'a block holds at least one event');
  const encoded = options.encoded ?? events.map(encodeForBlock);
  check(encoded.length === events.length, 'INVALID_ARGUMENT', 'one encoding per event');
  const tree = MerkleTree.fromLeafHex(encoded.map((e) => e.leaf));
  const unsigned = {
    v: 1 as const,
    height: previous ? previous.height + 1 : 0,
    prev: previous ? blockHash(previous) : GENESIS_PREV,
    root: tree.rootHex,
    count: events.length,
    time: options.time ?? Date.now(),
    signer: signer.id,
    signerKey: Buffer.from(signer.publicKey).toString('base64'),
  };
  const sig = Buffer.from(signer.sign(signingBytes(unsigned))).toString('base64');
  const block = { header: { ...unsigned, sig }, events };
  eventsJson.set(
    block,
    encoded.map((e) => e.json),
  );
  return { block, tree };
}

/** True when the header's signature verifies under its own key and its signer id is that key's. */
export function headerSignatureValid(header: BlockHeader): boolean {
  const key = Buffer.from(header.signerKey ?? '', 'base64');
  return (
    key.length === 32 &&
    keyFingerprint(key) === header.signer &&
    verifySignature(key, signingBytes(header), Buffer.from(header.sig ?? '', 'base64'))
  );
}

/**
 * Verifies a block on its own and against its predecessor: height and link,
 * the Merkle root and count over its events, and the signature.
 */
export function verifyBlock(block: Block, previous: BlockHeader | null): void {
  const { header, events } = block;
  const at = `block ${header.height}`;
  if (header.height !== (previous ? previous.height + 1 : 0)) fail('BLOCK_INVALID', `${at}: unexpected height`);
  if (header.prev !== (previous ? blockHash(previous) : GENESIS_PREV)) fail('BLOCK_INVALID', `${at}: broken link`);
  if (header.count !== events.length) fail('BLOCK_INVALID', `${at}: count does not match its events`);
  const root = eventsTree(events).rootHex;
  if (root !== header.root) fail('BLOCK_INVALID', `${at}: Merkle root does not match its events`);
  if (!headerSignatureValid(header)) fail('BLOCK_INVALID', `${at}: bad signature`);
}
