/**
 * Member key rotation (services/vault/key-rotation.ts), through HTTP with the SDK
 * and the CLI: a member replaces its own keys, an admin replaces a member's lost
 * ones; the id and grants stay, every header is rewrapped to the new recipient
 * (the old identity opens none, the stock age CLI opens it with the new key
 * file), the previous key signs nothing again and is never enrolled again, and
 * every malformed or unauthorised rotation is refused with nothing changed.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LedgerEvent } from '../../anchor/events.ts';
import { openLedger } from '../../anchor/open.ts';
import { verifyReceipt } from '../../anchor/receipt.ts';
import { decrypt } from '../../crypto/age.ts';
import {
  generateMemberKeys,
  type MemberCredentials,
  memberKeyFileText,
  memberPublic,
  parseMemberKeyFile,
  rotationRequest,
} from '../../services/protocol/member-keys.ts';
import { signRequest } from '../../services/protocol/signing.ts';
import { VaultClient } from '../../services/sdk/client.ts';
import { bytes, codeOf, runCli, tempDir, tool } from '../helpers.ts';
import { served, startNode, type TestMember, type TestNode, treatment } from './vault-fixture.ts';

let node: TestNode;
let hospital: TestMember;
let reader: TestMember;
const out = tempDir('medvault-rotation-');

beforeAll(async () => {
  node = await startNode();
  hospital = await node.addMember('hospital', 'uploader');
  reader = await node.addMember('reader', 'reader');
});
afterAll(() => node?.stop());

const upload = (readers: string[], seed: number) => hospital.client.upload(bytes(5_000, seed), treatment(readers));

/** Whether `identity`'s keys open the age file the node serves `member` for `recordId`. */
async function opens(member: TestMember, recordId: string, keys: MemberCredentials): Promise<boolean> {
  const file = await served(member, recordId);
  try {
    decrypt([keys.identity], file);
    return true;
  } catch (err) {
    expect((err as { code?: string }).code).toBe('AGE_NO_IDENTITY');
    return false;
  }
}

/** Every key.rotated on the node's ledger (read beside it: a read-only open takes no lock). */
async function rotationsOnLedger(): Promise<LedgerEvent[]> {
  const ledger = await openLedger(`file:${join(node.data, 'ledger.mvl')}`, { readOnly: true });
  const found: LedgerEvent[] = [];
  for await (const block of ledger.blocks(0)) found.push(...block.events.filter((e) => e.type === 'key.rotated'));
  await ledger.close();
  return found;
}

/** A PUT /v1/members/ID/keys signed by `signer`, with `body` as given (for malformed ones). */
async function rawRotate(
  signer: MemberCredentials,
  id: string,
  body: unknown,
): Promise<{ status: number; code: string }> {
  const path = `/v1/members/${id}/keys`;
  const json = JSON.stringify(body);
  const answer = await fetch(`${node.url}${path}`, {
    method: 'PUT',
    headers: { ...signRequest(signer.signing, 'PUT', path, json), 'content-type': 'application/json' },
    body: json,
  });
  return { status: answer.status, code: ((await answer.json()) as { code: string }).code };
}

