/**
 * The redactable chain: an experimental ledger mode (not the default, not
 * used by the vault) in which a DPO can rewrite an event in place and the
 * chain still verifies. Measured against key shredding in
 * docs/redaction-experiment.md.
 *
 * Each block links to the previous block's `link`, and its own `link` is a
 * chameleon hash (chameleon.ts) of its content under a key drawn for
 * that block alone; the key's trapdoor is age-encrypted to the DPO and kept
 * in the block. The signed header covers height, prev, link, the public key
 * and the wrapped trapdoor, but not the randomness `r`: a redaction replaces
 * the events and `r` and leaves every signed byte, and so every later
 * block, as it was. Without the trapdoor, changing any event (or `r`) breaks
 * the link: the property tests check it.
 *
 * One published redaction reveals that block's trapdoor (two collisions
 * under one key give it away), so keys are never shared between blocks.
 */
import { createHash } from 'node:crypto';
import { canonicalJson, encodeEvent, type LedgerEvent } from '../../anchor/events.ts';
import { decrypt, encrypt } from '../../crypto/age.ts';
import { keyFingerprint, type SigningKey, verifySignature } from '../../crypto/ed25519.ts';
import type { Identity, Recipient } from '../../crypto/header.ts';
import { fail } from '../../errors.ts';
import { chameleonCollision, chameleonHash, chameleonKeygen, scalarFromBytes, scalarToBytes } from './chameleon.ts';

const SIGNING_LABEL = 'medvault-redactable-block-v1\n';
const GENESIS = '0'.repeat(64);

export interface RedactableHeader {
  v: 1;
  height: number;
  prev: string;
  link: string;
  chameleonKey: string;
  /** The block's trapdoor, age-encrypted to the DPO (base64). */
  trapdoor: string;
  count: number;
  time: number;
  signer: string;
  signerKey: string;
  sig: string;
}

export interface RedactableBlock {
  header: RedactableHeader;
  /** The chameleon randomness, hex: not signed, replaced by a redaction. */
  r: string;
  events: LedgerEvent[];
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

/**
 * The chameleon randomness, decoded strictly: exactly 64 lower-case hex digits (Buffer's
 * own hex decoding stops at the first bad pair, so junk, upper case or a short value
 * would otherwise decode to some other scalar).
 */
function randomnessOf(block: RedactableBlock): bigint {
  if (typeof block.r !== 'string' || !/^[0-9a-f]{64}$/.test(block.r)) {
    fail('BLOCK_INVALID', `block ${block.header.height}: the chameleon randomness is not 64 lower-case hex digits`);
  }
  return scalarFromBytes(Buffer.from(block.r, 'hex'));
}

/** The message a block's link commits to: its height, its predecessor and its events. */
export function blockMessage(height: number, prev: string, events: readonly LedgerEvent[]): Uint8Array {
  const digest = createHash('sha256');
  digest.update(`${height}\n${prev}\n${events.length}\n`);
  for (const event of events) {
    const bytes = encodeEvent(event);
    digest.update(`${bytes.length}:`).update(bytes);
  }
  return new Uint8Array(digest.digest());
}

function signingBytes(header: Omit<RedactableHeader, 'sig'> & { sig?: string }): Uint8Array {
  const { sig: _sig, ...unsigned } = header;
  return Buffer.from(SIGNING_LABEL + canonicalJson(unsigned), 'utf8');
}

export function buildRedactableBlock(
  previous: RedactableHeader | null,
  events: LedgerEvent[],
  signer: SigningKey,
  dpo: Recipient,
  time = Date.now(),
): RedactableBlock {
  if (events.length === 0) fail('INVALID_ARGUMENT', 'a block holds at least one event');
  const height = previous ? previous.height + 1 : 0;
  const prev = previous ? previous.link : GENESIS;
  const { trapdoor, publicKey } = chameleonKeygen();
  const r = chameleonKeygen().trapdoor; // a uniformly random scalar
  const link = chameleonHash(publicKey, blockMessage(height, prev, events), r);
  const unsigned = {
    v: 1 as const,
    height,
    prev,
    link: hex(link),
    chameleonKey: hex(publicKey),
    trapdoor: Buffer.from(encrypt([dpo], scalarToBytes(trapdoor))).toString('base64'),
    count: events.length,
    time,
    signer: signer.id,
    signerKey: Buffer.from(signer.publicKey).toString('base64'),
  };
  const sig = Buffer.from(signer.sign(signingBytes(unsigned))).toString('base64');
  return { header: { ...unsigned, sig }, r: hex(scalarToBytes(r)), events };
}

/** Checks one block against its predecessor; throws BLOCK_INVALID saying what failed. */
export function verifyRedactableBlock(block: RedactableBlock, previous: RedactableHeader | null): void {
  const { header } = block;
  const at = `block ${header.height}`;
  if (header.height !== (previous ? previous.height + 1 : 0)) fail('BLOCK_INVALID', `${at}: unexpected height`);
  if (header.prev !== (previous ? previous.link : GENESIS)) fail('BLOCK_INVALID', `${at}: broken link`);
  if (header.count !== block.events.length) fail('BLOCK_INVALID', `${at}: count does not match its events`);
  const key = Buffer.from(header.signerKey, 'base64');
  if (
    key.length !== 32 ||
    keyFingerprint(key) !== header.signer ||
    !verifySignature(key, signingBytes(header), Buffer.from(header.sig, 'base64'))
  ) {
    fail('BLOCK_INVALID', `${at}: bad signature`);
  }
  const r = randomnessOf(block);
  let linked: string;
  try {
    const message = blockMessage(header.height, header.prev, block.events);
    linked = hex(chameleonHash(Buffer.from(header.chameleonKey, 'hex'), message, r));
  } catch (err) {
    fail('BLOCK_INVALID', `${at}: ${(err as Error).message}`);
  }
  if (linked !== header.link) fail('BLOCK_INVALID', `${at}: its events do not hash to its link`);
}

/** Verifies a whole chain, block by block. */
export function verifyRedactableChain(blocks: readonly RedactableBlock[]): { blocks: number; events: number } {
  let previous: RedactableHeader | null = null;
  let events = 0;
  for (const block of blocks) {
    verifyRedactableBlock(block, previous);
    previous = block.header;
    events += block.events.length;
  }
  return { blocks: blocks.length, events };
}

/**
 * The DPO rewrites event `index` of a block: the trapdoor is decrypted with
 * the DPO's identity and gives the randomness under which the new content
 * has the same link. The signed header is untouched.
 */
export function redactEvent(
  block: RedactableBlock,
  index: number,
  replacement: LedgerEvent,
  dpo: readonly Identity[],
): RedactableBlock {
  if (!block.events[index]) fail('INVALID_ARGUMENT', `block ${block.header.height} has no event ${index}`);
  encodeEvent(replacement); // a redaction is still a well-formed event
  const trapdoor = scalarFromBytes(decrypt(dpo, Buffer.from(block.header.trapdoor, 'base64')));
  const { height, prev } = block.header;
  const events = block.events.map((e, i) => (i === index ? replacement : e));
  const r = chameleonCollision(
    trapdoor,
    blockMessage(height, prev, block.events),
    randomnessOf(block),
    blockMessage(height, prev, events),
  );
  return { header: block.header, r: hex(scalarToBytes(r)), events };
}
