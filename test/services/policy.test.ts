/**
 * The policy table on its own (services/vault/policy.ts): the HTTP layer
 * never hands it a removed member (authentication finds active keys only),
 * so the rule that a removed member may do nothing is checked here, where a
 * stale row can be passed, for every action and role.
 */
import { describe, expect, it } from 'vitest';
import { ROLES } from '../../formats.ts';
import type { MemberRow, RecordRow } from '../../services/vault/metadata.ts';
import { ACTION_ROLES, type Action, authorize } from '../../services/vault/policy.ts';
import { codeOf } from '../helpers.ts';

const member = (role: MemberRow['role'], removedAt: number | null, more: Partial<MemberRow> = {}): MemberRow => ({
  id: 'a'.repeat(32),
  name: 'someone',
  role,
  signingKey: 'k',
  keyId: 'a'.repeat(32),
  recipient: 'r',
  node: null,
  addedAt: 1,
  removedAt,
  emergencyAccess: true, // break-glass given, so the role table alone decides below
  ...more,
});
const record = { id: 'b'.repeat(32), uploader: 'a'.repeat(32) } as RecordRow;
const ACTIONS = Object.keys(ACTION_ROLES) as Action[];

describe('authorize', () => {
  it('lets an active member do what its role allows (the baseline the next test removes)', () => {
    for (const action of ACTIONS) {
      for (const role of ACTION_ROLES[action]) {
        expect(
          codeOf(() => authorize(member(role, null), action)),
          `${role} ${action}`,
        ).toBe('no error');
      }
    }
  });

  it('refuses a removed member everything, whatever its role, even on its own record with a live grant', () => {
    for (const action of ACTIONS) {
      for (const role of ROLES) {
        const removed = member(role, 1_000);
        expect(
          codeOf(() => authorize(removed, action)),
          `${role} ${action}`,
        ).toBe('FORBIDDEN');
        expect(
          codeOf(() => authorize(removed, action, { record, liveGrant: true })),
          `${role} ${action}`,
        ).toBe('FORBIDDEN');
      }
    }
  });

  it('break-glass needs the capability, and is never for a member of another node', () => {
    for (const role of ACTION_ROLES.emergency) {
      expect(codeOf(() => authorize(member(role, null), 'emergency'))).toBe('no error');
      expect(codeOf(() => authorize(member(role, null, { emergencyAccess: false }), 'emergency'))).toBe('FORBIDDEN');
      expect(codeOf(() => authorize(member(role, null, { node: 'c'.repeat(32) }), 'emergency'))).toBe('FORBIDDEN');
    }
    expect(ACTION_ROLES.emergency).not.toContain('admin');
    expect(ACTION_ROLES.emergency).not.toContain('dpo');
  });

  it('refuses a role the table does not list for an action', () => {
    for (const action of ACTIONS) {
      for (const role of ROLES.filter((r) => !ACTION_ROLES[action].includes(r))) {
        expect(
          codeOf(() => authorize(member(role, null), action)),
          `${role} ${action}`,
        ).toBe('FORBIDDEN');
      }
    }
  });
});
