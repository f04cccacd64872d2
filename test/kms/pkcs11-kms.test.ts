/**
 * The pkcs11 KMS on a fresh SoftHSM2 token: the shared KMS contract, then
 * what only a token can show: the key-encryption key is not extractable,
 * and after destruction the token holds no object for the subject and
 * refuses the old handle; a wrong PIN is KMS_LOCKED, a missing token
 * KMS_UNAVAILABLE.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pkcs11js from 'pkcs11js';
import { afterAll, describe, expect, it } from 'vitest';
import { destroyedTag, type Kms } from '../../kms/kms.ts';
import { Pkcs11Kms } from '../../kms/pkcs11-kms.ts';
import { freshToken } from '../servers/softhsm.ts';
import { kmsConformance, newSubject } from './kms-conformance.ts';

const token = freshToken();
const wrappedFile = join(token.dir, 'custodians.json');
const opened: Pkcs11Kms[] = [];
// One session per process is what a node holds; the suite reuses one and "reopens" by re-reading the file.
let shared: Pkcs11Kms | null = null;
async function open(): Promise<Kms> {
  shared ??= await Pkcs11Kms.open({ ...token, wrappedFile });
  return shared;
}
async function reopen(): Promise<Kms> {
  if (shared) await shared.close();
  shared = await Pkcs11Kms.open({ ...token, wrappedFile });
  opened.push(shared);
  return shared;
}
afterAll(async () => {
  await shared?.close();
});

// First, before this process has logged in to the token (login is per process and token).
describe('pkcs11 KMS: opening', () => {
  it('a wrong PIN is KMS_LOCKED; an unknown token KMS_UNAVAILABLE', async () => {
    await expect(Pkcs11Kms.open({ ...token, pin: 'wrong', wrappedFile })).rejects.toMatchObject({ code: 'KMS_LOCKED' });
    await expect(Pkcs11Kms.open({ ...token, token: 'no-such-token', wrappedFile })).rejects.toMatchObject({
      code: 'KMS_UNAVAILABLE',
    });
  });

  kmsConformance('pkcs11 (SoftHSM2)', open, reopen);

  describe('pkcs11 KMS on the token', () => {
    it('the token key cannot be read out, and after destroy the token has no object for the subject', async () => {
      const kms = (await open()) as Pkcs11Kms;
      const s = newSubject();
      const { keyId } = await kms.custodian(s);
      expect(kms.hasTokenKey(s)).toBe(true);
      // A second session, as an attacker with the PIN would have: the key value is refused.
      const p11 = new pkcs11js.PKCS11();
      p11.load(token.library); // already initialised in this process by the KMS
      let session: Buffer | null = null;
      try {
        const slot = p11.C_GetSlotList(true).find((x) => p11.C_GetTokenInfo(x).label.trim() === token.token);
        session = p11.C_OpenSession(slot as Buffer, pkcs11js.CKF_SERIAL_SESSION);
        p11.C_FindObjectsInit(session, [{ type: pkcs11js.CKA_LABEL, value: `medvault-custodian:${s}` }]);
        const [handle] = p11.C_FindObjects(session, 1);
        p11.C_FindObjectsFinal(session);
        expect(() =>
          p11.C_GetAttributeValue(session as Buffer, handle as Buffer, [{ type: pkcs11js.CKA_VALUE }]),
        ).toThrow(/CKR_ATTRIBUTE_SENSITIVE/);
        const [attrs] = p11.C_GetAttributeValue(session as Buffer, handle as Buffer, [
          { type: pkcs11js.CKA_EXTRACTABLE },
        ]);
        expect(Buffer.from(attrs?.value as Buffer)[0]).toBe(0);
        await kms.destroy(s);
        expect(kms.hasTokenKey(s)).toBe(false);
        expect(() =>
          p11.C_GetAttributeValue(session as Buffer, handle as Buffer, [{ type: pkcs11js.CKA_LABEL }]),
        ).toThrow(/CKR_OBJECT_HANDLE_INVALID/);
      } finally {
        if (session) p11.C_CloseSession(session);
      }
      // The custody file keeps only the key id of a destroyed subject, never its wrapped secret.
      const file = JSON.parse(readFileSync(wrappedFile, 'utf8'));
      expect(file.custodians[s]).toBeUndefined();
      expect(file.destroyed[destroyedTag(s)].keyId).toBe(keyId);
      expect(readFileSync(wrappedFile, 'utf8')).not.toContain(s); // listed by tag, not by pseudonym
    });
  });
});
