/** Small helpers the CLI's command modules share. */
import { openSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { ReadStream, WriteStream } from 'node:tty';
import { fail, MedvaultError } from '../../errors.ts';
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

/** Bytes typed ahead on the terminal past the last answer (a second question reads them first). */
let typedAhead: number[] = [];

/**
 * Asks on the terminal (/dev/tty, as age does, so stdin may carry the data): the answer,
 * without echo when `hidden` (a passphrase). INVALID_ARGUMENT when there is no terminal;
 * Ctrl-C or Ctrl-D abandons.
 */
export async function askTerminal(question: string, hidden = false): Promise<string> {
  let fd: number;
  try {
    fd = openSync('/dev/tty', 'r+');
  } catch {
    return fail('INVALID_ARGUMENT', `no terminal to ask on (${question.trim()})`);
  }
  const input = new ReadStream(fd);
  const output = new WriteStream(fd);
  input.setRawMode(true);
  output.write(question);
  try {
    return await new Promise<string>((resolve, reject) => {
      let answer = '';
      const take = (bytes: number[]) => {
        for (let i = 0; i < bytes.length; i++) {
          const byte = bytes[i] as number;
          if (byte === 0x0d || byte === 0x0a) {
            typedAhead = bytes.slice(i + 1);
            resolve(answer);
            return true;
          }
          if (byte === 0x03 || byte === 0x04) {
            typedAhead = [];
            reject(new MedvaultError('INVALID_ARGUMENT', 'abandoned'));
            return true;
          }
          if (byte === 0x7f || byte === 0x08) answer = answer.slice(0, -1);
          else answer += String.fromCharCode(byte);
          if (!hidden) output.write(Buffer.from([byte]));
        }
        return false;
      };
      const pending = typedAhead;
      typedAhead = [];
      if (take(pending)) return;
      input.on('data', (data: Buffer) => take([...data]));
    });
  } finally {
    output.write('\n');
    input.setRawMode(false);
    input.destroy();
  }
}

/** A progress bar on stderr with speed and time left, when stderr is a terminal and `show`. */
export async function progressBar(
  label: string,
  show: boolean,
): Promise<{
  update(done: number, total: number): void;
  stop(): void;
}> {
  if (!show || !process.stderr.isTTY) return { update() {}, stop() {} };
  const { SingleBar } = await import('cli-progress');
  const MiB = 1024 * 1024;
  const bar = new SingleBar({
    format: `${label} [{bar}] {percentage}% | {done}/{size} MiB | {speed} MiB/s | {eta_formatted} left`,
    stream: process.stderr,
    etaBuffer: 50,
  });
  const started = Date.now();
  let running = false;
  return {
    update(done, total) {
      const values = {
        done: (done / MiB).toFixed(1),
        size: (total / MiB).toFixed(1),
        speed: (done / MiB / Math.max((Date.now() - started) / 1000, 0.001)).toFixed(1),
      };
      if (!running) {
        bar.start(total, done, values);
        running = true;
      } else bar.update(done, values);
    },
    stop() {
      if (running) bar.stop();
      running = false;
    },
  };
}
