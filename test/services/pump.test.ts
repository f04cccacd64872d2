/**
 * coreReadable: a core's output over a file or a stream, as an upload's body.
 * A file is read through two reused buffers, so what matters is that no
 * output piece is a view of them: pieces are kept as they come (not copied)
 * and only decrypted once the stream has ended.
 */
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { AgeEncryptor, decrypt } from '../../crypto/age.ts';
import { X25519Identity } from '../../crypto/x25519.ts';
import { coreReadable } from '../../services/sdk/pump.ts';
import { bytes, tempDir } from '../helpers.ts';

const CHUNK = 64 * 1024;
const BLOCK = 1024 * 1024; // pump's read size
const alice = X25519Identity.generate();
const dir = tempDir();

async function collect(stream: Readable): Promise<Buffer[]> {
  const pieces: Buffer[] = [];
  for await (const piece of stream) pieces.push(piece as Buffer);
  return pieces;
}

const openFds = () => readdirSync('/proc/self/fd').length;

describe('coreReadable', () => {
  it('encrypts a file of any size around the chunk and read-block boundaries; every piece stays valid', async () => {
    const sizes = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, BLOCK, BLOCK + 1, 2 * BLOCK + CHUNK, 3 * BLOCK + 12_345];
    for (const size of sizes) {
      const plain = bytes(size, size + 7);
      const path = join(dir, `plain-${size}`);
      writeFileSync(path, plain);
      const seen: number[] = [];
      const pieces = await collect(coreReadable(new AgeEncryptor([alice.recipient]), { path }, (n) => seen.push(n)));
      expect(Buffer.compare(decrypt([alice], Buffer.concat(pieces)), plain), `size ${size}`).toBe(0);
      expect(seen.at(-1) ?? 0).toBe(size);
      expect(seen).toEqual([...seen].sort((a, b) => a - b));
    }
  });

  it('encrypts a stream source the same way', async () => {
    const plain = bytes(BLOCK + 999, 3);
    const source = Readable.from([plain.subarray(0, 10), plain.subarray(10, CHUNK + 5), plain.subarray(CHUNK + 5)]);
    let last = 0;
    const pieces = await collect(
      coreReadable(new AgeEncryptor([alice.recipient]), { stream: source }, (n) => {
        last = n;
      }),
    );
    expect(Buffer.compare(decrypt([alice], Buffer.concat(pieces)), plain)).toBe(0);
    expect(last).toBe(plain.length);
  });

  it('a missing file is IO_ERROR naming it, and no file stays open', async () => {
    const before = openFds();
    const missing = join(dir, 'no-such-file');
    await expect(collect(coreReadable(new AgeEncryptor([alice.recipient]), { path: missing }))).rejects.toMatchObject({
      code: 'IO_ERROR',
      message: expect.stringContaining(missing),
    });
    expect(openFds()).toBe(before);
  });

  it('a failing stream source fails the output with its error', async () => {
    const source = new Readable({
      read() {
        this.destroy(new Error('disk went away'));
      },
    });
    await expect(collect(coreReadable(new AgeEncryptor([alice.recipient]), { stream: source }))).rejects.toThrow(
      'disk went away',
    );
  });

  it('destroyed part-way (the node refused the upload), it closes the file', async () => {
    const path = join(dir, 'big');
    writeFileSync(path, bytes(4 * BLOCK, 9));
    const before = openFds();
    const stream = coreReadable(new AgeEncryptor([alice.recipient]), { path });
    for await (const _ of stream) break; // for-await's break destroys the stream
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(stream.destroyed).toBe(true);
    expect(openFds()).toBe(before);
  });
});