describe('a member rotates its own keys', () => {
  it('keeps its id and grants: every header is rewrapped to the new recipient, the old key is refused', async () => {
    const records = [(await upload([reader.id], 1)).record.id, (await upload([reader.id], 2)).record.id];
    const old = reader.keys;
    const oldClient = new VaultClient(node.url, old);
    for (const id of records) expect(await opens(reader, id, old)).toBe(true);
    const next = generateMemberKeys();
    const rotated = await reader.client.rotateKeys(next);
    expect(rotated.member.id).toBe(reader.id);
    expect(rotated.member.keyId).toBe(next.signing.id);
    expect(rotated.member.recipient).toBe(String(next.identity.recipient));
    expect(rotated.rewrapped).toBe(2);
    expect(rotated.rewrapsPending).toBe(false);
    expect(rotated.keys.member).toBe(reader.id);
    expect(rotated.receipt.event).toMatchObject({
      type: 'key.rotated',
      member: reader.id,
      previousKey: old.signing.id,
      newKey: next.signing.id,
      by: reader.id,
      // A reader: its new public keys for the other nodes' directories.
      signingKey: Buffer.from(next.signing.publicKey).toString('hex'),
      recipient: Buffer.from(next.identity.recipient.publicKey).toString('hex'),
    });
    expect(verifyReceipt(rotated.receipt, { trusted: [node.vault.nodeId] }).signer).toBe(node.vault.nodeId);
    // The same client signs with its new keys from now on; the new identity opens every record.
    reader.keys = rotated.keys;
    for (const id of records) {
      expect(await opens(reader, id, rotated.keys)).toBe(true);
      expect(await opens(reader, id, old)).toBe(false);
      expect((await reader.client.fetch(id, { path: join(out, `after-${id}`) })).bytes).toBe(5_000);
    }
    // The previous key signs nothing again.
    await expect(oldClient.members()).rejects.toMatchObject({ code: 'AUTH_INVALID' });
    await expect(oldClient.fetch(records[0] as string, { path: join(out, 'old') })).rejects.toMatchObject({
      code: 'AUTH_INVALID',
    });
    // Grants made afterwards wrap to the new recipient; the trail names the member by its id.
    const later = (await upload([reader.id], 3)).record.id;
    expect(await opens(reader, later, rotated.keys)).toBe(true);
    expect(await opens(reader, later, old)).toBe(false);
  });

  it('an uploader that rotated still manages the records it uploaded before', async () => {
    const spare = await node.addMember('spare-reader', 'reader');
    const record = (await upload([spare.id], 4)).record.id;
    const { keys } = await hospital.client.rotateKeys(generateMemberKeys());
    hospital.keys = keys;
    expect((await hospital.client.record(record)).uploader).toBe(hospital.id);
    await hospital.client.revoke(record, spare.id);
    await expect(spare.client.fetch(record, { path: join(out, 'revoked') })).rejects.toMatchObject({
      code: 'NO_GRANT',
    });
  });

  it('the new key file is an age identity file naming the member: the stock age CLI opens a record with it', async () => {
    const file = join(out, 'reader-rotated.key');
    const text = memberKeyFileText('reader', reader.keys);
    expect(parseMemberKeyFile(text).member).toBe(reader.id);
    const { writeFileSync } = await import('node:fs');
    writeFileSync(file, text, { mode: 0o600 });
    const record = (await upload([reader.id], 5)).record.id;
    const sealed = join(out, 'sealed.age');
    writeFileSync(sealed, await served(reader, record));
    expect(tool('age', ['-d', '-i', file, '-o', join(out, 'plain'), sealed]).status).toBe(0);
    expect(readFileSync(join(out, 'plain')).equals(bytes(5_000, 5))).toBe(true);
    // A member key file whose id line is not an id is refused, not silently taken as another member.
    expect(codeOf(() => parseMemberKeyFile(text.replace(reader.id, 'not-an-id')))).toBe('KEY_INVALID');
  });
});

describe('an admin replaces a member’s lost keys', () => {
  it('only an admin replaces another member’s keys; the member signs with the new ones', async () => {
    const lost = await node.addMember('lost-laptop', 'reader');
    const record = (await upload([lost.id], 6)).record.id;
    const next = generateMemberKeys();
    // Another member may not; the member keeps working meanwhile.
    await expect(hospital.client.rotateKeys(next, lost.id)).rejects.toMatchObject({ code: 'FORBIDDEN' });
    expect((await lost.client.members()).length).toBeGreaterThan(0);
    const rotated = await node.admin.client.rotateKeys(next, lost.id);
    expect(rotated.receipt.event).toMatchObject({ member: lost.id, by: node.admin.id });
    await expect(lost.client.members()).rejects.toMatchObject({ code: 'AUTH_INVALID' });
    const renewed = new VaultClient(node.url, rotated.keys);
    expect(renewed.memberId).toBe(lost.id);
    expect((await renewed.fetch(record, { path: join(out, 'renewed') })).bytes).toBe(5_000);
  });

  it('the CLI writes the new key file first and names the member in it', async () => {
    const member = await node.addMember('cli-reader', 'reader');
    const file = join(out, 'cli-reader-new.key');
    const env = { ...process.env, MEDVAULT_NODE: node.url };
    const { code, stdout } = await runCli(['member', 'rotate-key', '-o', file, '--json'], {
      ...env,
      MEDVAULT_KEY: member.keyFile,
    });
    expect(code).toBe(0);
    const answer = JSON.parse(stdout) as { member: { id: string; keyId: string } };
    const keys = parseMemberKeyFile(readFileSync(file, 'utf8'));
    expect(answer.member.id).toBe(member.id);
    expect(keys.member).toBe(member.id);
    expect(answer.member.keyId).toBe(keys.signing.id);
    expect((await new VaultClient(node.url, keys).members()).length).toBeGreaterThan(0);
    await expect(member.client.members()).rejects.toMatchObject({ code: 'AUTH_INVALID' });
    // Refused (an existing output file): nothing rotated, the old file still the member's.
    const again = await runCli(['member', 'rotate-key', '-o', file], { ...env, MEDVAULT_KEY: file });
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/exists/);
    expect(parseMemberKeyFile(readFileSync(file, 'utf8')).signing.id).toBe(keys.signing.id);
    expect((await new VaultClient(node.url, keys).members()).length).toBeGreaterThan(0);
  });
});

