/**
 * RFC 6962 / RFC 9162 Merkle trees over SHA-256: leaf hash H(0x00 || d),
 * node hash H(0x01 || left || right), the tree of n leaves split at the
 * largest power of two below n. Proof generation works bottom-up over levels
 * (an unpaired last node moves up unchanged, which is the same tree); the
 * verifiers follow RFC 9162 sections 2.1.3.2 and 2.1.4.2 step by step.
 *
 * Outside the RFC's 0 < m < n range of consistency proofs: equal sizes are
 * consistent exactly when the proof is empty and the roots are equal; the
 * empty tree (whose hash is SHA-256 of nothing) is consistent with any tree
 * through an empty proof.
 *
 * Verifiers return true or false for well-formed arguments, and throw
 * MERKLE_ARGUMENT for malformed ones (non-integer sizes, hashes that are not
 * 32-byte Uint8Arrays).
 */
import { hash } from 'node:crypto';
import { check } from '../errors.ts';

export const HASH_LENGTH = 32;

export function sha256(...parts: Uint8Array[]): Uint8Array {
  const input = parts.length === 1 ? (parts[0] as Uint8Array) : Buffer.concat(parts);
  return Buffer.from(hash('sha256', input, 'hex'), 'hex');
}

/** SHA-256, hex, of bytes or of a string's UTF-8 encoding. */
export function sha256Hex(data: string | Uint8Array): string {
  return hash('sha256', data, 'hex');
}

// Digests are taken as hex strings, never as Buffers: node:crypto makes a
// fresh ArrayBuffer for each Buffer digest, which costs 4-5x the hashing of a
// node's 65 bytes, while a hex digest is a plain string. Trees are built on hex.

/** SHA-256 of one prefix byte then `data`. */
function prefixed(prefix: number, data: Uint8Array): Uint8Array {
  const input = Buffer.allocUnsafe(data.length + 1);
  input[0] = prefix;
  input.set(data, 1);
  return Buffer.from(hash('sha256', input, 'hex'), 'hex');
}

/** The hash of the empty tree. */
export const EMPTY_ROOT: Uint8Array = sha256();

export function leafHash(data: Uint8Array): Uint8Array {
  return prefixed(0x00, data);
}

// The leaf input (0x00, then the text's UTF-8) is written into one reused buffer: no prefixed
// copy of the text is made, and a text built by concatenation is left flat for its next use.
const LEAF_INPUT = Buffer.alloc(16 * 1024);

/** The leaf hash, hex, of `text`'s UTF-8 bytes. */
export function leafHashHex(text: string): string {
  // UTF-8 takes at most 3 bytes per UTF-16 unit; a longer text is hashed from a copy.
  if (1 + 3 * text.length > LEAF_INPUT.length) return hash('sha256', `\0${text}`, 'hex');
  const written = LEAF_INPUT.write(text, 1, 'utf8');
  return hash('sha256', LEAF_INPUT.subarray(0, 1 + written), 'hex');
}

export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  const input = Buffer.allocUnsafe(65);
  input[0] = 0x01;
  input.set(left, 1);
  input.set(right, 33);
  return Buffer.from(hash('sha256', input, 'hex'), 'hex');
}

// One input buffer for every hex node hash: hashing is synchronous, so it is never shared.
const NODE_INPUT = Buffer.alloc(65, 0x01);

/** The node hash of two hex hashes, hex; MERKLE_ARGUMENT unless both are 64 hex digits. */
function nodeHashHex(left: string, right: string): string {
  // A hex write stops at the first character that is not a hex digit: 32 bytes written means 64 digits.
  const ok =
    left.length === 64 &&
    right.length === 64 &&
    NODE_INPUT.write(left, 1, 'hex') === HASH_LENGTH &&
    NODE_INPUT.write(right, 33, 'hex') === HASH_LENGTH;
  check(ok, 'MERKLE_ARGUMENT', 'a leaf hash is not 64 hex digits');
  return hash('sha256', NODE_INPUT, 'hex');
}

const toHex = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('hex');
const fromHex = (hex: string): Uint8Array => Buffer.from(hex, 'hex');

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

function checkSize(value: unknown, name: string): asserts value is number {
  check(Number.isSafeInteger(value) && (value as number) >= 0, 'MERKLE_ARGUMENT', `${name} must be a whole number ≥ 0`);
}

function checkHash(value: unknown, name: string): asserts value is Uint8Array {
  check(value instanceof Uint8Array && value.length === HASH_LENGTH, 'MERKLE_ARGUMENT', `${name} must be 32 bytes`);
}

function checkProof(value: unknown): asserts value is Uint8Array[] {
  check(Array.isArray(value), 'MERKLE_ARGUMENT', 'proof must be an array of hashes');
  for (const [i, h] of value.entries()) checkHash(h, `proof[${i}]`);
}

/**
 * A Merkle tree over given leaf hashes, with every level kept (as hex) so
 * that the root and each audit path cost no more hashing than building it once.
 */
export class MerkleTree {
  #levels: string[][];

  constructor(leafHashes: readonly Uint8Array[]) {
    this.#levels = MerkleTree.#build(leafHashes.map(toHex));
  }

