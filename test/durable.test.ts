/** durable.ts: writes that survive short writes. */
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { writevAll } from '../durable.ts';
import { bytes, tempDir } from './helpers.ts';

describe('writevAll', () => {
  it('writes every piece in order at the position, again for what each short write left', async () => {
    const path = join(tempDir('medvault-writev-'), 'file');
    const real = await open(path, 'w+');
    try {
      await real.write(Buffer.from('0123456789'), 0, 10, 0);
      // A handle that writes at most 5 bytes per call, as a disk under pressure may.
      const short = {
        writev: async (pieces: Uint8Array[], position?: number | null) => {
          const first = Buffer.concat(pieces).subarray(0, 5);
          return real.writev([first], position ?? undefined);
        },
      };
      const pieces = [bytes(7, 1), bytes(3, 2), bytes(0, 3), bytes(9, 4)];
      const written = await writevAll(short as never, pieces, 4);
      expect(written).toBe(19);
      const file = await readFile(path);
      expect(file.subarray(0, 4).toString()).toBe('0123');
      expect(file.subarray(4)).toEqual(Buffer.concat(pieces));
    } finally {
      await real.close();
    }
  });
});
