/**
 * RFC 6962 / RFC 9162 Merkle trees. Known answers come from the RFC's own
 * recursive definitions (MTH, PATH, SUBPROOF), re-implemented here on @noble's
 * SHA-256, independent of crypto/merkle.ts; every proof of every tree of size
 * 1..64 must match them and verify, and mutated proofs, indices, sizes and
 * roots must not.
 */
import { sha256 as nobleSha256 } from '@noble/hashes/sha2.js';
import { describe, expect, it } from 'vitest';
import {
  EMPTY_ROOT,
  leafHash,
  leafHashHex,
  MerkleTree,
  verifyConsistency,
  verifyInclusion,
} from '../../crypto/merkle.ts';
import { isMedvaultError } from '../../errors.ts';
import { flipBits } from '../helpers.ts';

const H = (...parts: Uint8Array[]) => nobleSha256(Uint8Array.from(parts.flatMap((p) => [...p])));
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const k = (n: number) => 2 ** Math.ceil(Math.log2(n) - 1); // largest power of two < n

function MTH(d: Uint8Array[]): Uint8Array {
  if (d.length === 0) return H();
  if (d.length === 1) return H(Uint8Array.of(0), d[0] as Uint8Array);
  return H(Uint8Array.of(1), MTH(d.slice(0, k(d.length))), MTH(d.slice(k(d.length))));
}

function PATH(m: number, d: Uint8Array[]): Uint8Array[] {
  if (d.length === 1) return [];
  const s = k(d.length);
  return m < s ? [...PATH(m, d.slice(0, s)), MTH(d.slice(s))] : [...PATH(m - s, d.slice(s)), MTH(d.slice(0, s))];
}

function SUBPROOF(m: number, d: Uint8Array[], b: boolean): Uint8Array[] {
  if (m === d.length) return b ? [] : [MTH(d)];
  const s = k(d.length);
  return m <= s
    ? [...SUBPROOF(m, d.slice(0, s), b), MTH(d.slice(s))]
    : [...SUBPROOF(m - s, d.slice(s), false), MTH(d.slice(0, s))];
}

const data = Array.from({ length: 64 }, (_, i) => Uint8Array.from({ length: i % 5 }, (_, j) => i * 7 + j));
const trees = Array.from({ length: 65 }, (_, n) => MerkleTree.fromLeaves(data.slice(0, n)));

function throwsArgument(fn: () => unknown): boolean {
  try {
    fn();
    return false;
  } catch (err) {
    return isMedvaultError(err, 'MERKLE_ARGUMENT');
  }
}

describe('hashes', () => {
  it('matches well-known values: empty tree and the empty leaf', () => {
    expect(hex(EMPTY_ROOT)).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(hex(leafHash(new Uint8Array(0)))).toBe('6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d');
  });

  it('roots of trees of size 0..64 match MTH', () => {
    for (let n = 0; n <= 64; n++) expect(hex((trees[n] as MerkleTree).root)).toBe(hex(MTH(data.slice(0, n))));
  });

  it('a leaf hash of text is the leaf hash of its UTF-8 bytes', () => {
    // Short and long, ASCII and not, and one built by concatenation. The reused input buffer
    // holds 16 KiB: '€' (3 bytes) x 5,461 fills it exactly; x 5,462 is one character past;
    // 'é' x 9,000 is 18,000 bytes in 9,000 UTF-16 units, past the buffer in bytes but not in
    // units (a guard counting units would truncate it).
    const built = ['{"a":', String(1), ',"b":"', 'x'.repeat(40), '"}'].reduce((a, b) => a + b);
    const texts = ['', '{"a":1}', 'é — ✓ 𝄞', '\0\n"', built, 'a'.repeat(20_000), 'é'.repeat(6_000)];
    texts.push('€'.repeat(5_461), '€'.repeat(5_462), 'é'.repeat(9_000), `${'a'.repeat(16_382)}é`);
    expect(Buffer.byteLength(texts[7] as string)).toBe(16 * 1024 - 1);
    for (const text of texts) {
      expect(leafHashHex(text)).toBe(hex(leafHash(Buffer.from(text, 'utf8'))));
    }
  });

  it('a tree over hex leaf hashes is the tree over the same hashes as bytes: roots, paths, proofs', () => {
    for (let n = 0; n <= 64; n++) {
      const tree = trees[n] as MerkleTree;
      const fromHex = MerkleTree.fromLeafHex(data.slice(0, n).map((d) => hex(leafHash(d))));
      expect(fromHex.rootHex).toBe(hex(MTH(data.slice(0, n))));
      for (let m = 0; m < n; m++) expect(fromHex.inclusionProofHex(m)).toEqual(tree.inclusionProof(m).map(hex));
      for (let m = 0; m <= n; m++)
        expect(fromHex.consistencyProof(m).map(hex)).toEqual(tree.consistencyProof(m).map(hex));
    }
  });
});

