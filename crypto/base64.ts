/**
 * Canonical base64 (RFC 4648 section 4, standard alphabet) as the age spec
 * requires: the header uses it unpadded, the armor padded. Decoders reject
 * any other alphabet, padding where it does not belong, and non-canonical
 * trailing bits (checked by re-encoding).
 */
const UNPADDED = /^[A-Za-z0-9+/]*$/;

/** Encodes without `=` padding. */
export function encodeUnpadded(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64').replace(/=+$/, '');
}

/** Decodes canonical unpadded base64; `null` when the text is not canonical. */
export function decodeUnpadded(text: string): Uint8Array | null {
  if (!UNPADDED.test(text) || text.length % 4 === 1) return null;
  const bytes = Buffer.from(text, 'base64');
  return encodeUnpadded(bytes) === text ? new Uint8Array(bytes) : null;
}

/** Decodes canonical unpadded base64 of exactly `length` bytes, else `null`. */
export function decodeUnpaddedExact(text: string, length: number): Uint8Array | null {
  const bytes = decodeUnpadded(text);
  return bytes !== null && bytes.length === length ? bytes : null;
}
