/**
 * age v1 files: header + payload, binary or armored, whole or in two parts.
 *
 * `AgeEncryptor` and `AgeDecryptor` are synchronous cores (input of any size
 * in, releasable output pieces out); the stream and buffer functions below are
 * thin wrappers over them, so every path shares one implementation.
 *
 * The vault keeps a record's header apart from its payload so readers can be
 * added or removed without touching the payload: `rewrapHeader` builds a new
 * header for the same file key, and `openHeader` + `createPayloadDecryptStream`
 * decrypt a header and a payload that come from two sources.
 */
import { Transform } from 'node:stream';
import { check, fail } from '../errors.ts';
import { ArmorDecoder, ArmorEncoder, startsArmored } from './armor.ts';
import {
  DEFAULT_LIMITS,
  findHeaderEnd,
  type Header,
  type HeaderLimits,
  HeaderScanner,
  type Identity,
  parseHeader,
  type Recipient,
  type Stanza,
  serializeHeader,
  verifyHeaderMac,
} from './header.ts';
import { FILE_KEY_LENGTH, random } from './primitives.ts';
import { PayloadOpener, PayloadSealer } from './stream.ts';

export interface EncryptOptions {
  /** Write ASCII armor instead of binary. */
  armor?: boolean;
  limits?: HeaderLimits;
}

export interface DecryptOptions {
  limits?: HeaderLimits;
}

/** A synchronous core: `update` and `final` push releasable output onto `out`. */
export interface StreamCore {
  update(data: Uint8Array, out: Buffer[]): void;
  final(out: Buffer[]): void;
}

export function generateFileKey(): Uint8Array {
  return random(FILE_KEY_LENGTH);
}

/** Wraps `fileKey` to every recipient and serialises the header with its MAC. */
export function buildHeader(fileKey: Uint8Array, recipients: readonly Recipient[], limits = DEFAULT_LIMITS): Header {
  check(fileKey.length === FILE_KEY_LENGTH, 'INVALID_ARGUMENT', 'a file key is 16 bytes');
  check(recipients.length > 0, 'INVALID_ARGUMENT', 'at least one recipient is required');
  const stanzas: Stanza[] = recipients.flatMap((r) => r.wrapFileKey(fileKey));
  return serializeHeader(stanzas, fileKey, limits);
}

/**
 * Unwraps the file key with the first identity that matches a stanza and
 * verifies the header MAC with it. Throws AGE_NO_IDENTITY when none matches.
 */
export function unwrapFileKey(header: Header, identities: readonly Identity[]): Uint8Array {
  check(identities.length > 0, 'INVALID_ARGUMENT', 'at least one identity is required');
  for (const identity of identities) {
    const fileKey = identity.unwrapFileKey(header.stanzas);
    if (fileKey === null) continue;
    check(fileKey.length === FILE_KEY_LENGTH, 'AGE_STANZA_INVALID', 'unwrapped file key is not 16 bytes');
    verifyHeaderMac(header, fileKey);
    return fileKey;
  }
  return fail('AGE_NO_IDENTITY');
}

/** Parses header bytes and unwraps their file key (MAC verified). */
export function openHeader(
  headerBytes: Uint8Array,
  identities: readonly Identity[],
  limits = DEFAULT_LIMITS,
): { header: Header; fileKey: Uint8Array } {
  const header = parseHeader(headerBytes, limits);
  return { header, fileKey: unwrapFileKey(header, identities) };
}

/** Splits a binary age file into its header and its payload. */
export function splitAgeFile(file: Uint8Array, limits = DEFAULT_LIMITS): { header: Uint8Array; payload: Uint8Array } {
  const end = findHeaderEnd(file, limits);
  check(end >= 0, 'AGE_HEADER_MALFORMED', 'the input ends inside the header');
  return { header: file.subarray(0, end), payload: file.subarray(end) };
}

/**
 * A new header for the same file key, wrapped to `recipients`: the payload is
 * untouched and stays valid. `identities` must be able to open the old header.
 */
export function rewrapHeader(
  headerBytes: Uint8Array,
  identities: readonly Identity[],
  recipients: readonly Recipient[],
  limits = DEFAULT_LIMITS,
): Header {
  const { fileKey } = openHeader(headerBytes, identities, limits);
  return buildHeader(fileKey, recipients, limits);
}

export class AgeEncryptor implements StreamCore {
  readonly header: Header;
  readonly #sealer: PayloadSealer;
  readonly #armor: ArmorEncoder | null;
  #headerSent = false;

  constructor(recipients: readonly Recipient[], options: EncryptOptions = {}) {
    const fileKey = generateFileKey();
    this.header = buildHeader(fileKey, recipients, options.limits);
    this.#sealer = new PayloadSealer(fileKey);
    this.#armor = options.armor ? new ArmorEncoder() : null;
  }

  update(data: Uint8Array, out: Buffer[]): void {
    this.#emit(out, (pieces) => this.#sealer.update(data, pieces));
  }