  static #build(leaves: string[]): string[][] {
    const levels: string[][] = [leaves];
    for (let level = leaves; level.length > 1; ) {
      const up: string[] = [];
      for (let i = 0; i + 1 < level.length; i += 2) up.push(nodeHashHex(level[i] as string, level[i + 1] as string));
      if (level.length % 2 === 1) up.push(level.at(-1) as string);
      levels.push(up);
      level = up;
    }
    return levels;
  }

  /**
   * The tree over leaf hashes given as 64 lowercase hex digits each, as
   * leafHashHex makes them. Each leaf is checked where it is first hashed
   * into a node (every leaf is, in a tree of two or more).
   */
  static fromLeafHex(leafHashes: readonly string[]): MerkleTree {
    if (leafHashes.length === 1) {
      check(/^[0-9a-f]{64}$/.test(leafHashes[0] as string), 'MERKLE_ARGUMENT', 'a leaf hash is not 64 hex digits');
    }
    const tree = new MerkleTree([]);
    tree.#levels = MerkleTree.#build([...leafHashes]);
    return tree;
  }

  static fromLeaves(leaves: readonly Uint8Array[]): MerkleTree {
    return new MerkleTree(leaves.map(leafHash));
  }

  get size(): number {
    return (this.#levels[0] as string[]).length;
  }

  get root(): Uint8Array {
    return this.size === 0 ? EMPTY_ROOT : fromHex(this.rootHex);
  }

  get rootHex(): string {
    return this.size === 0 ? toHex(EMPTY_ROOT) : ((this.#levels.at(-1) as string[])[0] as string);
  }

  /** The audit path of leaf `index`, from the leaf's sibling up (RFC 9162 PATH). */
  inclusionProof(index: number): Uint8Array[] {
    return this.inclusionProofHex(index).map(fromHex);
  }

  /** The audit path of leaf `index` as hex strings. */
  inclusionProofHex(index: number): string[] {
    checkSize(index, 'leaf index');
    check(index < this.size, 'MERKLE_ARGUMENT', `leaf index ${index} is outside a tree of ${this.size}`);
    const path: string[] = [];
    let i = index;
    for (let depth = 0; depth < this.#levels.length - 1; depth++) {
      const level = this.#levels[depth] as string[];
      const sibling = i ^ 1;
      if (sibling < level.length) path.push(level[sibling] as string);
      i >>= 1;
    }
    return path;
  }

  /** The hash of leaves [from, to) when that range is a subtree of this tree. */
  #subtree(from: number, to: number): string {
    if (to - from === 1) return (this.#levels[0] as string[])[from] as string;
    const k = largestPowerOfTwoBelow(to - from);
    return nodeHashHex(this.#subtree(from, from + k), this.#subtree(from + k, to));
  }

  /** The consistency proof from the first `size` leaves to the whole tree (RFC 9162 PROOF). */
  consistencyProof(size: number): Uint8Array[] {
    checkSize(size, 'first size');
    check(size <= this.size, 'MERKLE_ARGUMENT', `first size ${size} exceeds the tree size ${this.size}`);
    if (size === 0 || size === this.size) return [];
    const proof: string[] = [];
    const walk = (m: number, from: number, to: number, whole: boolean): void => {
      if (m === to - from) {
        if (!whole) proof.push(this.#subtree(from, to));
        return;
      }
      const k = largestPowerOfTwoBelow(to - from);
      if (m <= k) {
        walk(m, from, from + k, whole);
        proof.push(this.#subtree(from + k, to));
      } else {
        walk(m - k, from + k, to, false);
        proof.push(this.#subtree(from, from + k));
      }
    };
    walk(size, 0, this.size, true);
    return proof.map(fromHex);
  }
}

function largestPowerOfTwoBelow(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** RFC 9162 section 2.1.3.2: is `leafHash` at `leafIndex` in the tree of `treeSize` with `root`? */
export function verifyInclusion(
  leafIndex: number,
  treeSize: number,
  leafHashValue: Uint8Array,
  proof: readonly Uint8Array[],
  root: Uint8Array,
): boolean {
  checkSize(leafIndex, 'leaf index');
  checkSize(treeSize, 'tree size');
  checkHash(leafHashValue, 'leaf hash');
  checkProof(proof);
  checkHash(root, 'root');
  if (leafIndex >= treeSize) return false;
  // Sizes are below 2^53, so plain division keeps the bit arithmetic exact.
  let fn = leafIndex;
  let sn = treeSize - 1;
  let r = leafHashValue;
  for (const p of proof) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = nodeHash(p, r);
      // If LSB(fn) is not set, shift both until it is or fn is 0.
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      r = nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && equal(r, root);
}

/** RFC 9162 section 2.1.4.2: is the tree of `size2` with `root2` an extension of `size1` with `root1`? */
export function verifyConsistency(
  size1: number,
  size2: number,
  proof: readonly Uint8Array[],
  root1: Uint8Array,
  root2: Uint8Array,
): boolean {
  checkSize(size1, 'first size');
  checkSize(size2, 'second size');
  checkProof(proof);
  checkHash(root1, 'first root');
  checkHash(root2, 'second root');
  if (size1 > size2) return false;
  if (size1 === size2) return proof.length === 0 && equal(root1, root2);
  if (size1 === 0) return proof.length === 0 && equal(root1, EMPTY_ROOT);
  // 1. An empty path fails.
  if (proof.length === 0) return false;
  // 2. If first is an exact power of 2, prepend first_hash to the path.
  const path = isPowerOfTwo(size1) ? [root1, ...proof] : [...proof];
  // 3-4. fn = first - 1, sn = second - 1; shift both while LSB(fn) is set.
  let fn = size1 - 1;
  let sn = size2 - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  // 5. fr and sr start as the first value of the path.
  let fr = path[0] as Uint8Array;
  let sr = fr;
  // 6. For each subsequent value c.
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      // If LSB(fn) is not set, shift both until it is or fn is 0.
      while (fn % 2 === 0 && fn !== 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  // 7. fr must be first_hash, sr second_hash, and sn 0.
  return equal(fr, root1) && equal(sr, root2) && sn === 0;
}

function isPowerOfTwo(n: number): boolean {
  return n > 0 && 2 ** Math.round(Math.log2(n)) === n;
}