describe('refused rotations change nothing', () => {
  let victim: TestMember;
  let record: string;
  beforeAll(async () => {
    victim = await node.addMember('victim', 'reader');
    record = (await upload([victim.id], 7)).record.id;
  });

  /** The member still signs with its keys, still opens its record, and no key.rotated was anchored for it. */
  async function unchanged(): Promise<void> {
    expect((await victim.client.fetch(record, { path: join(out, `unchanged-${Date.now()}`) })).bytes).toBe(5_000);
    const members = await victim.client.members();
    expect(members.find((m) => m.id === victim.id)?.keyId).toBe(victim.keys.signing.id);
    expect((await rotationsOnLedger()).filter((e) => e.member === victim.id)).toEqual([]);
  }

  it('a proof by another key, or for another member, or of other keys: KEY_PROOF_INVALID', async () => {
    const next = generateMemberKeys();
    const request = rotationRequest(victim.id, next);
    const other = rotationRequest(victim.id, generateMemberKeys());
    const forOther = rotationRequest(reader.id, next);
    for (const body of [
      { ...request, proof: other.proof },
      { ...request, proof: forOther.proof },
      { ...request, recipient: String(generateMemberKeys().identity.recipient) },
    ]) {
      expect(await rawRotate(victim.keys, victim.id, body)).toEqual({ status: 400, code: 'KEY_PROOF_INVALID' });
    }
    await unchanged();
  });

  it('malformed keys or proof, a missing field, an extra one: REQUEST_INVALID', async () => {
    const request = rotationRequest(victim.id, generateMemberKeys());
    for (const body of [
      { ...request, signingKey: 'AAAA' },
      { ...request, recipient: 'age1notarecipient' },
      { ...request, proof: 'AAAA' },
      { signingKey: request.signingKey, recipient: request.recipient },
      { ...request, name: 'mallory' },
    ]) {
      expect(await rawRotate(victim.keys, victim.id, body)).toMatchObject({ status: 400, code: 'REQUEST_INVALID' });
    }
    await unchanged();
  });

  it('a key ever enrolled (its own, a retired one, another member’s) is refused: MEMBER_EXISTS', async () => {
    const retired = generateMemberKeys();
    const member = await node.addMember('rotates-twice', 'reader');
    const first = await member.client.rotateKeys(retired);
    await member.client.rotateKeys(generateMemberKeys());
    for (const keys of [victim.keys, retired, hospital.keys, member.keys]) {
      expect(await rawRotate(victim.keys, victim.id, rotationRequest(victim.id, keys))).toEqual({
        status: 409,
        code: 'MEMBER_EXISTS',
      });
    }
    // Nor is a retired key enrolled as a new member.
    await expect(
      node.admin.client.addMember({ name: 'reuses-a-key', role: 'reader', ...memberPublic(first.keys) }),
    ).rejects.toMatchObject({ code: 'MEMBER_EXISTS' });
    await unchanged();
  });

  it('a removed member, an unknown id, another node’s member: not rotated', async () => {
    const gone = await node.addMember('gone', 'reader');
    await node.admin.client.removeMember(gone.id);
    const next = generateMemberKeys();
    await expect(node.admin.client.rotateKeys(next, gone.id)).rejects.toMatchObject({ code: 'MEMBER_NOT_FOUND' });
    await expect(node.admin.client.rotateKeys(next, 'f'.repeat(32))).rejects.toMatchObject({
      code: 'MEMBER_NOT_FOUND',
    });
    const remote = generateMemberKeys();
    const { member } = await node.admin.client.addMember({
      name: 'remote-reader',
      role: 'reader',
      node: 'e'.repeat(32),
      ...memberPublic(remote),
    });
    await expect(node.admin.client.rotateKeys(next, member.id)).rejects.toMatchObject({ code: 'REQUEST_INVALID' });
    await unchanged();
  });
});
