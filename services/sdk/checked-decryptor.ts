/**
 * A fetched record's decryption, shared by the SDK and the web console: the
 * served age file is decrypted with the member's identity while its payload
 * (everything after the header the node rewrapped for this reader) is hashed,
 * and at the end the hash must be the one anchored for the record.
 */
import { createHash } from 'node:crypto';
import type { Receipt } from '../../anchor/receipt.ts';
import { AgeDecryptor, type StreamCore } from '../../crypto/age.ts';
import type { X25519Identity } from '../../crypto/x25519.ts';
import { fail } from '../../errors.ts';

/** Decrypts a served age file and, at the end, checks its payload's SHA-256 against the anchored hash. */
export class CheckedDecryptor implements StreamCore {
  readonly #inner: AgeDecryptor;
  readonly #hash = createHash('sha256');
  readonly #expected: string;
  #skip: number;

  constructor(identity: X25519Identity, headerLength: number, expected: string) {
    this.#inner = new AgeDecryptor([identity]);
    this.#skip = headerLength;
    this.#expected = expected;
  }

  update(data: Uint8Array, out: Buffer[]): void {
    const skipped = Math.min(this.#skip, data.length);
    this.#skip -= skipped;
    if (skipped < data.length) this.#hash.update(data.subarray(skipped));
    this.#inner.update(data, out);
  }

  final(out: Buffer[]): void {
    this.#inner.final(out);
    const actual = this.#hash.digest('hex');
    if (actual !== this.#expected) {
      fail('STORE_INTEGRITY', `the served ciphertext hashes to ${actual}, the ledger says ${this.#expected}`);
    }
  }
}

/**
 * A receipt a fetch is served with, from its header `name` (base64 JSON): RECEIPT_INVALID when
 * it is absent or malformed, or about another record than `id`. Its signature and signer are
 * the caller's to verify (against the node keys it trusts).
 */
export function servedReceipt(headers: { get(name: string): string | null }, name: string, id: string): Receipt {
  let receipt: Receipt;
  try {
    receipt = JSON.parse(Buffer.from(headers.get(name) ?? '', 'base64').toString('utf8')) as Receipt;
  } catch {
    return fail('RECEIPT_INVALID', `the node sent no ${name}`);
  }
  if (receipt?.event?.recordId !== id) fail('RECEIPT_INVALID', 'the receipts served are for another record');
  return receipt;
}
