/** Small helpers the CLI's command modules share. */
import { readFile } from 'node:fs/promises';
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
