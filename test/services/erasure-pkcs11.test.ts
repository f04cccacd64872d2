/**
 * The whole erasure flow with custody on a PKCS#11 token (a fresh SoftHSM2
 * token): records uploaded to a token-rooted custodian, granted, fetched,
 * then the subject erased: the certificate names the pkcs11 backend and the
 * key destroyed, the token holds no object for the subject any more, the
 * custody file no longer holds its wrapped secret, and the records are gone.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pkcs11js from 'pkcs11js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { destroyedTag } from '../../kms/kms.ts';
import { verifyCertificate } from '../../services/protocol/certificate.ts';
import { bytes, tempDir } from '../helpers.ts';
import { freshToken } from '../servers/softhsm.ts';
import { DAY, SUBJECT, startNode, type TestMember, type TestNode } from './vault-fixture.ts';

const token = freshToken();
let node: TestNode;
let hospital: TestMember;
let reader: TestMember;
let dpo: TestMember;
const out = tempDir();

/** Whether the token holds a custodian key object for the subject, seen from another session. */
function tokenHolds(subject: string): boolean {
  const p11 = new pkcs11js.PKCS11();
  p11.load(token.library); // initialised in this process by the node's KMS
  const slot = p11.C_GetSlotList(true).find((s) => p11.C_GetTokenInfo(s).label.trim() === token.token) as Buffer;
  const session = p11.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
  try {
    p11.C_FindObjectsInit(session, [{ type: pkcs11js.CKA_LABEL, value: `medvault-custodian:${subject}` }]);
    const found = p11.C_FindObjects(session, 1).length > 0;
    p11.C_FindObjectsFinal(session);
    return found;
  } finally {
    p11.C_CloseSession(session);
  }
}

beforeAll(async () => {
  node = await startNode({ overrides: { kms: { backend: 'pkcs11', ...token } } });
  hospital = await node.addMember('hospital', 'uploader');
  reader = await node.addMember('reader', 'reader');
  dpo = await node.addMember('dpo', 'dpo');
});
afterAll(() => node?.stop());

describe('erasure with custody on a PKCS#11 token', () => {
  it('upload, grant and fetch work through the token; erasure destroys the token key', async () => {
    const document = bytes(400_000, 6);
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      const { record } = await hospital.client.upload(document, {
        subject: SUBJECT,
        readers: [],
        purpose: 'treatment',
        expiresAt: Date.now() + DAY,
      });
      ids.push(record.id);
    }
    await hospital.client.grant(ids[0] as string, reader.id, { purpose: 'treatment', expiresAt: Date.now() + DAY });
    const fetched = await reader.client.fetch(ids[0] as string, { path: join(out, 'doc') });
    expect(fetched.bytes).toBe(document.length);
    expect(tokenHolds(SUBJECT)).toBe(true);

    const certificate = await dpo.client.erase({ subject: SUBJECT });
    expect(certificate.kms).toMatchObject({ backend: 'pkcs11' });
    expect(certificate.kms?.confirmed).toMatch(/C_DestroyObject on token medvault-test/);
    expect(verifyCertificate(JSON.parse(JSON.stringify(certificate)), { trusted: [node.vault.nodeId] })).toMatchObject({
      records: 2,
      keyDestroyed: true,
    });
    expect(tokenHolds(SUBJECT)).toBe(false);
    const custody = JSON.parse(readFileSync(join(node.data, 'custodians.pkcs11.json'), 'utf8'));
    expect(custody.custodians[SUBJECT]).toBeUndefined();
    // Listed as destroyed by a one-way tag: the custody file (plain JSON) names no pseudonym.
    expect(custody.destroyed[destroyedTag(SUBJECT)].keyId).toBe(certificate.kms?.keyId);
    expect(JSON.stringify(custody)).not.toContain(SUBJECT);
    for (const id of ids) {
      await expect(reader.client.fetch(id, { path: join(out, 'gone') })).rejects.toMatchObject({
        code: 'RECORD_ERASED',
      });
    }
    const sweep = await dpo.client.sweep(certificate.requestId);
    expect(sweep.findings).toEqual([]);
    expect(sweep.checked).toContain('kms pkcs11: custodian of the subject');
    expect(sweep.checked.some((c) => c.endsWith('custodians.pkcs11.json'))).toBe(true);
    // A new upload for the erased subject is refused: its custodian is gone for good.
    await expect(
      hospital.client.upload(document, {
        subject: SUBJECT,
        readers: [],
        purpose: 'treatment',
        expiresAt: Date.now() + DAY,
      }),
    ).rejects.toMatchObject({ code: 'KMS_KEY_DESTROYED' });
  });
});
