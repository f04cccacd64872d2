/**
 * The age v1 header: version line, recipient stanzas, MAC line. Parsing is
 * strict (C2SP age spec): LF only, single spaces, VCHAR arguments, bodies of
 * canonical unpadded base64 wrapped at exactly 64 columns ending with a
 * shorter line, a 32-byte MAC. Limits on stanza count and header size keep a
 * hostile header from costing more than a bounded amount of memory and work.
 */
import { check, fail } from '../errors.ts';
import { decodeUnpadded, decodeUnpaddedExact, encodeUnpadded } from './base64.ts';
import { constantTimeEqual, hkdf, hmacSha256 } from './primitives.ts';

export const VERSION_PREFIX = 'age-encryption.org/';
export const VERSION_LINE = 'age-encryption.org/v1\n';
const STANZA_PREFIX = '-> ';
const MAC_MARK = '---';
const COLUMNS = 64;
const MAC_LENGTH = 32;

export interface HeaderLimits {
  /** Most stanzas a header may carry (a record's readers plus custodians). */
  maxStanzas: number;
  /** Most bytes a header may take, MAC line included. */
  maxBytes: number;
}

export const DEFAULT_LIMITS: HeaderLimits = { maxStanzas: 1024, maxBytes: 256 * 1024 };

/** One recipient stanza. `type` is the first argument; `args` the rest. */
export interface Stanza {
  readonly type: string;
  readonly args: readonly string[];
  readonly body: Uint8Array;
}

export interface Header {
  readonly stanzas: readonly Stanza[];
  readonly mac: Uint8Array;
  /** The exact bytes of the header, MAC line included. */
  readonly bytes: Uint8Array;
}

const ARGUMENT = /^[\x21-\x7e]+$/;

function checkArgument(arg: string): void {
  check(ARGUMENT.test(arg), 'AGE_STANZA_INVALID', 'stanza arguments must be non-empty printable ASCII');
}

function encodeStanza(stanza: Stanza): string {
  for (const arg of [stanza.type, ...stanza.args]) checkArgument(arg);
  const body = encodeUnpadded(stanza.body);
  let out = `${STANZA_PREFIX}${[stanza.type, ...stanza.args].join(' ')}\n`;
  // Full 64-column lines, then a final shorter line, which may be empty.
  for (let i = 0; i <= body.length; i += COLUMNS) out += `${body.slice(i, i + COLUMNS)}\n`;
  return out;
}

function headerMacKey(fileKey: Uint8Array): Uint8Array {
  return hkdf(fileKey, null, 'header');
}

/** Serialises stanzas into a complete header with its MAC. */
export function serializeHeader(stanzas: readonly Stanza[], fileKey: Uint8Array, limits = DEFAULT_LIMITS): Header {
  check(stanzas.length > 0, 'INVALID_ARGUMENT', 'a header needs at least one stanza');
  checkScryptAlone(stanzas);
  const text = VERSION_LINE + stanzas.map(encodeStanza).join('') + MAC_MARK;
  const macInput = Buffer.from(text, 'latin1');
  const mac = hmacSha256(headerMacKey(fileKey), macInput);
  const bytes = new Uint8Array(Buffer.concat([macInput, Buffer.from(` ${encodeUnpadded(mac)}\n`, 'latin1')]));
  checkLimits(stanzas.length, bytes.length, limits);
  return { stanzas, mac, bytes };
}

function checkLimits(stanzaCount: number, byteCount: number, limits: HeaderLimits): void {
  if (stanzaCount > limits.maxStanzas) {
    fail('AGE_HEADER_TOO_LARGE', `${stanzaCount} stanzas, limit ${limits.maxStanzas}`);
  }
  if (byteCount > limits.maxBytes) fail('AGE_HEADER_TOO_LARGE', `${byteCount} bytes, limit ${limits.maxBytes}`);
}

function checkScryptAlone(stanzas: readonly Stanza[]): void {
  if (stanzas.length > 1 && stanzas.some((s) => s.type === 'scrypt')) fail('AGE_SCRYPT_NOT_ALONE');
}

/**
 * Finds where the header ends in `bytes` (the index just past the MAC line's
 * LF), or -1 when more bytes are needed. Throws once the limit is passed or
 * the start cannot be an age header, so a stream never buffers unboundedly.
 */
export function findHeaderEnd(bytes: Uint8Array, limits = DEFAULT_LIMITS): number {
  // Past maxBytes the answer is a refusal either way, so only that much is copied.
  return new HeaderScanner(limits).push(bytes.subarray(0, limits.maxBytes + 1));
}

/**
 * Collects a header arriving in pieces and finds its end, in time linear in its
 * bytes however small the pieces: bytes are appended to a buffer that grows by
 * doubling, and only what arrived since the last look is searched for line
 * ends (a header fed one byte at a time cost quadratic time before: the
 * fuzzer found 0.8 s for 70 KB). Refuses as findHeaderEnd does.
 */
export class HeaderScanner {
  readonly #limits: HeaderLimits;
  #buffer = Buffer.alloc(1024);
  #length = 0;
  #lineStart = 0;
  #scanned = 0;

  constructor(limits = DEFAULT_LIMITS) {
    this.#limits = limits;
  }

