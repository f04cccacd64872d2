/**
 * Subjects as a member's machine gives them: a pseudonym, or a patient
 * identifier turned into one here (services/protocol/pseudonym.ts), never
 * sent as it is.
 */
import { readFile } from 'node:fs/promises';
import { check, fail } from '../../errors.ts';
import { HASH } from '../../formats.ts';
import { pseudonym } from '../protocol/pseudonym.ts';
import { ioError } from './pump.ts';

export { pseudonym };

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
