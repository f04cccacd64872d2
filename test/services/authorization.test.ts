/**
 * The authorisation matrix: every role against every route, allowed and
 * denied, through HTTP with the SDK. Includes a reader fetching a record it
 * was never granted, an expired grant, a revoked reader, a non-DPO erasing,
 * and a removed member.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateMemberKeys, memberPublic, VaultClient } from '../../services/sdk/client.ts';
import type { Role } from '../../services/vault/metadata.ts';
import { bytes, tempDir } from '../helpers.ts';
import { DAY, SUBJECT, startNode, type TestMember, type TestNode } from './vault-fixture.ts';

const ACTORS = [
  'admin',
  'owner',
  'otherUploader',
  'granted',
  'never',
  'expired',
  'revoked',
  'dpo',
  'clinician',
] as const;
type Actor = (typeof ACTORS)[number];

let node: TestNode;
const m = {} as Record<Actor | 'spare', TestMember>;
let record: string;
const out = tempDir();
const ok = 'ok';

const upload = (who: TestMember, readers: string[]) =>
  who.client.upload(bytes(70_000, 3), { subject: SUBJECT, readers, purpose: 'treatment', expiresAt: Date.now() + DAY });

beforeAll(async () => {
  node = await startNode();
  m.admin = node.admin;
  const roles: Array<[Actor | 'spare', Role]> = [
    ['owner', 'uploader'],
    ['otherUploader', 'uploader'],
    ['granted', 'reader'],
    ['never', 'reader'],
    ['expired', 'reader'],
    ['revoked', 'reader'],
    ['dpo', 'dpo'],
    ['clinician', 'reader'], // no grant on the record; given break-glass below
    ['spare', 'reader'],
  ];
  for (const [name, role] of roles) m[name] = await node.addMember(name.toLowerCase(), role);
  await m.admin.client.setEmergencyAccess(m.clinician.id, true);
  record = (await upload(m.owner, [m.granted.id, m.revoked.id])).record.id;
  await m.owner.client.grant(record, m.expired.id, { purpose: 'treatment', expiresAt: Date.now() + 700 });
  await m.owner.client.revoke(record, m.revoked.id);
  await new Promise((r) => setTimeout(r, 800));
});
afterAll(() => node?.stop());

async function outcome(step: () => Promise<unknown>): Promise<string> {
  try {
    await step();
    return ok;
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
}

/** The outcome for every actor: `allowed` succeed, the rest get `denial`. */
function only(allowed: Actor[], denial: string): Record<Actor, string> {
  return Object.fromEntries(ACTORS.map((a) => [a, allowed.includes(a) ? ok : denial])) as Record<Actor, string>;
}
const everyone = (outcome: string) => only([...ACTORS], outcome);

/** Each route, as one member would call it, and who may. */
const ROUTES: Array<{ route: string; call: (who: TestMember) => Promise<unknown>; expect: Record<Actor, string> }> = [
  {
    route: 'GET /v1/members',
    call: (w) => w.client.members(),
    expect: everyone(ok),
  },
  {
    route: 'POST /v1/members',
    call: (w) =>
      w.client.addMember({
        name: `x${Math.random().toString(16).slice(2, 10)}`,
        role: 'reader',
        ...memberPublic(generateMemberKeys()),
      }),
    expect: only(['admin'], 'FORBIDDEN'),
  },
  {
    route: 'GET /v1/subjects/:s/custodian',
    call: (w) => w.client.custodian(SUBJECT),
    expect: only(['owner', 'otherUploader'], 'FORBIDDEN'),
  },
  {
    route: 'POST /v1/records',
    call: (w) => upload(w, [m.granted.id]),
    // Only uploaders get past the custodian lookup the SDK makes first.
    expect: only(['owner', 'otherUploader'], 'FORBIDDEN'),
  },
  {
    route: 'GET /v1/records/:id',
    call: (w) => w.client.record(record),
    expect: only(['owner', 'granted', 'dpo'], 'NO_GRANT'),
  },
  {
    route: 'GET /v1/records/:id/content',
    call: (w) => w.client.fetch(record, { path: join(out, `${w.name}.bin`) }),
    expect: only(['owner', 'granted'], 'NO_GRANT'),
  },
  {
    route: 'POST /v1/records/:id/grants',
    call: (w) => w.client.grant(record, m.spare.id, { purpose: 'research', expiresAt: Date.now() + DAY }),
    expect: only(['owner'], 'FORBIDDEN'),
  },
  {
    route: 'DELETE /v1/records/:id/grants/:reader',
    call: (w) => w.client.revoke(record, m.spare.id),
    expect: only(['owner'], 'FORBIDDEN'),
  },
  {
    route: 'POST /v1/records/:id/emergency',
    call: (w) =>
      w.client.emergency(record, 'patient arrived unconscious in the ER', { path: join(out, `e-${w.name}.bin`) }),
    // Only a member an admin gave the capability: not the uploader, not a granted, revoked or
    // expired reader, not an admin or a DPO.
    expect: only(['clinician'], 'FORBIDDEN'),
  },
  {
    route: 'PUT + DELETE /v1/members/:id/emergency-access',
    call: async (w) => {
      await w.client.setEmergencyAccess(m.spare.id, true);
      return w.client.setEmergencyAccess(m.spare.id, false);
    },
    expect: only(['admin'], 'FORBIDDEN'),
  },
  {
    route: 'GET /v1/records/:id/audit',
    call: (w) => w.client.audit(record),
    expect: only(['owner', 'dpo'], 'FORBIDDEN'),
  },
  {
    route: 'GET /v1/reviews',
    call: (w) => w.client.reviews(),
    expect: only(['dpo'], 'FORBIDDEN'),
  },
  {
    route: 'POST /v1/erasures',
    call: async (w) => w.client.erase({ recordId: (await upload(m.owner, [m.granted.id])).record.id }),
    expect: only(['dpo'], 'FORBIDDEN'),
  },
  {
    route: 'POST /v1/checkpoints + GET /v1/checkpoints/latest',
    call: async (w) => {
      await w.client.checkpoint();
      return w.client.latestCheckpoint();
    },
    expect: only(['admin', 'dpo'], 'FORBIDDEN'),
  },
  {
    route: 'GET /v1/checkpoints/latest',
    call: async (w) => {
      await m.admin.client.checkpoint();
      return w.client.latestCheckpoint();
    },
    expect: everyone(ok),
  },
  {
    route: 'GET /v1/erasures',
    call: (w) => w.client.erasures(),
    expect: only(['dpo'], 'FORBIDDEN'),
  },
  {
    route: 'POST /v1/erasures (scheduled) + POST /v1/erasures/:id/cancel',
    call: async (w) => {
      const filed = await m.dpo.client.scheduleErasure({ subject: SUBJECT }, 3600);
      return w.client.cancelErasure(filed.requestId);
    },
    expect: only(['dpo'], 'FORBIDDEN'),
  },
  {
    route: 'GET /v1/erasures/:id/sweep',
    call: async (w) => {
      // A subject of its own, with one record, erased for each caller.
      const subject = randomBytes(32).toString('hex');
      await m.owner.client.upload(bytes(1000, 9), {
        subject,
        readers: [],
        purpose: 'treatment',
        expiresAt: Date.now() + DAY,
      });
      return w.client.sweep((await m.dpo.client.erase({ subject })).requestId);
    },
    expect: only(['dpo'], 'FORBIDDEN'),
  },
  {
    route: 'DELETE /v1/members/:id',
    call: async (w) => {
      const throwaway = await m.admin.client.addMember({
        name: `t${Math.random().toString(16).slice(2, 10)}`,
        role: 'reader',
        ...memberPublic(generateMemberKeys()),
      });
      return w.client.removeMember(throwaway.member.id);
    },
    expect: only(['admin'], 'FORBIDDEN'),
  },
];

