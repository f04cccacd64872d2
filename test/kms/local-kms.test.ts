/**
 * The local KMS: a keystore sealed by passphrase or key file, custodian keys
 * per subject, rewrap inside the KMS for new readers, and destruction that
 * leaves no copy of the key in or beside the keystore file.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decrypt, encrypt, splitAgeFile } from '../../crypto/age.ts';
import { verifySignature } from '../../crypto/ed25519.ts';
import { X25519Identity, X25519Recipient } from '../../crypto/x25519.ts';
import { isMedvaultError } from '../../errors.ts';
import { destroyedTag } from '../../kms/kms.ts';
import { LocalKms } from '../../kms/local-kms.ts';
import { readSealed, writeSealed } from '../../kms/sealed-file.ts';
import { bytes, codeOf, tempDir } from '../helpers.ts';
import { openKeystoreFiles } from './keystore-files.ts';
import { kmsConformance } from './kms-conformance.ts';

const dir = tempDir('medvault-kms-');
const subject = () => randomBytes(32).toString('hex');
const passphrase = { passphrase: 'correct horse battery staple' };

const contractKey = { keyFile: randomBytes(32) };
kmsConformance(
  'local',
  () => LocalKms.open(join(dir, 'contract.keystore'), contractKey),
  () => LocalKms.open(join(dir, 'contract.keystore'), contractKey),
);

async function errorOf(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => null,
    (e) => e,
  );
}

describe('the keystore file', () => {
  it('is created sealed (mode 0600), reopens with its passphrase, refuses another', async () => {
    const path = join(dir, 'pass.keystore');
    const kms = await LocalKms.open(path, passphrase);
    const s = subject();
    const { keyId } = await kms.custodian(s);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect((await (await LocalKms.open(path, passphrase)).custodian(s)).keyId).toBe(keyId);
    expect(isMedvaultError(await errorOf(LocalKms.open(path, { passphrase: 'wrong' })), 'KMS_LOCKED')).toBe(true);
    expect(isMedvaultError(await errorOf(LocalKms.open(path, { keyFile: randomBytes(32) })), 'KMS_LOCKED')).toBe(true);
  });

  it('works with a key file', async () => {
    const keyFile = randomBytes(32);
    const path = join(dir, 'keyfile.keystore');
    const s = subject();
    const { keyId } = await (await LocalKms.open(path, { keyFile })).custodian(s);
    expect((await (await LocalKms.open(path, { keyFile })).custodian(s)).keyId).toBe(keyId);
    expect(isMedvaultError(await errorOf(LocalKms.open(path, passphrase)), 'KMS_LOCKED')).toBe(true);
  });

  it('a damaged keystore is KMS_CORRUPT, an altered one KMS_LOCKED', async () => {
    const broken = join(dir, 'broken.keystore');
    writeFileSync(broken, 'not json');
    expect(isMedvaultError(await errorOf(LocalKms.open(broken, passphrase)), 'KMS_CORRUPT')).toBe(true);
    const altered = join(dir, 'altered.keystore');
    await LocalKms.open(altered, passphrase);
    const layout = JSON.parse(readFileSync(altered, 'utf8'));
    const sealed = Buffer.from(layout.sealed, 'base64');
    sealed[3] = (sealed[3] as number) ^ 1;
    writeFileSync(altered, JSON.stringify({ ...layout, sealed: sealed.toString('base64') }));
    expect(isMedvaultError(await errorOf(LocalKms.open(altered, passphrase)), 'KMS_LOCKED')).toBe(true);
  });

  it('refuses subjects that are not keyed pseudonyms', async () => {
    const kms = await LocalKms.open(join(dir, 'subjects.keystore'), passphrase);
    expect(isMedvaultError(await errorOf(kms.custodian('Jane Doe')), 'INVALID_ARGUMENT')).toBe(true);
  });
});

describe('custody', () => {
  it('rewrap, inside the KMS, gives a new reader the record; the payload is untouched', async () => {
    const kms = await LocalKms.open(join(dir, 'rewrap.keystore'), passphrase);
    const s = subject();
    const { recipient: custodian } = await kms.custodian(s);
    const [first, second] = [X25519Identity.generate(), X25519Identity.generate()];
    const plain = bytes(200_000, 4);
    const { header, payload } = splitAgeFile(encrypt([first.recipient, custodian], plain));
    const rewrapped = await kms.rewrap(s, header, [second.recipient]);
    expect(Buffer.compare(decrypt([second], Buffer.concat([rewrapped, payload])), plain)).toBe(0);
    expect(codeOf(() => decrypt([first], Buffer.concat([rewrapped, payload])))).toBe('AGE_NO_IDENTITY');
    // The custodian stays on the new header, so the record can be re-shared again.
    const again = await kms.rewrap(s, rewrapped, [first.recipient]);
    expect(Buffer.compare(decrypt([first], Buffer.concat([again, payload])), plain)).toBe(0);
  });

  it('destroy: the key is gone from the keystore and its shard, no copy is left beside them; other subjects keep theirs', async () => {
    const path = join(dir, 'erase.keystore');
    const kms = await LocalKms.open(path, passphrase);
    const [gone, kept] = [subject(), subject()];
    const { recipient, keyId } = await kms.custodian(gone);
    await kms.custodian(kept);
    const { header } = splitAgeFile(encrypt([recipient], Buffer.from('note')));
    const before = await openKeystoreFiles(path, passphrase);
    const secret = before.custodians[gone]?.secret as string;
    expect(secret).toBeDefined();
    const shards = `${path}.custodians`;
    const shardFiles = readdirSync(shards).sort();

    const result = await kms.destroy(gone);
    expect(result).toMatchObject({ subject: gone, keyId, backend: 'local' });

    const after = await openKeystoreFiles(path, passphrase);
    expect(Object.keys(after.custodians)).toEqual([kept]);
    expect(after.keystore.destroyed[destroyedTag(gone)]).toMatchObject({ keyId });
    expect(after.text).not.toContain(gone); // listed by tag, not by pseudonym
    expect(after.text).not.toContain(secret);
    for (const file of [path, ...readdirSync(shards).map((f) => join(shards, f))]) {
      const raw = readFileSync(file);
      expect(raw.includes(Buffer.from(secret, 'base64'))).toBe(false);
      expect(raw.toString().includes(secret)).toBe(false);
    }
    // No copy beside the files: only the keystore, its shard directory and the same shard files.
    expect(readdirSync(dir).filter((f) => f.includes('erase.keystore'))).toEqual([
      'erase.keystore',
      'erase.keystore.custodians',
    ]);
    expect(readdirSync(shards).sort()).toEqual(shardFiles);

    const reopened = await LocalKms.open(path, passphrase);
    for (const op of [() => kms.rewrap(gone, header, []), () => kms.custodian(gone), () => reopened.custodian(gone)]) {
      expect(isMedvaultError(await errorOf(op()), 'KMS_KEY_DESTROYED')).toBe(true);
    }
    expect((await kms.destroy(gone)).confirmed).toContain('no such key');
    expect((await kms.custodian(kept)).keyId).toMatch(/^[0-9a-f]{32}$/);
  });
});

describe('a keystore written before destroyed subjects were tagged', () => {
  it('is re-keyed by tag when opened: the pseudonym leaves the file, the subject stays destroyed', async () => {
    const path = join(dir, 'old.keystore');
    const gone = subject();
    await writeSealed(path, passphrase, { custodians: {}, destroyed: { [gone]: { keyId: 'a'.repeat(32), at: 1 } } });
    const kms = await LocalKms.open(path, passphrase);
    expect(isMedvaultError(await errorOf(kms.custodian(gone)), 'KMS_KEY_DESTROYED')).toBe(true);
    const after = await readSealed<{ destroyed: Record<string, unknown>; tagged?: boolean }>(path, passphrase);
    expect(after).toMatchObject({ tagged: true, destroyed: { [destroyedTag(gone)]: { keyId: 'a'.repeat(32) } } });
    expect(JSON.stringify(after)).not.toContain(gone);
    const reopened = await LocalKms.open(path, passphrase); // re-keyed once, not twice
    expect(isMedvaultError(await errorOf(reopened.custodian(gone)), 'KMS_KEY_DESTROYED')).toBe(true);
  });
});

describe('member identities', () => {
  it('each member gets an Ed25519 signing key and an age identity, kept sealed across reopening', async () => {
    const path = join(dir, 'members.keystore');
    const kms = await LocalKms.open(path, passphrase);
    const hospital = await kms.createMember('st-mary.hospital');
    const insurer = await kms.createMember('acme-insurance');
    expect(hospital.id).toMatch(/^[0-9a-f]{32}$/);
    expect(hospital.recipient).toMatch(/^age1[0-9a-z]+$/);
    const reopened = await LocalKms.open(path, passphrase);
    expect(reopened.listMembers()).toEqual([insurer, hospital]);
    const keys = reopened.memberKeys('st-mary.hospital');
    const message = Buffer.from('block header');
    expect(verifySignature(Buffer.from(hospital.signingKey, 'base64'), message, keys.signing.sign(message))).toBe(true);
    const file = encrypt([X25519Recipient.parse(hospital.recipient)], Buffer.from('for the hospital'));
    expect(Buffer.from(decrypt([keys.identity], file)).toString()).toBe('for the hospital');
    expect(readFileSync(path).includes(Buffer.from(keys.signing.exportSeed()))).toBe(false);
  });

  it('refuses a second set of keys for a name, unknown members and bad names', async () => {
    const kms = await LocalKms.open(join(dir, 'members2.keystore'), passphrase);
    await kms.createMember('lab-1');
    expect(isMedvaultError(await errorOf(kms.createMember('lab-1')), 'KMS_MEMBER_EXISTS')).toBe(true);
    expect(codeOf(() => kms.memberKeys('nobody'))).toBe('KMS_NO_MEMBER');
    expect(isMedvaultError(await errorOf(kms.createMember('Dr. Jane Doe')), 'INVALID_ARGUMENT')).toBe(true);
  });
});

describe('custodian keys in shards', () => {
  const keyFile = { keyFile: randomBytes(32) };
  /** Each file of the keystore, with its inode and modification time (a rewrite renames a new file in). */
  const files = (path: string) => {
    const shards = `${path}.custodians`;
    const names = [path, ...(existsSync(shards) ? readdirSync(shards).map((f) => join(shards, f)) : [])];
    return new Map(names.map((f) => [f, `${statSync(f).ino}:${statSync(f).mtimeMs}`]));
  };

  it('a new subject rewrites one shard file, never the keystore nor the other subjects’ shards', async () => {
    const path = join(dir, 'sharded.keystore');
    const kms = await LocalKms.open(path, keyFile);
    for (let i = 0; i < 40; i++) await kms.custodian(subject());
    const before = files(path);
    const fresh = subject();
    await kms.custodian(fresh);
    const after = files(path);
    const changed = [...after].filter(([f, v]) => before.get(f) !== v).map(([f]) => f);
    expect(changed).toHaveLength(1);
    expect(after.size).toBeGreaterThan(20); // 41 subjects spread over many shards
    expect(changed[0]).toMatch(/sharded\.keystore\.custodians\/[0-9a-f]{2}\.sealed$/);
    expect((await openKeystoreFiles(path, keyFile)).custodians[fresh]).toBeDefined();
  });

  it('concurrent new subjects are all kept, each once, the same after reopening', async () => {
    const path = join(dir, 'concurrent.keystore');
    const kms = await LocalKms.open(path, keyFile);
    const subjects = Array.from({ length: 300 }, subject); // with 256 shards, some share one
    const made = await Promise.all(subjects.map((s) => kms.custodian(s)));
    const again = await LocalKms.open(path, keyFile);
    for (const [i, s] of subjects.entries()) {
      expect((await again.custodian(s)).keyId).toBe(made[i]?.keyId);
    }
    expect(Object.keys((await openKeystoreFiles(path, keyFile)).custodians)).toHaveLength(300);
  });

  it('a keystore from before the shards has its keys moved into them when opened, recipients unchanged', async () => {
    const path = join(dir, 'unsharded.keystore');
    const s = subject();
    const identity = X25519Identity.generate();
    const entry = { keyId: 'b'.repeat(32), secret: Buffer.from(identity.secretBytes()).toString('base64'), created: 1 };
    await writeSealed(path, keyFile, { custodians: { [s]: entry }, destroyed: {}, tagged: true });
    const kms = await LocalKms.open(path, keyFile);
    expect(String((await kms.custodian(s)).recipient)).toBe(String(identity.recipient));
    const opened = await openKeystoreFiles(path, keyFile);
    expect(opened.keystore.custodians).toEqual({}); // the keystore no longer holds it
    expect(opened.custodians[s]?.secret).toBe(entry.secret);
    expect(String((await (await LocalKms.open(path, keyFile)).custodian(s)).recipient)).toBe(
      String(identity.recipient),
    );
  });

  it('a destruction a crash cut after marking the subject is finished when the keystore is opened', async () => {
    const path = join(dir, 'cut.keystore');
    const kms = await LocalKms.open(path, keyFile);
    const [gone, kept] = [subject(), subject()];
    const { keyId } = await kms.custodian(gone);
    await kms.custodian(kept);
    // What a crash between the two steps of destroy leaves: marked in the keystore, still in its shard.
    const keystore = (await readSealed<Record<string, unknown>>(path, keyFile)) as { destroyed: object };
    await writeSealed(path, keyFile, {
      ...keystore,
      destroyed: { ...keystore.destroyed, [destroyedTag(gone)]: { keyId, at: 1 } },
    });
    expect((await openKeystoreFiles(path, keyFile)).custodians[gone]).toBeDefined();
    const reopened = await LocalKms.open(path, keyFile);
    expect((await openKeystoreFiles(path, keyFile)).custodians[gone]).toBeUndefined();
    expect((await openKeystoreFiles(path, keyFile)).custodians[kept]).toBeDefined();
    expect(isMedvaultError(await errorOf(reopened.custodian(gone)), 'KMS_KEY_DESTROYED')).toBe(true);
  });
});
