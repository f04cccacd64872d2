/**
 * The scrypt (passphrase) recipient type of age v1. An scrypt stanza must be
 * alone in its header; the work factor is capped on decryption so a hostile
 * file cannot make a reader spend unbounded time and memory.
 */
import { scryptSync } from 'node:crypto';
import { check } from '../errors.ts';
import { decodeUnpaddedExact, encodeUnpadded } from './base64.ts';
import type { Identity, Recipient, Stanza } from './header.ts';
import { aeadOpen, aeadSeal, FILE_KEY_LENGTH, random, TAG_LENGTH } from './primitives.ts';

const STANZA_TYPE = 'scrypt';
const SALT_LABEL = 'age-encryption.org/v1/scrypt';
const SALT_LENGTH = 16;
const LOG_N = /^[1-9][0-9]*$/;

function scryptKey(passphrase: string, salt: Uint8Array, logN: number): Uint8Array {
  const N = 2 ** logN;
  const r = 8;
  return new Uint8Array(
    scryptSync(passphrase, Buffer.concat([Buffer.from(SALT_LABEL), salt]), 32, {
      N,
      r,
      p: 1,
      maxmem: 128 * r * N + 1024 * 1024,
    }),
  );
}

export class ScryptRecipient implements Recipient {
  readonly #passphrase: string;
  readonly #logN: number;

  constructor(passphrase: string, logN = 18) {
    check(passphrase.length > 0, 'INVALID_ARGUMENT', 'the passphrase is empty');
    check(Number.isInteger(logN) && logN >= 1 && logN <= 30, 'INVALID_ARGUMENT', 'scrypt log2(N) must be 1..30');
    this.#passphrase = passphrase;
    this.#logN = logN;
  }

  wrapFileKey(fileKey: Uint8Array): Stanza[] {
    const salt = random(SALT_LENGTH);
    const body = aeadSeal(scryptKey(this.#passphrase, salt, this.#logN), fileKey);
    return [{ type: STANZA_TYPE, args: [encodeUnpadded(salt), String(this.#logN)], body }];
  }
}

export class ScryptIdentity implements Identity {
  readonly #passphrase: string;
  readonly #maxLogN: number;

  constructor(passphrase: string, maxLogN = 22) {
    this.#passphrase = passphrase;
    this.#maxLogN = maxLogN;
  }

  unwrapFileKey(stanzas: readonly Stanza[]): Uint8Array | null {
    for (const stanza of stanzas) {
      if (stanza.type !== STANZA_TYPE) continue;
      check(stanzas.length === 1, 'AGE_SCRYPT_NOT_ALONE');
      const [saltText, logNText] = stanza.args;
      check(stanza.args.length === 2, 'AGE_STANZA_INVALID', 'an scrypt stanza has exactly three arguments');
      const salt = decodeUnpaddedExact(saltText as string, SALT_LENGTH);
      check(salt !== null, 'AGE_STANZA_INVALID', 'scrypt salt is not 16 bytes of canonical base64');
      check(LOG_N.test(logNText as string), 'AGE_STANZA_INVALID', 'scrypt work factor is not a decimal number');
      const logN = Number(logNText);
      check(logN <= this.#maxLogN, 'AGE_SCRYPT_WORK_FACTOR', `log2(N) = ${logN}, limit ${this.#maxLogN}`);
      check(stanza.body.length === FILE_KEY_LENGTH + TAG_LENGTH, 'AGE_STANZA_INVALID', 'scrypt body is not 32 bytes');
      const fileKey = aeadOpen(scryptKey(this.#passphrase, salt, logN), stanza.body);
      if (fileKey !== null) return fileKey;
    }
    return null;
  }
}
