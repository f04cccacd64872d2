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
 * subject key, so the identifier itself never leaves this machine. The key
 * comes from `source`: the member's node, sealed to the member's own key
 * (VaultClient.subjectKey), or a key file (`--pseudonym-key`, or
 * MEDVAULT_PSEUDONYM_KEY) for a machine that works offline.
 */
export async function subjectOf(
  value: string,
  source: { keyFile?: string | undefined; client?: { subjectKey(): Promise<Uint8Array> } },
): Promise<string> {
  if (HASH.test(value)) return value;
  const file = source.keyFile ?? process.env.MEDVAULT_PSEUDONYM_KEY;
  if (!file) {
    if (source.client) return pseudonym(value, await source.client.subjectKey());
    fail(
      'INVALID_ARGUMENT',
      'a patient identifier needs the subject key: from the node (--key), or --pseudonym-key FILE',
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
