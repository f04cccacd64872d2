/** Small helpers the CLI's command modules share. */
import { readFile, writeFile } from 'node:fs/promises';
import { fail } from '../../errors.ts';
import { ioError } from '../sdk/pump.ts';

/** commander: collects a repeatable option's values. */
export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

export async function readText(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw ioError(err, `cannot read ${what} ${path}`);
  }
}

export function parseJsonFile(text: string, path: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return fail('INVALID_ARGUMENT', `${path} is not JSON`);
  }
}

/** Creates `path` (mode 0600) holding `text`; never replaces an existing file (IO_ERROR). */
export async function writeNewFile(path: string, text: string): Promise<void> {
  try {
    await writeFile(path, text, { mode: 0o600, flag: 'wx' });
  } catch (err) {
    throw ioError(err, `cannot create ${path}`);
  }
}