  /** Adds `data`; returns the end of the header in the bytes so far, or -1 while it is not complete. */
  push(data: Uint8Array): number {
    if (this.#length + data.length > this.#buffer.length) {
      let size = this.#buffer.length;
      while (size < this.#length + data.length) size *= 2;
      const grown = Buffer.alloc(size);
      this.#buffer.copy(grown, 0, 0, this.#length);
      this.#buffer = grown;
    }
    this.#buffer.set(data, this.#length);
    const before = this.#length;
    this.#length += data.length;
    if (before < VERSION_PREFIX.length) {
      const n = Math.min(this.#length, VERSION_PREFIX.length);
      if (this.#buffer.toString('latin1', 0, n) !== VERSION_PREFIX.slice(0, n)) fail('AGE_NOT_AGE');
    }
    const bytes = this.#buffer.subarray(0, this.#length);
    // The MAC line is the first line that starts with "---": no other header
    // line can (stanza lines start with "->", bodies are base64).
    for (;;) {
      const lf = bytes.indexOf(0x0a, this.#scanned);
      if (lf < 0) break;
      const at = this.#lineStart;
      if (bytes[at] === 0x2d && bytes[at + 1] === 0x2d && bytes[at + 2] === 0x2d) {
        if (lf + 1 > this.#limits.maxBytes) checkLimits(0, lf + 1, this.#limits);
        return lf + 1;
      }
      this.#lineStart = lf + 1;
      this.#scanned = lf + 1;
    }
    this.#scanned = this.#length;
    if (this.#length > this.#limits.maxBytes) checkLimits(0, this.#length, this.#limits);
    return -1;
  }

  /** The bytes collected so far. */
  get bytes(): Buffer {
    return this.#buffer.subarray(0, this.#length);
  }
}

/** Parses a complete header (exactly the header's bytes). Does not verify the MAC. */
export function parseHeader(bytes: Uint8Array, limits = DEFAULT_LIMITS): Header {
  checkLimits(0, bytes.length, limits);
  const text = Buffer.from(bytes).toString('latin1');
  if (!text.startsWith(VERSION_PREFIX)) fail('AGE_NOT_AGE');
  const lines = text.split('\n');
  check(lines.pop() === '', 'AGE_HEADER_MALFORMED', 'header must end with a line feed');
  check(`${lines[0]}\n` === VERSION_LINE, 'AGE_UNSUPPORTED_VERSION', JSON.stringify(lines[0]?.slice(0, 40)));

  const stanzas: Stanza[] = [];
  let i = 1;
  while (i < lines.length && lines[i]?.startsWith(STANZA_PREFIX)) {
    const argLine = (lines[i] as string).slice(STANZA_PREFIX.length);
    const args = argLine.split(' ');
    for (const arg of args) {
      check(ARGUMENT.test(arg), 'AGE_HEADER_MALFORMED', 'stanza arguments must be non-empty printable ASCII');
    }
    i++;
    let body = '';
    for (;;) {
      const line = lines[i];
      check(line !== undefined, 'AGE_HEADER_MALFORMED', 'stanza body is not terminated');
      i++;
      check(line.length <= COLUMNS, 'AGE_HEADER_MALFORMED', 'stanza body line longer than 64 columns');
      body += line;
      if (line.length < COLUMNS) break;
    }
    const decoded = decodeUnpadded(body);
    check(decoded !== null, 'AGE_HEADER_MALFORMED', 'stanza body is not canonical unpadded base64');
    stanzas.push({ type: args[0] as string, args: args.slice(1), body: decoded });
    if (stanzas.length > limits.maxStanzas) checkLimits(stanzas.length, 0, limits);
  }
  check(stanzas.length > 0, 'AGE_HEADER_MALFORMED', 'header has no recipient stanza');
  const macLine = lines[i] ?? '';
  check(
    macLine.startsWith(`${MAC_MARK} `) && i === lines.length - 1,
    'AGE_HEADER_MALFORMED',
    'expected the MAC line to end the header',
  );
  const mac = decodeUnpaddedExact(macLine.slice(MAC_MARK.length + 1), MAC_LENGTH);
  check(mac !== null, 'AGE_HEADER_MALFORMED', 'MAC is not 32 bytes of canonical base64');
  checkScryptAlone(stanzas);
  return { stanzas, mac, bytes };
}

/** Throws AGE_HEADER_MAC unless the header's MAC was made with `fileKey`. */
export function verifyHeaderMac(header: Header, fileKey: Uint8Array): void {
  // The MAC covers everything up to and including "---", not the space after it.
  const macInput = header.bytes.subarray(0, header.bytes.lastIndexOf(0x2d) + 1);
  const expected = hmacSha256(headerMacKey(fileKey), macInput);
  check(constantTimeEqual(expected, header.mac), 'AGE_HEADER_MAC');
}

/** Wraps a file key into the stanzas that let one recipient unwrap it. */
export interface Recipient {
  wrapFileKey(fileKey: Uint8Array): Stanza[];
}

/**
 * Unwraps the file key from the stanzas addressed to it: `null` when none is,
 * a typed error when one is addressed to it but malformed.
 */
export interface Identity {
  unwrapFileKey(stanzas: readonly Stanza[]): Uint8Array | null;
}
