/**
 * The pkcs11 KMS: custody rooted in a PKCS#11 token (an HSM in production,
 * SoftHSM2 in the tests), through `pkcs11js`.
 *
 * Each subject has a key-encryption key in the token: AES-256, generated
 * there, CKA_SENSITIVE and not CKA_EXTRACTABLE, labelled by subject. It
 * wraps (AES-256-GCM, inside the token) the subject's X25519 custodian
 * secret; the wrapped secret, its nonce and the public recipient live in a
 * small file beside the node's data, useless without the token key.
 *
 * Why not the custodian itself in the token: clients encrypt to the
 * custodian on their own machines with a standard age X25519 stanza (so any
 * age tool reads the rest of the header), and tokens such as SoftHSM2 2.6 do
 * not do X25519. So the token holds the key whose destruction matters; the
 * X25519 secret is unwrapped by the token into this process for the length of
 * one rewrap (as the file key must be, to wrap it to X25519 readers) and
 * dropped. Erasure is C_DestroyObject on the token key: afterwards the
 * wrapped secret cannot be opened by anyone, whatever copies of the file
 * exist, and the token refuses the old handle (CKR_OBJECT_HANDLE_INVALID).
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import pkcs11js from 'pkcs11js';
import type { StreamCore } from '../crypto/age.ts';
import { keyFingerprint } from '../crypto/ed25519.ts';
import type { Recipient } from '../crypto/header.ts';
import type { PayloadSample } from '../crypto/stream.ts';
import { X25519Identity, X25519Recipient } from '../crypto/x25519.ts';
import { writeFileAtomic } from '../durable.ts';
import { fail, MedvaultError } from '../errors.ts';
import { admitUpload } from './admit-pool.ts';
import {
  checkSubject,
  type DestroyedList,
  type DestroyResult,
  destroyedKeyId,
  emptyDestroyed,
  type Kms,
  markDestroyed,
  reencryptWith,
  refuseDestroyed,
  rewrapWith,
  upgradeDestroyed,
} from './kms.ts';

const LABEL = (subject: string) => `medvault-custodian:${subject}`;

export interface Pkcs11KmsOptions {
  /** The PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so. */
  library: string;
  /** The token's label. */
  token: string;
  /** The user PIN. Never logged. */
  pin: string;
  /** Where the wrapped custodian secrets are kept (a JSON file; no secret in it is usable without the token). */
  wrappedFile: string;
}

interface Wrapped extends DestroyedList {
  custodians: Record<string, { keyId: string; recipient: string; iv: string; wrapped: string; created: number }>;
}

function tokenError(err: unknown, what: string): MedvaultError {
  const message = (err as Error)?.message ?? String(err);
  if (/CKR_PIN_INCORRECT|CKR_PIN_LOCKED|CKR_USER_NOT_LOGGED_IN/.test(message)) {
    return new MedvaultError('KMS_LOCKED', `pkcs11: ${what}: ${message}`, { cause: err });
  }
  return new MedvaultError('KMS_UNAVAILABLE', `pkcs11: ${what}: ${message}`, { cause: err });
}

/** A PKCS#11 module is initialised once per process; sessions share it. */
const modules = new Map<string, { p11: pkcs11js.PKCS11; refs: number }>();

function acquireModule(library: string): pkcs11js.PKCS11 {
  let entry = modules.get(library);
  if (!entry) {
    const p11 = new pkcs11js.PKCS11();
    p11.load(library);
    try {
      p11.C_Initialize();
    } catch (err) {
      if (!/CKR_CRYPTOKI_ALREADY_INITIALIZED/.test((err as Error).message)) throw err;
    }
    entry = { p11, refs: 0 };
    modules.set(library, entry);
  }
  entry.refs++;
  return entry.p11;
}

function releaseModule(library: string): void {
  const entry = modules.get(library);
  if (!entry || --entry.refs > 0) return;
  modules.delete(library);
  entry.p11.C_Finalize();
}

export class Pkcs11Kms implements Kms {
  readonly backend = 'pkcs11';
  readonly #p11: pkcs11js.PKCS11;
  readonly #session: Buffer;
  readonly #token: string;
  readonly #file: string;
  readonly #library: string;
  #state: Wrapped;
  #tail: Promise<unknown> = Promise.resolve();

