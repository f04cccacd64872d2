/** ASCII armor: strict PEM as the age spec asks, and streaming in any pieces. */

import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { createDecryptStream, decrypt, encrypt } from '../../crypto/age.ts';
import { ArmorDecoder, ArmorEncoder } from '../../crypto/armor.ts';
import { X25519Identity } from '../../crypto/x25519.ts';
import { bytes, codeOf } from '../helpers.ts';

const alice = X25519Identity.generate();

function armorDecode(text: string, piece = text.length): Buffer {
  const decoder = new ArmorDecoder();
  const out: Buffer[] = [];
  const data = Buffer.from(text, 'latin1');
  for (let i = 0; i < data.length; i += piece) out.push(...decoder.update(data.subarray(i, i + piece)));
  out.push(...decoder.final());
  return Buffer.concat(out);
}

function armorEncode(data: Uint8Array, piece = data.length || 1): string {
  const encoder = new ArmorEncoder();
  let text = '';
  for (let i = 0; i < data.length; i += piece) text += encoder.update(data.subarray(i, i + piece));
  return text + encoder.final();
}

describe('encoding', () => {
  it.each([0, 1, 47, 48, 49, 96, 1000])('%i bytes: 64-column lines, padded, same for any input split', (size) => {
    const data = bytes(size, size + 1);
    const text = armorEncode(data);
    const lines = text.trimEnd().split('\n');
    expect(lines[0]).toBe('-----BEGIN AGE ENCRYPTED FILE-----');
    expect(lines.at(-1)).toBe('-----END AGE ENCRYPTED FILE-----');
    for (const line of lines.slice(1, -2)) expect(line.length).toBe(64);
    expect(armorEncode(data, 7)).toBe(text);
    expect(Buffer.compare(armorDecode(text, 5), data)).toBe(0);
  });
});

/**
 * Sets a spare bit in the last data character of a padded base64 line: the
 * same length, the same alphabet, the same decoded bytes, only not canonical.
 */
function nonCanonical(line: string): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  const at = line.indexOf('=') - 1;
  if (at < 0) throw new Error(`not a padded line: ${line}`);
  const index = alphabet.indexOf(line[at] as string);
  if (index & 1) throw new Error('the spare bit is already set');
  const edited = line.slice(0, at) + alphabet[index | 1] + line.slice(at + 1);
  if (edited.length !== line.length || !/^[A-Za-z0-9+/]+=*$/.test(edited)) throw new Error('not a one-bit edit');
  if (!Buffer.from(edited, 'base64').equals(Buffer.from(line, 'base64'))) throw new Error('decodes differently');
  return edited;
}

describe('strict decoding', () => {
  const good = armorEncode(bytes(200, 3));
  const lines = good.split('\n');

  it('accepts whitespace around the armor and CRLF line ends', () => {
    expect(armorDecode(`\n  ${good}\n\n  `).length).toBe(200);
    expect(armorDecode(good.replaceAll('\n', '\r\n')).length).toBe(200);
  });

  it.each<[string, string]>([
    ['a missing END line', lines.slice(0, -2).join('\n')],
    ['text before BEGIN', `hello\n${good}`],
    ['text after END', `${good}more`],
    [
      'a short line that is not the last',
      [lines[0], (lines[1] as string).slice(0, 60), lines[2], ...lines.slice(3)].join('\n'),
    ],
    ['a line of 68 columns', [lines[0], `${lines[1]}AAAA`, ...lines.slice(2)].join('\n')],
    [
      // 200 bytes: four full lines, then the padded last one (lines ends with END and '').
      'non-canonical base64 (spare bits set)',
      [...lines.slice(0, 5), nonCanonical(lines[5] as string), ...lines.slice(6)].join('\n'),
    ],
    [
      'characters outside base64',
      [lines[0], (lines[1] as string).replace('A', '*').replace(/^(.)/, '*'), ...lines.slice(2)].join('\n'),
    ],
    ['a lowercase label', good.replace('AGE ENCRYPTED FILE', 'age encrypted file')],
  ])('rejects %s', (_name, text) => {
    expect(codeOf(() => armorDecode(text))).toBe('AGE_ARMOR_MALFORMED');
  });

  it('rejects padding before the last line', () => {
    const padded = armorEncode(bytes(46, 2)).split('\n'); // one line with "=="
    const text = [padded[0], padded[1], padded[1], padded[2], ''].join('\n');
    expect(codeOf(() => armorDecode(text))).toBe('AGE_ARMOR_MALFORMED');
  });

  it('armored age files decrypt whole and in pieces', async () => {
    const plain = bytes(150_000, 4);
    const file = encrypt([alice.recipient], plain, { armor: true });
    expect(Buffer.compare(decrypt([alice], file), plain)).toBe(0);
    // In pieces through the stream: 7 bytes (lines and base64 groups cut anywhere) and 4,099.
    for (const piece of [7, 4_099]) {
      const pieces = Array.from({ length: Math.ceil(file.length / piece) }, (_, i) =>
        file.subarray(i * piece, (i + 1) * piece),
      );
      const out: Buffer[] = [];
      await pipeline(Readable.from(pieces), createDecryptStream([alice]), async (source: AsyncIterable<Buffer>) => {
        for await (const chunk of source) out.push(chunk);
      });
      expect(Buffer.compare(Buffer.concat(out), plain), `pieces of ${piece}`).toBe(0);
    }
  });
});
