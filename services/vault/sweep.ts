/**
 * The post-erasure sweep: looking for any trace of erased records where the
 * vault could have left one.
 *
 * Headers are gone by then, so they cannot be searched for directly. Before
 * an erasure deletes them, `makeProbes` keeps salted SHA-256 hashes of every
 * base64 token of 43 or more characters in them (X25519 shares and wrapped
 * file keys: 256 bits of randomness each, so the hashes reveal nothing); the
 * sweep slides a 43-character window over every run of base64 characters in
 * a file and reports any window whose salted hash is a probe. Ciphertext
 * hashes and key ids are searched for as plain text in logs (they are kept
 * by design in the ledger's tombstones and the node's 410 records).
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Finding, SweepReport } from '../protocol/views.ts';

export type { Finding, SweepReport };

export const WINDOW = 43;
const RUN = /[A-Za-z0-9+/]{43,}/g;

export interface Probes {
  salt: string;
  hashes: string[];
}

function digest(salt: Buffer, token: string): string {
  return createHash('sha256').update(salt).update(token, 'latin1').digest('hex');
}

/** Probes for every base64 run in `headers` (each window of WINDOW characters). */
export function makeProbes(headers: readonly Uint8Array[]): Probes {
  const salt = randomBytes(16);
  const hashes = new Set<string>();
  for (const header of headers) {
    for (const run of Buffer.from(header).toString('latin1').match(RUN) ?? []) {
      for (let i = 0; i + WINDOW <= run.length; i++) hashes.add(digest(salt, run.slice(i, i + WINDOW)));
    }
  }
  return { salt: salt.toString('hex'), hashes: [...hashes] };
}

/** How many windows of `bytes` match a probe. */
export function countProbeHits(bytes: Uint8Array, probes: Probes): number {
  if (probes.hashes.length === 0) return 0;
  const salt = Buffer.from(probes.salt, 'hex');
  const wanted = new Set(probes.hashes);
  let hits = 0;
  for (const run of Buffer.from(bytes).toString('latin1').match(RUN) ?? []) {
    for (let i = 0; i + WINDOW <= run.length; i++) if (wanted.has(digest(salt, run.slice(i, i + WINDOW)))) hits++;
  }
  return hits;
}

/** Scans files for header probes and for plain-text needles (ciphertext hashes, key ids). */
export async function scanFiles(
  files: readonly string[],
  probes: Probes,
  needles: readonly string[],
): Promise<{ checked: string[]; findings: Finding[] }> {
  const checked: string[] = [];
  const findings: Finding[] = [];
  for (const file of files) {
    let bytes: Buffer;
    try {
      bytes = await readFile(file);
    } catch {
      continue; // gone (a WAL after a checkpoint): nothing there
    }
    checked.push(file);
    const hits = countProbeHits(bytes, probes);
    if (hits > 0) findings.push({ where: file, what: 'header bytes (wrapped file keys or shares)', count: hits });
    const text = bytes.toString('latin1');
    for (const needle of needles) {
      let count = 0;
      for (let at = text.indexOf(needle); at >= 0; at = text.indexOf(needle, at + 1)) count++;
      if (count > 0) findings.push({ where: file, what: `"${needle}"`, count });
    }
  }
  return { checked, findings };
}
