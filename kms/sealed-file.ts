/**
 * A JSON document sealed in a file: ChaCha20-Poly1305 under a key derived by
 * scrypt from a passphrase, or by HKDF from a key file. Every write draws a
 * fresh salt and nonce, writes a temporary beside the file with mode 0600,
 * fsyncs it, renames it over the file and fsyncs the directory: the file is
 * always either the old or the new document, and no backup or temporary
 * copy is left behind.
 *
 * Layout: {"v":1,"kdf":{"alg":"scrypt","salt","logN","r","p"} |
 * {"alg":"hkdf-keyfile","salt"},"nonce","sealed"} (base64 fields).
 */
import { randomBytes, scryptSync } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { aeadOpen, aeadSeal, hkdf } from '../crypto/primitives.ts';
import { writeFileAtomic } from '../durable.ts';
import { fail } from '../errors.ts';

export type SealingSecret = { passphrase: string } | { keyFile: Uint8Array };

const LOG_N = 15; // 32 MiB and about 0.1 s per derivation here
type Kdf = { alg: 'scrypt'; salt: string; logN: number; r: number; p: number } | { alg: 'hkdf-keyfile'; salt: string };

interface SealedLayout {
  v: 1;
  kdf: Kdf;
  nonce: string;
  sealed: string;
}

function deriveKey(secret: SealingSecret, kdf: Kdf): Uint8Array {
  const salt = Buffer.from(kdf.salt, 'base64');
  if ('passphrase' in secret) {
    if (kdf.alg !== 'scrypt') fail('KMS_LOCKED', 'this keystore is sealed with a key file, not a passphrase');
    const N = 2 ** kdf.logN;
    return new Uint8Array(scryptSync(secret.passphrase, salt, 32, { N, r: kdf.r, p: kdf.p, maxmem: 256 * N * kdf.r }));
  }
  if (kdf.alg !== 'hkdf-keyfile') fail('KMS_LOCKED', 'this keystore is sealed with a passphrase, not a key file');
  return hkdf(secret.keyFile, salt, 'medvault/keystore/v1');
}

/** Reads and opens a sealed file; null when it does not exist. */
export async function readSealed<T>(path: string, secret: SealingSecret): Promise<T | null> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  let layout: SealedLayout;
  try {
    layout = JSON.parse(text) as SealedLayout;
  } catch {
    return fail('KMS_CORRUPT', `${path} is not JSON`);
  }
  if (layout?.v !== 1 || !layout.kdf || !layout.nonce || !layout.sealed)
    fail('KMS_CORRUPT', `${path} is not a keystore`);
  const plain = aeadOpen(
    deriveKey(secret, layout.kdf),
    Buffer.from(layout.sealed, 'base64'),
    Buffer.from(layout.nonce, 'base64'),
  );
  if (plain === null) fail('KMS_LOCKED', 'wrong passphrase or key file, or the keystore was altered');
  return JSON.parse(plain.toString('utf8')) as T;
}

/** Seals `document` and atomically replaces the file with it. */
export async function writeSealed(path: string, secret: SealingSecret, document: unknown): Promise<void> {
  const salt = randomBytes(16).toString('base64');
  const kdf: Kdf =
    'passphrase' in secret ? { alg: 'scrypt', salt, logN: LOG_N, r: 8, p: 1 } : { alg: 'hkdf-keyfile', salt };
  const nonce = randomBytes(12);
  const sealed = aeadSeal(deriveKey(secret, kdf), Buffer.from(JSON.stringify(document), 'utf8'), nonce);
  const layout: SealedLayout = {
    v: 1,
    kdf,
    nonce: nonce.toString('base64'),
    sealed: Buffer.from(sealed).toString('base64'),
  };
  await writeFileAtomic(path, JSON.stringify(layout));
}