  private constructor(
    p11: pkcs11js.PKCS11,
    library: string,
    session: Buffer,
    token: string,
    file: string,
    state: Wrapped,
  ) {
    this.#p11 = p11;
    this.#library = library;
    this.#session = session;
    this.#token = token;
    this.#file = file;
    this.#state = state;
  }

  /** Opens a session on the token and logs in; KMS_LOCKED for a wrong PIN, KMS_UNAVAILABLE without the token. */
  static async open(options: Pkcs11KmsOptions): Promise<Pkcs11Kms> {
    let p11: pkcs11js.PKCS11;
    try {
      p11 = acquireModule(options.library);
    } catch (err) {
      throw tokenError(err, `cannot load ${options.library}`);
    }
    try {
      const slot = p11.C_GetSlotList(true).find((s) => p11.C_GetTokenInfo(s).label.trim() === options.token);
      if (!slot) fail('KMS_UNAVAILABLE', `pkcs11: no token labelled ${options.token}`);
      const session = p11.C_OpenSession(slot, pkcs11js.CKF_RW_SESSION | pkcs11js.CKF_SERIAL_SESSION);
      try {
        p11.C_Login(session, pkcs11js.CKU_USER, options.pin);
      } catch (err) {
        // Login is per application and token: another session of this process already holds it.
        if (!/CKR_USER_ALREADY_LOGGED_IN/.test((err as Error).message)) throw err;
      }
      let state: Wrapped = { custodians: {}, ...emptyDestroyed() };
      try {
        state = JSON.parse(await readFile(options.wrappedFile, 'utf8')) as Wrapped;
        if (upgradeDestroyed(state)) await writeFileAtomic(options.wrappedFile, JSON.stringify(state));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      return new Pkcs11Kms(p11, options.library, session, options.token, options.wrappedFile, state);
    } catch (err) {
      releaseModule(options.library);
      if (err instanceof MedvaultError) throw err;
      throw tokenError(err, 'cannot open a session');
    }
  }

  #gcm(iv: Buffer, subject: string) {
    return {
      mechanism: pkcs11js.CKM_AES_GCM,
      parameter: { type: pkcs11js.CK_PARAMS_AES_GCM, iv, aad: Buffer.from(LABEL(subject)), ivBits: 96, tagBits: 128 },
    } as pkcs11js.Mechanism;
  }

