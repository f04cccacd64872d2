/**
 * The metadata store keeps member rows in memory (every request looks its member up): what it
 * serves must always be what the database holds, committed. Each change to a member is seen by
 * the next lookup, by id and by key; a row read inside a transaction that is rolled back is
 * never served; a row handed out cannot be changed under the next caller.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { keyFingerprint, SigningKey } from '../../crypto/ed25519.ts';
import { Metadata } from '../../services/vault/metadata.ts';

let metadata: Metadata;

function enrol(name: string): { id: string; keyId: string } {
  const key = SigningKey.generate();
  metadata.addMember({
    id: key.id,
    name,
    role: 'reader',
    signingKey: Buffer.from(key.publicKey).toString('base64'),
    recipient: `age1${name}`,
    node: null,
    addedAt: 1,
  });
  return { id: key.id, keyId: key.id };
}

beforeEach(() => {
  metadata = new Metadata(':memory:');
});
afterEach(() => metadata.close());

describe('member lookups', () => {
  it('see each change at once, by id and by key: removal, break-glass, name, keys', () => {
    const { id, keyId } = enrol('reader');
    expect(metadata.member(id)?.removedAt).toBeNull();
    expect(metadata.memberByKey(keyId)?.emergencyAccess).toBe(false);

    metadata.setEmergencyAccess(id, true);
    expect(metadata.member(id)?.emergencyAccess).toBe(true);
    expect(metadata.memberByKey(keyId)?.emergencyAccess).toBe(true);

    metadata.renameMember(id, 'ward-7');
    expect(metadata.memberByKey(keyId)?.name).toBe('ward-7');

    const next = SigningKey.generate();
    const signingKey = Buffer.from(next.publicKey).toString('base64');
    expect(metadata.rotateMemberKeys(id, { signingKey, recipient: 'age1next' }, 2)).toBe(true);
    expect(metadata.memberByKey(keyId)).toBeUndefined(); // the old key names no one now
    expect(metadata.memberByKey(keyFingerprint(next.publicKey))?.id).toBe(id);
    expect(metadata.member(id)?.recipient).toBe('age1next');

    metadata.removeMember(id, 3);
    expect(metadata.member(id)?.removedAt).toBe(3);
    expect(metadata.memberByKey(keyFingerprint(next.publicKey))?.removedAt).toBe(3);
  });

  it('never serve a row read inside a transaction that was rolled back', () => {
    let id = '';
    expect(() =>
      metadata.transaction(() => {
        id = enrol('transient').id;
        expect(metadata.member(id)?.name).toBe('transient'); // read inside: not yet committed
        throw new Error('rolled back');
      }),
    ).toThrow('rolled back');
    expect(metadata.member(id)).toBeUndefined();
    expect(metadata.memberByKey(id)).toBeUndefined();
  });

  it('never serve a row older than a change rolled back over it', () => {
    const { id } = enrol('reader');
    expect(metadata.member(id)?.emergencyAccess).toBe(false);
    expect(() =>
      metadata.transaction(() => {
        metadata.setEmergencyAccess(id, true);
        expect(metadata.member(id)?.emergencyAccess).toBe(true);
        throw new Error('rolled back');
      }),
    ).toThrow('rolled back');
    expect(metadata.member(id)?.emergencyAccess).toBe(false);
  });

  it('hand out rows no caller can change for the next', () => {
    const { id } = enrol('reader');
    const row = metadata.member(id);
    expect(() => {
      (row as { removedAt: number | null }).removedAt = null;
      (row as { role: string }).role = 'admin';
    }).toThrow(TypeError);
    expect(metadata.member(id)?.role).toBe('reader');
  });
});
