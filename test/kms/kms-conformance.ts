/**
 * The Kms contract as one suite, run against every backend (local, pkcs11):
 * a custodian per subject, stable across reopening; rewrap inside the KMS
 * for new readers over an untouched payload; an upload's admission (payload
 * sample opened, then rewrap); re-encryption; destruction that
 * ends every later use of that subject's key and no other's.
 */
import { randomBytes } from 'node:crypto';
import { describe, expect, it, onTestFinished } from 'vitest';
import { coreTransform, decrypt, encrypt, splitAgeFile } from '../../crypto/age.ts';
import { parseHeader } from '../../crypto/header.ts';
import { PayloadProbe } from '../../crypto/stream.ts';
import { X25519Identity } from '../../crypto/x25519.ts';
import { setAdmitThreads } from '../../kms/admit-pool.ts';
import type { Kms } from '../../kms/kms.ts';
import { bytes } from '../helpers.ts';

export const newSubject = () => randomBytes(32).toString('hex');

async function codeOfAsync(p: Promise<unknown>): Promise<string> {
  return p.then(
    () => 'no error',
    (e) => (e as { code?: string }).code ?? 'untyped error',
  );
}

/** `open` gives the backend; `reopen` the same custody after a restart. */
export function kmsConformance(name: string, open: () => Promise<Kms>, reopen: () => Promise<Kms>): void {
  describe(`${name} KMS: the contract`, () => {
    it('one custodian per subject, the same after reopening, another for another subject', async () => {
      const kms = await open();
      const s = newSubject();
      const a = await kms.custodian(s);
      expect((await kms.custodian(s)).keyId).toBe(a.keyId);
      expect((await kms.custodian(newSubject())).keyId).not.toBe(a.keyId);
      const again = await reopen();
      expect(String((await again.custodian(s)).recipient)).toBe(String(a.recipient));
    });

    it('rewrap gives a new reader the record; the payload is untouched and the old reader keeps access', async () => {
      const kms = await open();
      const s = newSubject();
      const { recipient } = await kms.custodian(s);
      const first = X25519Identity.generate();
      const second = X25519Identity.generate();
      const document = bytes(150_000, 11);
      const { header, payload } = splitAgeFile(encrypt([first.recipient, recipient], document));
      const rewrapped = await kms.rewrap(s, header, [first.recipient, second.recipient]);
      for (const who of [first, second]) {
        expect(Buffer.compare(Buffer.from(decrypt([who], Buffer.concat([rewrapped, payload]))), document)).toBe(0);
      }
      const dropped = await kms.rewrap(s, rewrapped, [first.recipient]);
      expect(() => decrypt([second], Buffer.concat([dropped, payload]))).toThrow(/no identity/);
    });

    it("rewrap keeps a header's only stanza, the custodian's, as it is and never a stanza the client made for someone else", async () => {
      const kms = await open();
      const s = newSubject();
      const { recipient } = await kms.custodian(s);
      const reader = X25519Identity.generate();
      const outsider = X25519Identity.generate();
      const document = bytes(70_000, 13);
      const stanzas = (header: Uint8Array) => parseHeader(header).stanzas.map((z) => `${z.type} ${z.args} ${z.body}`);

      // What the SDK uploads: the custodian alone. Its stanza is kept; the reader's is the KMS's.
      const alone = splitAgeFile(encrypt([recipient], document));
      const kept = await kms.rewrap(s, alone.header, [reader.recipient]);
      expect(stanzas(kept)).toHaveLength(2);
      expect(stanzas(kept)[1]).toBe(stanzas(alone.header)[0]);
      expect(Buffer.from(decrypt([reader], Buffer.concat([kept, alone.payload])))).toEqual(Buffer.from(document));

      // A header with a stanza for someone not granted: nothing of the client's is kept.
      const more = splitAgeFile(encrypt([outsider.recipient, recipient], document));
      const fresh = await kms.rewrap(s, more.header, [reader.recipient]);
      expect(stanzas(fresh).filter((z) => stanzas(more.header).includes(z))).toEqual([]);
      expect(() => decrypt([outsider], Buffer.concat([fresh, more.payload]))).toThrow(/no identity/);
      expect(Buffer.from(decrypt([reader], Buffer.concat([fresh, more.payload])))).toEqual(Buffer.from(document));
    });

    it('a header without the custodian stanza is refused (AGE_NO_IDENTITY)', async () => {
      const kms = await open();
      const s = newSubject();
      await kms.custodian(s);
      const { header } = splitAgeFile(encrypt([X25519Identity.generate().recipient], bytes(10)));
      expect(await codeOfAsync(kms.rewrap(s, header, []))).toBe('AGE_NO_IDENTITY');
    });

    it.each([
      ['on the calling thread', 0],
      ['on a worker thread', 1],
    ])(
      "admit (an upload) %s rewraps as rewrap does once the payload's first and last chunks open, else AGE_PAYLOAD_CORRUPT",
      async (_, threads) => {
        setAdmitThreads(threads);
        onTestFinished(() => setAdmitThreads());
        const kms = await open();
        const s = newSubject();
        const { recipient } = await kms.custodian(s);
        const reader = X25519Identity.generate();
        const document = bytes(200_000, 14); // four chunks
        const { header, payload } = splitAgeFile(encrypt([recipient], document));
        const sample = (bytes: Uint8Array) => {
          const probe = new PayloadProbe();
          probe.take(bytes);
          return probe.sample();
        };
        const admitted = await kms.admit(s, header, [reader.recipient], sample(payload));
        expect(parseHeader(admitted).stanzas[1]).toEqual(parseHeader(header).stanzas[0]); // the lone stanza kept
        expect(Buffer.from(decrypt([reader], Buffer.concat([admitted, payload])))).toEqual(Buffer.from(document));
        for (const at of [100, payload.length - 5]) {
          const flipped = Buffer.from(payload);
          flipped[at] = (flipped[at] as number) ^ 1;
          expect(await codeOfAsync(kms.admit(s, header, [reader.recipient], sample(flipped)))).toBe(
            'AGE_PAYLOAD_CORRUPT',
          );
        }
        const other = splitAgeFile(encrypt([X25519Identity.generate().recipient], document));
        expect(await codeOfAsync(kms.admit(s, other.header, [], sample(other.payload)))).toBe('AGE_NO_IDENTITY');
      },
    );

    it('reencrypt makes a new file key and payload that only the new header opens', async () => {
      const kms = await open();
      const s = newSubject();
      const { recipient } = await kms.custodian(s);
      const reader = X25519Identity.generate();
      const document = bytes(200_000, 12);
      const { header, payload } = splitAgeFile(encrypt([reader.recipient, recipient], document));
      const next = await kms.reencrypt(s, header, [reader.recipient]);
      const transform = coreTransform(next.core);
      const parts: Buffer[] = [];
      transform.on('data', (c: Buffer) => parts.push(c));
      transform.end(payload);
      await new Promise((r) => transform.on('end', r));
      const newPayload = Buffer.concat(parts);
      expect(Buffer.compare(newPayload, Buffer.from(payload))).not.toBe(0);
      expect(Buffer.compare(Buffer.from(decrypt([reader], Buffer.concat([next.header, newPayload]))), document)).toBe(
        0,
      );
      expect(() => decrypt([reader], Buffer.concat([header, newPayload]))).toThrow();
    });

    it('destroy ends the subject’s key for good, also after reopening; other subjects keep theirs', async () => {
      const kms = await open();
      const s = newSubject();
      const other = newSubject();
      const { recipient } = await kms.custodian(s);
      await kms.custodian(other);
      const { header } = splitAgeFile(encrypt([recipient], bytes(100)));
      await kms.rewrap(s, header, []); // in use up to the destruction (a backend may keep it at hand)
      const result = await kms.destroy(s);
      expect(result).toMatchObject({ subject: s, backend: kms.backend });
      expect(result.confirmed).toMatch(new RegExp(`^${kms.backend}: `));
      expect(await codeOfAsync(kms.rewrap(s, header, []))).toBe('KMS_KEY_DESTROYED');
      expect(await codeOfAsync(kms.custodian(s))).toBe('KMS_KEY_DESTROYED');
      const again = await reopen();
      expect(await codeOfAsync(again.rewrap(s, header, []))).toBe('KMS_KEY_DESTROYED');
      expect(await codeOfAsync(again.custodian(other))).toBe('no error');
      expect((await kms.destroy(s)).confirmed).toMatch(/no such key/);
    });

    it('refuses subjects that are not keyed pseudonyms', async () => {
      const kms = await open();
      expect(await codeOfAsync(kms.custodian('MRN-12345'))).toBe('INVALID_ARGUMENT');
      expect(await codeOfAsync(kms.destroy('../x'))).toBe('INVALID_ARGUMENT');
    });
  });
}