  /** The token key for `subject`, or null. */
  #find(subject: string): pkcs11js.Handle | null {
    const p11 = this.#p11;
    p11.C_FindObjectsInit(this.#session, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_LABEL, value: LABEL(subject) },
    ]);
    try {
      return p11.C_FindObjects(this.#session, 1)[0] ?? null;
    } finally {
      p11.C_FindObjectsFinal(this.#session);
    }
  }

  #change<T>(step: (state: Wrapped) => T): Promise<T> {
    const run = this.#tail.then(async () => {
      const next = structuredClone(this.#state);
      const result = step(next);
      await writeFileAtomic(this.#file, JSON.stringify(next));
      this.#state = next;
      return result;
    });
    this.#tail = run.catch(() => {});
    return run;
  }

  async custodian(subject: string): Promise<{ recipient: Recipient; keyId: string }> {
    refuseDestroyed(this.#state, subject);
    if (!this.#state.custodians[subject]) {
      await this.#change((state) => {
        if (state.custodians[subject]) return;
        const identity = X25519Identity.generate();
        const keyId = keyFingerprint(identity.recipient.publicKey);
        try {
          const key = this.#p11.C_GenerateKey(this.#session, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
            { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
            { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
            { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
            { type: pkcs11js.CKA_TOKEN, value: true },
            { type: pkcs11js.CKA_PRIVATE, value: true },
            { type: pkcs11js.CKA_SENSITIVE, value: true },
            { type: pkcs11js.CKA_EXTRACTABLE, value: false },
            { type: pkcs11js.CKA_ENCRYPT, value: true },
            { type: pkcs11js.CKA_DECRYPT, value: true },
            { type: pkcs11js.CKA_LABEL, value: LABEL(subject) },
            { type: pkcs11js.CKA_ID, value: Buffer.from(keyId, 'hex') },
          ]);
          const iv = randomBytes(12);
          const secret = Buffer.from(identity.secretBytes());
          this.#p11.C_EncryptInit(this.#session, this.#gcm(iv, subject), key);
          const wrapped = this.#p11.C_Encrypt(this.#session, secret, Buffer.alloc(secret.length + 16));
          secret.fill(0);
          state.custodians[subject] = {
            keyId,
            recipient: String(identity.recipient),
            iv: iv.toString('base64'),
            wrapped: Buffer.from(wrapped).toString('base64'),
            created: Date.now(),
          };
        } catch (err) {
          throw tokenError(err, 'cannot make a custodian key');
        }
      });
    }
    const entry = this.#state.custodians[subject];
    if (!entry) fail('KMS_NO_KEY');
    return { recipient: X25519Recipient.parse(entry.recipient), keyId: entry.keyId };
  }

  /** The custodian identity, unwrapped by the token for one operation. */
  #identity(subject: string): X25519Identity {
    refuseDestroyed(this.#state, subject);
    const entry = this.#state.custodians[subject];
    if (!entry) fail('KMS_NO_KEY');
    const key = this.#find(subject);
    if (!key) fail('KMS_CORRUPT', `pkcs11: token ${this.#token} has no key for custodian ${entry.keyId}`);
    try {
      this.#p11.C_DecryptInit(this.#session, this.#gcm(Buffer.from(entry.iv, 'base64'), subject), key);
      const wrapped = Buffer.from(entry.wrapped, 'base64');
      const secret = this.#p11.C_Decrypt(this.#session, wrapped, Buffer.alloc(wrapped.length));
      const identity = new X25519Identity(new Uint8Array(secret));
      secret.fill(0);
      return identity;
    } catch (err) {
      throw tokenError(err, `cannot unwrap custodian ${entry.keyId}`);
    }
  }

  async rewrap(subject: string, header: Uint8Array, readers: readonly Recipient[]): Promise<Uint8Array> {
    return rewrapWith(this.#identity(subject), header, readers);
  }

  async admit(
    subject: string,
    header: Uint8Array,
    readers: readonly Recipient[],
    sample: PayloadSample,
  ): Promise<Uint8Array> {
    return admitUpload(this.#identity(subject), header, readers, sample);
  }

  async reencrypt(
    subject: string,
    header: Uint8Array,
    readers: readonly Recipient[],
  ): Promise<{ header: Uint8Array; core: StreamCore }> {
    return reencryptWith(this.#identity(subject), header, readers);
  }

  async destroy(subject: string): Promise<DestroyResult> {
    checkSubject(subject);
    return this.#change((state) => {
      const entry = state.custodians[subject];
      const keyId = entry?.keyId ?? destroyedKeyId(state, subject) ?? 'none';
      const key = this.#find(subject);
      if (key) {
        try {
          this.#p11.C_DestroyObject(this.#session, key);
        } catch (err) {
          throw tokenError(err, `C_DestroyObject for custodian ${keyId}`);
        }
      }
      if (entry) {
        delete state.custodians[subject];
        markDestroyed(state, subject, keyId);
      }
      return {
        subject,
        keyId,
        backend: this.backend,
        confirmed: key
          ? `pkcs11: C_DestroyObject on token ${this.#token} (the AES-256 key wrapping custodian ${keyId}); its wrapped secret removed from the custody file`
          : 'pkcs11: no such key on the token (already destroyed or never made)',
      };
    });
  }

  async holds(subject: string): Promise<string[]> {
    const found: string[] = [];
    if (this.#find(subject)) found.push(`token ${this.#token}: key object for the subject`);
    const entry = this.#state.custodians[subject];
    if (entry) found.push(`custody file: wrapped custodian secret ${entry.keyId}`);
    return found;
  }

  async holdsKey(keyId: string): Promise<string[]> {
    const found: string[] = [];
    const p11 = this.#p11;
    p11.C_FindObjectsInit(this.#session, [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_ID, value: Buffer.from(keyId, 'hex') },
    ]);
    try {
      if (p11.C_FindObjects(this.#session, 1).length > 0) found.push(`token ${this.#token}: key object ${keyId}`);
    } finally {
      p11.C_FindObjectsFinal(this.#session);
    }
    for (const entry of Object.values(this.#state.custodians)) {
      if (entry.keyId === keyId) found.push(`custody file: wrapped custodian secret ${keyId}`);
    }
    return found;
  }

  /** Whether the token still holds a key object for `subject` (for tests and the erasure sweep). */
  hasTokenKey(subject: string): boolean {
    return this.#find(subject) !== null;
  }

  async close(): Promise<void> {
    await this.#tail;
    try {
      this.#p11.C_Logout(this.#session);
      this.#p11.C_CloseSession(this.#session);
    } finally {
      releaseModule(this.#library);
    }
  }
}