describe('inclusion proofs, every leaf of trees of size 1..64', () => {
  it('equal PATH and verify', () => {
    for (let n = 1; n <= 64; n++) {
      const tree = trees[n] as MerkleTree;
      for (let m = 0; m < n; m++) {
        const proof = tree.inclusionProof(m);
        expect(proof.map(hex)).toEqual(PATH(m, data.slice(0, n)).map(hex));
        expect(verifyInclusion(m, n, leafHash(data[m] as Uint8Array), proof, tree.root)).toBe(true);
      }
    }
  });

  it('reject mutated proofs, indices, sizes, leaves and roots', () => {
    for (let n = 1; n <= 64; n++) {
      const tree = trees[n] as MerkleTree;
      for (let m = 0; m < n; m++) {
        const leaf = leafHash(data[m] as Uint8Array);
        const proof = tree.inclusionProof(m);
        const ok = (i: number, size: number, l: Uint8Array, p: Uint8Array[], r: Uint8Array) =>
          verifyInclusion(i, size, l, p, r);
        for (let j = 0; j < proof.length; j++) {
          const bad = proof.map((h, x) => (x === j ? flipBits(Uint8Array.from(h), j % 32) : h));
          expect(ok(m, n, leaf, bad, tree.root)).toBe(false);
        }
        if (n > 1) {
          expect(ok((m + 1) % n, n, leaf, proof, tree.root)).toBe(false);
          expect(ok(m, n, leaf, proof.slice(0, -1), tree.root)).toBe(false);
        }
        // A size whose tree gives this leaf a path of another shape must fail. (Where the
        // shape is the same, as for leaf 0 of 5 and of 6 leaves, the path cannot tell:
        // the signed block header is what fixes the size.)
        for (const size of [n + 1, n - 1, 2 * n]) {
          if (size > m && PATH(m, [...data, ...data].slice(0, size)).length !== proof.length) {
            expect(ok(m, size, leaf, proof, tree.root)).toBe(false);
          }
        }
        expect(ok(m, n, leaf, [...proof, leaf], tree.root)).toBe(false);
        expect(ok(m, n, flipBits(Uint8Array.from(leaf), 3), proof, tree.root)).toBe(false);
        expect(ok(m, n, leaf, proof, flipBits(Uint8Array.from(tree.root), 31))).toBe(false);
        expect(ok(n, n, leaf, proof, tree.root)).toBe(false);
      }
    }
  });

  it('edge cases: size 0 has no leaf; size 1 proves with an empty path', () => {
    expect(verifyInclusion(0, 0, leafHash(new Uint8Array(0)), [], EMPTY_ROOT)).toBe(false);
    const one = trees[1] as MerkleTree;
    expect(verifyInclusion(0, 1, one.root, [], one.root)).toBe(true);
    expect(verifyInclusion(0, 1, one.root, [one.root], one.root)).toBe(false);
  });
});

