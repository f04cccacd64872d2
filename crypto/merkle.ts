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
  // One-shot hashing: about a third cheaper per call than createHash for small inputs.
  const input = parts.length === 1 ? (parts[0] as Uint8Array) : Buffer.concat(parts);
  return hash('sha256', input, 'buffer');
}

/** SHA-256 of one prefix byte then `parts`, copied into one buffer (the tree's hot path). */
function prefixed(prefix: number, ...parts: Uint8Array[]): Uint8Array {
  let length = 1;
  for (const part of parts) length += part.length;
  const input = Buffer.allocUnsafe(length);
  input[0] = prefix;
  let at = 1;
  for (const part of parts) {
    input.set(part, at);
    at += part.length;
  }
  return hash('sha256', input, 'buffer');
}

/** The hash of the empty tree. */
export const EMPTY_ROOT: Uint8Array = sha256();

export function leafHash(data: Uint8Array): Uint8Array {
  return prefixed(0x00, data);
}

export function nodeHash(left: Uint8Array, right: Uint8Array): Uint8Array {
  return prefixed(0x01, left, right);
}

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
 * A Merkle tree over given leaf hashes, with every level kept so that the
 * root and each audit path cost no more hashing than building it once.
 */
export class MerkleTree {
  readonly #levels: Uint8Array[][];
  #hexLevels: string[][] | null = null;

  constructor(leafHashes: readonly Uint8Array[]) {
    const levels: Uint8Array[][] = [[...leafHashes]];
    for (let level = levels[0] as Uint8Array[]; level.length > 1; ) {
      const up: Uint8Array[] = [];
      for (let i = 0; i < level.length; i += 2) {
        up.push(
          i + 1 < level.length
            ? nodeHash(level[i] as Uint8Array, level[i + 1] as Uint8Array)
            : (level[i] as Uint8Array),
        );
      }
      levels.push(up);
      level = up;
    }
    this.#levels = levels;
  }

  static fromLeaves(leaves: readonly Uint8Array[]): MerkleTree {
    return new MerkleTree(leaves.map(leafHash));
  }

  get size(): number {
    return (this.#levels[0] as Uint8Array[]).length;
  }

  get root(): Uint8Array {
    return this.size === 0 ? EMPTY_ROOT : ((this.#levels.at(-1) as Uint8Array[])[0] as Uint8Array);
  }

  /** The audit path of leaf `index`, from the leaf's sibling up (RFC 9162 PATH). */
  inclusionProof(index: number): Uint8Array[] {
    checkSize(index, 'leaf index');
    check(index < this.size, 'MERKLE_ARGUMENT', `leaf index ${index} is outside a tree of ${this.size}`);
    const path: Uint8Array[] = [];
    let i = index;
    for (const level of this.#levels.slice(0, -1)) {
      const sibling = i ^ 1;
      if (sibling < level.length) path.push(level[sibling] as Uint8Array);
      i >>= 1;
    }
    return path;
  }

  /**
   * The audit path of leaf `index` as hex strings. Each node is hex-encoded
   * at most once per tree, when a path first needs it: one receipt costs
   * O(log n) encodings, receipts for all n leaves O(n) in all.
   */
  inclusionProofHex(index: number): string[] {
    checkSize(index, 'leaf index');
    check(index < this.size, 'MERKLE_ARGUMENT', `leaf index ${index} is outside a tree of ${this.size}`);
    this.#hexLevels ??= this.#levels.map(() => []);
    const path: string[] = [];
    let i = index;
    for (let depth = 0; depth < this.#levels.length - 1; depth++) {
      const sibling = i ^ 1;
      const level = this.#levels[depth] as Uint8Array[];
      if (sibling < level.length) {
        const hexLevel = this.#hexLevels[depth] as string[];
        path.push((hexLevel[sibling] ??= Buffer.from(level[sibling] as Uint8Array).toString('hex')));
      }
      i >>= 1;
    }
    return path;
  }

  /** The hash of leaves [from, to) when that range is a subtree of this tree. */
  #subtree(from: number, to: number): Uint8Array {
    if (to - from === 1) return (this.#levels[0] as Uint8Array[])[from] as Uint8Array;
    const k = largestPowerOfTwoBelow(to - from);
    return nodeHash(this.#subtree(from, from + k), this.#subtree(from + k, to));
  }

  /** The consistency proof from the first `size` leaves to the whole tree (RFC 9162 PROOF). */
  consistencyProof(size: number): Uint8Array[] {
    checkSize(size, 'first size');
    check(size <= this.size, 'MERKLE_ARGUMENT', `first size ${size} exceeds the tree size ${this.size}`);
    if (size === 0 || size === this.size) return [];
    const proof: Uint8Array[] = [];
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
    return proof;
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