describe('authorisation matrix', () => {
  for (const { route, call, expect: expected } of ROUTES) {
    it(route, async () => {
      const actual: Record<string, string> = {};
      for (const actor of ACTORS) actual[actor] = await outcome(() => call(m[actor]));
      expect(actual).toEqual(expected);
    });
  }

  it('the denied calls changed nothing: the record still has exactly its live grantees', async () => {
    const view = await m.owner.client.record(record);
    expect(view.grants?.map((g) => g.reader).sort()).toEqual([m.owner.id, m.granted.id].sort());
  });

  it('a removed member is no longer a member at all', async () => {
    const gone = await node.addMember('leaver', 'reader');
    await m.owner.client.grant(record, gone.id, { purpose: 'treatment', expiresAt: Date.now() + DAY });
    await m.admin.client.removeMember(gone.id);
    expect(await outcome(() => gone.client.fetch(record, { path: join(out, 'leaver.bin') }))).toBe('AUTH_INVALID');
    expect(await outcome(() => m.admin.client.removeMember(m.admin.id))).toBe('FORBIDDEN'); // the last admin stays
  });

  it("a removed member's name can be enrolled again, as a new member; its key never", async () => {
    const first = await node.addMember('rejoiner', 'reader');
    await m.admin.client.removeMember(first.id);
    const keys = generateMemberKeys();
    const again = await m.admin.client.addMember({ name: 'rejoiner', role: 'reader', ...memberPublic(keys) });
    expect(again.member.id).not.toBe(first.id);
    const members = await m.admin.client.members();
    expect(members.find((x) => x.id === again.member.id)).toMatchObject({ name: 'rejoiner', removedAt: null });
    const old = members.find((x) => x.id === first.id);
    expect(old?.name).toMatch(/^rejoiner~removed-\d+$/);
    expect(old?.removedAt).not.toBeNull();
    // The new member reads what it is granted; the old key stays out.
    await m.owner.client.grant(record, again.member.id, { purpose: 'treatment', expiresAt: Date.now() + DAY });
    const reader = new VaultClient(node.url, keys);
    expect((await reader.fetch(record, { path: join(out, 'rejoiner.bin') })).bytes).toBeGreaterThan(0);
    expect(await outcome(() => first.client.fetch(record, { path: join(out, 'old.bin') }))).toBe('AUTH_INVALID');
    // A live name, and a key enrolled before (even removed), are refused.
    const dup = { name: 'rejoiner', role: 'reader' as const, ...memberPublic(generateMemberKeys()) };
    expect(await outcome(() => m.admin.client.addMember(dup))).toBe('MEMBER_EXISTS');
    const oldKey = { name: 'someone-else', role: 'reader' as const, ...memberPublic(first.keys) };
    expect(await outcome(() => m.admin.client.addMember(oldKey))).toBe('MEMBER_EXISTS');
  });

  it('a key that was never added is refused', async () => {
    const stranger = new VaultClient(node.url, generateMemberKeys());
    expect(await outcome(() => stranger.members())).toBe('AUTH_INVALID');
  });
});
