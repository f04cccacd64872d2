/**
 * Subject pseudonyms, computed on the member's machine: the vault only ever
 * sees HMAC-SHA-256(consortium pseudonym key, "medvault-subject-v1\n" ‖ id),
 * never the patient identifier itself.
 */
import { createHmac } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { check, fail } from '../../errors.ts';
import { HASH } from '../../formats.ts';
import { ioError } from './pump.ts';

/** The pseudonym of patient identifier `identifier` under the 32-byte `key`. */
export function pseudonym(identifier: string, key: Uint8Array): string {
  check(key.length === 32, 'KEY_INVALID', 'a pseudonym key is 32 bytes');
  return createHmac('sha256', key).update(`medvault-subject-v1\n${identifier}`, 'utf8').digest('hex');
}

/**
 * A subject as the vault sees it: a 64-hex keyed pseudonym. Anything else is
 * a patient identifier, turned into its pseudonym here with the consortium's
 * pseudonym key (`keyFile`, or MEDVAULT_PSEUDONYM_KEY), so the identifier
 * itself never leaves this machine.
 */
export async function subjectOf(value: string, keyFile: string | undefined): Promise<string> {
  if (HASH.test(value)) return value;
  const file = keyFile ?? process.env.MEDVAULT_PSEUDONYM_KEY;
  if (!file) {
    fail(
      'INVALID_ARGUMENT',
      'a patient identifier needs the pseudonym key: --pseudonym-key FILE (or MEDVAULT_PSEUDONYM_KEY)',
    );
  }
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw ioError(err, `cannot read pseudonym key ${file}`);
  }
  const key = Buffer.from(text.trim(), 'hex');
  check(key.length === 32, 'KEY_INVALID', `${file} is not a 32-byte hex pseudonym key`);
  return pseudonym(value, key);
}
