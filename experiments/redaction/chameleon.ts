/**
 * A discrete-log chameleon hash (Krawczyk–Rabin) over ristretto255, the
 * prime-order group of @noble/curves (node:crypto has no group arithmetic).
 *
 *   keys:      trapdoor x (a scalar), public key Y = x·G
 *   hash:      CH(m, r) = h(m)·G + r·Y          h(m) = SHA-512(label ‖ m) mod ℓ
 *   collision: r' = r + (h(m) − h(m'))·x⁻¹ mod ℓ, so CH(m', r') = CH(m, r)
 *
 * Without x, finding a collision is as hard as the discrete logarithm of Y.
 * With two messages that collide under one key, anyone recovers x:
 * x = (h(m) − h(m')) / (r' − r). So each key must serve one link and one
 * redaction at most: the redactable ledger draws a fresh key per block.
 */
import { createHash, randomBytes } from 'node:crypto';
import { ristretto255 } from '@noble/curves/ed25519.js';
import { check, fail } from '../../errors.ts';

const Point = ristretto255.Point;
const ORDER = Point.Fn.ORDER;
const LABEL = Buffer.from('medvault/chameleon/v1\n');

const mod = (a: bigint) => ((a % ORDER) + ORDER) % ORDER;

/** Little-endian 32 bytes to a scalar; INVALID_ARGUMENT unless canonical (< ℓ). */
export function scalarFromBytes(bytes: Uint8Array): bigint {
  check(bytes.length === 32, 'INVALID_ARGUMENT', 'a scalar is 32 bytes');
  const value = BigInt(`0x${Buffer.from(bytes).reverse().toString('hex')}`);
  check(value < ORDER, 'INVALID_ARGUMENT', 'a scalar must be below the group order');
  return value;
}

export function scalarToBytes(value: bigint): Uint8Array {
  return new Uint8Array(Buffer.from(value.toString(16).padStart(64, '0'), 'hex').reverse());
}

/** A uniformly random non-zero scalar (64 random bytes reduced: negligible bias). */
export function randomScalar(): bigint {
  for (;;) {
    const value = mod(BigInt(`0x${randomBytes(64).toString('hex')}`));
    if (value !== 0n) return value;
  }
}

export function messageScalar(message: Uint8Array): bigint {
  return mod(BigInt(`0x${createHash('sha512').update(LABEL).update(message).digest('hex')}`));
}

export interface ChameleonKeyPair {
  trapdoor: bigint;
  publicKey: Uint8Array;
}

export function chameleonKeygen(): ChameleonKeyPair {
  const trapdoor = randomScalar();
  return { trapdoor, publicKey: Point.BASE.multiply(trapdoor).toBytes() };
}

function publicPoint(publicKey: Uint8Array) {
  let point: InstanceType<typeof Point>;
  try {
    point = Point.fromBytes(publicKey);
  } catch {
    return fail('INVALID_ARGUMENT', 'not a ristretto255 public key');
  }
  check(!point.is0(), 'INVALID_ARGUMENT', 'the identity is not a chameleon public key');
  return point;
}

/** CH(m, r) under `publicKey`, as the 32-byte encoding of the point. */
export function chameleonHash(publicKey: Uint8Array, message: Uint8Array, randomness: bigint): Uint8Array {
  check(randomness >= 0n && randomness < ORDER, 'INVALID_ARGUMENT', 'randomness is a scalar below the group order');
  const y = publicPoint(publicKey);
  // No secret is involved in hashing or verifying: the faster non-constant-time path is fine.
  const h = messageScalar(message);
  const hg = h === 0n ? Point.ZERO : Point.BASE.multiplyUnsafe(h);
  const ry = randomness === 0n ? Point.ZERO : y.multiplyUnsafe(randomness);
  return hg.add(ry).toBytes();
}

/** With the trapdoor: the randomness that makes `newMessage` hash to what (message, randomness) did. */
export function chameleonCollision(
  trapdoor: bigint,
  message: Uint8Array,
  randomness: bigint,
  newMessage: Uint8Array,
): bigint {
  check(trapdoor > 0n && trapdoor < ORDER, 'INVALID_ARGUMENT', 'a trapdoor is a non-zero scalar');
  const inverse = Point.Fn.inv(trapdoor);
  return mod(randomness + (messageScalar(message) - messageScalar(newMessage)) * inverse);
}

/** What two collisions under one key give away: the trapdoor itself. */
export function trapdoorFromCollision(m1: Uint8Array, r1: bigint, m2: Uint8Array, r2: bigint): bigint {
  check(r1 !== r2, 'INVALID_ARGUMENT', 'two different randomness values are needed');
  return mod((messageScalar(m1) - messageScalar(m2)) * Point.Fn.inv(mod(r2 - r1)));
}
