/**
 * ASCII armor for age files: strict PEM (RFC 7468 section 3) with the label
 * "AGE ENCRYPTED FILE", padded base64 in 64-column lines. The decoder is
 * strict as the age spec asks: canonical base64, full lines but the last,
 * nothing but whitespace before BEGIN or after END; LF or CRLF line ends.
 * Both directions stream with bounded memory.
 */
import { check, fail } from '../errors.ts';

export const ARMOR_BEGIN = '-----BEGIN AGE ENCRYPTED FILE-----';
export const ARMOR_END = '-----END AGE ENCRYPTED FILE-----';
const COLUMNS = 64;
const BYTES_PER_LINE = 48;
const MAX_LINE = 1024; // longest line accepted before giving up on the input
const MAX_TRAILING_WHITESPACE = 1024;
const WHITESPACE = /^[ \t\r\n]*$/;
const PADDED = /^[A-Za-z0-9+/]*={0,2}$/;

export class ArmorEncoder {
  readonly #carry = Buffer.allocUnsafe(BYTES_PER_LINE);
  #carryLength = 0;
  #started = false;

  update(data: Uint8Array): string {
    let out = this.#begin();
    let offset = 0;
    if (this.#carryLength > 0) {
      const take = Math.min(BYTES_PER_LINE - this.#carryLength, data.length);
      this.#carry.set(data.subarray(0, take), this.#carryLength);
      this.#carryLength += take;
      offset = take;
      if (this.#carryLength < BYTES_PER_LINE) return out;
      out += `${this.#carry.toString('base64')}\n`;
      this.#carryLength = 0;
    }
    const whole = offset + Math.floor((data.length - offset) / BYTES_PER_LINE) * BYTES_PER_LINE;
    if (whole > offset) {
      const text = Buffer.from(data.buffer, data.byteOffset + offset, whole - offset).toString('base64');
      for (let i = 0; i < text.length; i += COLUMNS) out += `${text.slice(i, i + COLUMNS)}\n`;
    }
    this.#carry.set(data.subarray(whole));
    this.#carryLength = data.length - whole;
    return out;
  }

  final(): string {
    let out = this.#begin();
    if (this.#carryLength > 0) out += `${this.#carry.subarray(0, this.#carryLength).toString('base64')}\n`;
    return `${out}${ARMOR_END}\n`;
  }

  #begin(): string {
    if (this.#started) return '';
    this.#started = true;
    return `${ARMOR_BEGIN}\n`;
  }
}

type DecoderState = 'begin' | 'body' | 'end';

export class ArmorDecoder {
  #state: DecoderState = 'begin';
  #partial = '';
  #lastLineShort = false;
  #trailing = 0;

  /** Decodes the complete lines in `data`; returns the bytes they hold. */
  update(data: Uint8Array): Buffer[] {
    const out: Buffer[] = [];
    const text = this.#partial + Buffer.from(data.buffer, data.byteOffset, data.byteLength).toString('latin1');
    let start = 0;
    for (;;) {
      const lf = text.indexOf('\n', start);
      if (lf < 0) break;
      this.#line(text.slice(start, lf), out);
      start = lf + 1;
    }
    this.#partial = text.slice(start);
    if (this.#state === 'end') this.#whitespace(this.#partial);
    check(this.#partial.length <= MAX_LINE, 'AGE_ARMOR_MALFORMED', 'line too long');
    return out;
  }

  final(): Buffer[] {
    const out: Buffer[] = [];
    if (this.#partial !== '' && this.#state !== 'end') this.#line(this.#partial, out);
    this.#partial = '';
    check(this.#state === 'end', 'AGE_ARMOR_MALFORMED', `missing ${ARMOR_END}`);
    return out;
  }

  #whitespace(text: string): void {
    this.#trailing += text.length;
    check(WHITESPACE.test(text), 'AGE_ARMOR_MALFORMED', 'data after the armor end line');
    check(this.#trailing <= MAX_TRAILING_WHITESPACE, 'AGE_ARMOR_MALFORMED', 'too much whitespace after the armor');
  }

  #line(raw: string, out: Buffer[]): void {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    switch (this.#state) {
      case 'begin':
        if (line.trim() === '') return;
        check(line.trimStart() === ARMOR_BEGIN, 'AGE_ARMOR_MALFORMED', `expected ${ARMOR_BEGIN}`);
        this.#state = 'body';
        return;
      case 'body': {
        if (line === ARMOR_END) {
          this.#state = 'end';
          return;
        }
        check(!this.#lastLineShort, 'AGE_ARMOR_MALFORMED', 'a short line is not the last line of the armor');
        check(line.length > 0 && line.length <= COLUMNS, 'AGE_ARMOR_MALFORMED', 'armor lines are 1 to 64 columns');
        check(line.length % 4 === 0 && PADDED.test(line), 'AGE_ARMOR_MALFORMED', 'not canonical padded base64');
        const bytes = Buffer.from(line, 'base64');
        check(bytes.toString('base64') === line, 'AGE_ARMOR_MALFORMED', 'not canonical padded base64');
        this.#lastLineShort = line.length < COLUMNS || line.endsWith('=');
        out.push(bytes);
        return;
      }
      case 'end':
        this.#whitespace(`${raw}\n`);
        return;
      default:
        fail('AGE_ARMOR_MALFORMED');
    }
  }
}

/**
 * True when an input whose first byte is `first` is armored: a binary age file
 * starts with "age-encryption.org/", an armored one with "-----BEGIN" after
 * optional whitespace. (The decoder then checks the rest strictly.)
 */
export function startsArmored(first: number): boolean {
  return first === 0x2d || first === 0x20 || first === 0x09 || first === 0x0d || first === 0x0a;
}
