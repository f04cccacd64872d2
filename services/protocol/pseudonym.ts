/**
 * Subject pseudonyms: the vault only ever sees
 * HMAC-SHA-256(consortium subject key, "medvault-subject-v1\n" ‖ patient id),
 * computed on the member's machine (the SDK, the CLI, the web console).
 */
import { hmacSha256 } from '../../crypto/primitives.ts';
import { check } from '../../errors.ts';

/** The pseudonym of patient identifier `identifier` under the 32-byte `key`. */
export function pseudonym(identifier: string, key: Uint8Array): string {
  check(key.length === 32, 'KEY_INVALID', 'a pseudonym key is 32 bytes');
  return Buffer.from(hmacSha256(key, Buffer.from(`medvault-subject-v1\n${identifier}`, 'utf8'))).toString('hex');
}