describe('consistency proofs, every pair of sizes up to 64', () => {
  it('equal SUBPROOF and verify', () => {
    for (let n = 1; n <= 64; n++) {
      const tree = trees[n] as MerkleTree;
      for (let m = 1; m < n; m++) {
        const proof = tree.consistencyProof(m);
        expect(proof.map(hex)).toEqual(SUBPROOF(m, data.slice(0, n), true).map(hex));
        expect(verifyConsistency(m, n, proof, (trees[m] as MerkleTree).root, tree.root)).toBe(true);
      }
    }
  });

  it('reject mutated proofs, sizes and roots', () => {
    for (let n = 2; n <= 64; n++) {
      const tree = trees[n] as MerkleTree;
      for (let m = 1; m < n; m++) {
        const r1 = (trees[m] as MerkleTree).root;
        const proof = tree.consistencyProof(m);
        for (let j = 0; j < proof.length; j++) {
          const bad = proof.map((h, x) => (x === j ? flipBits(Uint8Array.from(h), 7) : h));
          expect(verifyConsistency(m, n, bad, r1, tree.root)).toBe(false);
        }
        expect(verifyConsistency(m, n, proof.slice(0, -1), r1, tree.root)).toBe(false);
        expect(verifyConsistency(m, n, [...proof, r1], r1, tree.root)).toBe(false);
        expect(verifyConsistency(m, n, proof, tree.root, r1)).toBe(false);
        expect(verifyConsistency(m, n, proof, flipBits(Uint8Array.from(r1), 0), tree.root)).toBe(false);
        if (m + 1 < n) expect(verifyConsistency(m + 1, n, proof, r1, tree.root)).toBe(false);
        expect(verifyConsistency(n, m, proof, tree.root, r1)).toBe(false);
      }
    }
  });

  it('edge cases: equal sizes, the empty tree, an empty path', () => {
    const t = trees[7] as MerkleTree;
    expect(verifyConsistency(7, 7, [], t.root, t.root)).toBe(true);
    expect(verifyConsistency(7, 7, [t.root], t.root, t.root)).toBe(false);
    expect(verifyConsistency(7, 7, [], t.root, (trees[6] as MerkleTree).root)).toBe(false);
    expect(verifyConsistency(0, 7, [], EMPTY_ROOT, t.root)).toBe(true);
    expect(verifyConsistency(0, 7, [t.root], EMPTY_ROOT, t.root)).toBe(false);
    expect(verifyConsistency(0, 7, [], t.root, t.root)).toBe(false);
    expect(verifyConsistency(3, 7, [], (trees[3] as MerkleTree).root, t.root)).toBe(false);
    expect(t.consistencyProof(0)).toEqual([]);
    expect(t.consistencyProof(7)).toEqual([]);
  });
});

describe('malformed arguments are typed errors', () => {
  const h = new Uint8Array(32);
  it.each<[string, () => unknown]>([
    ['a fractional index', () => verifyInclusion(0.5, 2, h, [], h)],
    ['a negative size', () => verifyInclusion(0, -1, h, [], h)],
    ['a 31-byte leaf hash', () => verifyInclusion(0, 1, new Uint8Array(31), [], h)],
    ['an empty root', () => verifyInclusion(0, 1, h, [], new Uint8Array(0))],
    ['a 33-byte proof element', () => verifyInclusion(0, 2, h, [new Uint8Array(33)], h)],
    ['a proof that is not an array', () => verifyConsistency(1, 2, 'x' as never, h, h)],
    ['a string root', () => verifyConsistency(1, 2, [h], 'ab' as never, h)],
    ['NaN sizes', () => verifyConsistency(Number.NaN, 2, [h], h, h)],
    ['an index outside the tree', () => (trees[3] as MerkleTree).inclusionProof(3)],
    ['a first size above the tree', () => (trees[3] as MerkleTree).consistencyProof(4)],
    ['a 31-byte leaf hash in a tree', () => new MerkleTree([h, new Uint8Array(31)])],
    ['a hex leaf that is too short', () => MerkleTree.fromLeafHex(['ab'.repeat(32), 'ab'.repeat(31)])],
    ['a hex leaf with a non-hex digit first', () => MerkleTree.fromLeafHex([`x${'a'.repeat(63)}`, 'a'.repeat(64)])],
    ['a hex leaf with a non-hex digit last', () => MerkleTree.fromLeafHex(['a'.repeat(64), `${'a'.repeat(63)}g`])],
    ['a hex leaf deep in a larger tree', () => MerkleTree.fromLeafHex([...Array(6).fill('0'.repeat(64)), 'z'])],
    ['a lone hex leaf that is not hex', () => MerkleTree.fromLeafHex(['q'.repeat(64)])],
  ])('%s', (_name, fn) => {
    expect(throwsArgument(fn)).toBe(true);
  });
});