  final(out: Buffer[]): void {
    this.#emit(out, (pieces) => this.#sealer.final(pieces));
    if (this.#armor) out.push(Buffer.from(this.#armor.final(), 'latin1'));
  }

  #emit(out: Buffer[], step: (pieces: Buffer[]) => void): void {
    const pieces: Buffer[] = this.#armor ? [] : out;
    if (!this.#headerSent) {
      pieces.push(Buffer.from(this.header.bytes));
      this.#headerSent = true;
    }
    step(pieces);
    if (this.#armor) out.push(Buffer.from(this.#armor.update(Buffer.concat(pieces)), 'latin1'));
  }
}

/** Decrypts a whole age file, binary or armored (detected from the first byte). */
export class AgeDecryptor implements StreamCore {
  readonly #identities: readonly Identity[];
  readonly #limits: HeaderLimits;
  #armor: ArmorDecoder | null | undefined;
  #header: HeaderScanner;
  #opener: PayloadOpener | null = null;
  header: Header | null = null;

  constructor(identities: readonly Identity[], options: DecryptOptions = {}) {
    check(identities.length > 0, 'INVALID_ARGUMENT', 'at least one identity is required');
    this.#identities = identities;
    this.#limits = options.limits ?? DEFAULT_LIMITS;
    this.#header = new HeaderScanner(this.#limits);
  }

  update(data: Uint8Array, out: Buffer[]): void {
    if (data.length === 0) return;
    if (this.#armor === undefined) this.#armor = startsArmored(data[0] as number) ? new ArmorDecoder() : null;
    if (this.#armor === null) this.#binary(data, out);
    else for (const piece of this.#armor.update(data)) this.#binary(piece, out);
  }

  final(out: Buffer[]): void {
    if (this.#armor) for (const piece of this.#armor.final()) this.#binary(piece, out);
    if (this.#opener === null) {
      if (this.#header.bytes.length === 0) fail('AGE_NOT_AGE', 'the input is empty');
      fail('AGE_HEADER_MALFORMED', 'the input ends inside the header');
    }
    this.#opener.final(out);
  }

  #binary(data: Uint8Array, out: Buffer[]): void {
    if (this.#opener) {
      this.#opener.update(data, out);
      return;
    }
    const end = this.#header.push(data);
    if (end < 0) return;
    const collected = this.#header.bytes;
    const { header, fileKey } = openHeader(collected.subarray(0, end), this.#identities, this.#limits);
    this.header = header;
    this.#opener = new PayloadOpener(fileKey);
    this.#opener.update(collected.subarray(end), out);
  }
}

/** Decrypts a bare payload (no header) with a known file key. */
export class PayloadDecryptor implements StreamCore {
  readonly #opener: PayloadOpener;

  constructor(fileKey: Uint8Array) {
    this.#opener = new PayloadOpener(fileKey);
  }

  update(data: Uint8Array, out: Buffer[]): void {
    this.#opener.update(data, out);
  }

  final(out: Buffer[]): void {
    this.#opener.final(out);
  }
}

/**
 * Re-encrypts a bare payload under a new file key: each chunk is opened with
 * the old key (and released only once its tag verifies) and sealed with the
 * new one, so a key-compromise revocation never writes plaintext anywhere.
 */
export class PayloadReencryptor implements StreamCore {
  readonly #opener: PayloadOpener;
  readonly #sealer: PayloadSealer;

  constructor(oldFileKey: Uint8Array, newFileKey: Uint8Array) {
    this.#opener = new PayloadOpener(oldFileKey);
    this.#sealer = new PayloadSealer(newFileKey);
  }

  update(data: Uint8Array, out: Buffer[]): void {
    const plain: Buffer[] = [];
    this.#opener.update(data, plain);
    for (const piece of plain) this.#sealer.update(piece, out);
  }

  final(out: Buffer[]): void {
    const plain: Buffer[] = [];
    this.#opener.final(plain);
    for (const piece of plain) this.#sealer.update(piece, out);
    this.#sealer.final(out);
  }
}

/** Wraps a synchronous core as a Node Transform stream. */
export function coreTransform(core: StreamCore): Transform {
  const run = (stream: Transform, step: (out: Buffer[]) => void, done: (err?: Error) => void) => {
    const out: Buffer[] = [];
    try {
      step(out);
    } catch (err) {
      done(err as Error);
      return;
    }
    for (const piece of out) stream.push(piece);
    done();
  };
  return new Transform({
    readableHighWaterMark: 1024 * 1024,
    writableHighWaterMark: 1024 * 1024,
    transform(chunk: Buffer, _encoding, done) {
      run(this, (out) => core.update(chunk, out), done);
    },
    flush(done) {
      run(this, (out) => core.final(out), done);
    },
  });
}

export function createEncryptStream(recipients: readonly Recipient[], options?: EncryptOptions): Transform {
  return coreTransform(new AgeEncryptor(recipients, options));
}

export function createDecryptStream(identities: readonly Identity[], options?: DecryptOptions): Transform {
  return coreTransform(new AgeDecryptor(identities, options));
}

export function createPayloadDecryptStream(fileKey: Uint8Array): Transform {
  return coreTransform(new PayloadDecryptor(fileKey));
}

function runCore(core: StreamCore, input: Uint8Array): Uint8Array {
  const out: Buffer[] = [];
  core.update(input, out);
  core.final(out);
  return new Uint8Array(Buffer.concat(out));
}

/** Encrypts a whole buffer. For large inputs use `createEncryptStream`. */
export function encrypt(recipients: readonly Recipient[], plaintext: Uint8Array, options?: EncryptOptions): Uint8Array {
  return runCore(new AgeEncryptor(recipients, options), plaintext);
}

/** Decrypts a whole buffer (binary or armored). */
export function decrypt(identities: readonly Identity[], file: Uint8Array, options?: DecryptOptions): Uint8Array {
  return runCore(new AgeDecryptor(identities, options), file);
}
