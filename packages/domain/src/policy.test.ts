import { describe, expect, it } from 'vitest';
import type { Caller, Principal } from './actors.ts';
import { DomainError } from './errors.ts';
import { assertMayDecide, isBypassEnvironment, quorumReached } from './policy.ts';

const p = (id: string, role: Principal['role'], own = true): Caller => ({
  id,
  orgId: 'o',
  role,
  kind: 'user',
  name: id,
  credential: { kind: 'api_key', id: `key-${id}`, own, createdBy: own ? id : 'an-admin' },
});
const ctx = { requestedBy: 'req', profileApprovers: ['op-listed'], relatedToRequester: false };

function codeOf(fn: () => void): string | null {
  try {
    fn();
    return null;
  } catch (err) {
    return err instanceof DomainError ? err.code : 'other';
  }
}

describe('assertMayDecide', () => {
  it.each([
    ['the requester, even as admin', p('req', 'admin'), ctx, 'two_person_integrity'],
    ['an admin', p('adm', 'admin'), ctx, null],
    ['a listed operator', p('op-listed', 'operator'), ctx, null],
    ['an unlisted operator', p('op-other', 'operator'), ctx, 'forbidden'],
    ['a requester', p('someone', 'requester'), ctx, 'forbidden'],
    ['an auditor', p('aud', 'auditor'), ctx, 'forbidden'],
    ['an admin with an enrollment key', p('adm', 'admin', false), ctx, 'enrollment_credential'],
    ['a listed operator with an enrollment key', p('op-listed', 'operator', false), ctx, 'enrollment_credential'],
    [
      'an admin related to the requester by creation',
      p('adm', 'admin'),
      { ...ctx, relatedToRequester: true },
      'two_person_integrity',
    ],
  ])('%s', (_name, caller, context, expected) => {
    expect(codeOf(() => assertMayDecide(caller, context))).toBe(expected);
  });

  it('names two-person integrity in the message, and the way to an own key for an enrollment credential', () => {
    expect(() => assertMayDecide(p('req', 'operator'), { ...ctx, profileApprovers: ['req'] })).toThrow(
      /two-person integrity/,
    );
    expect(() => assertMayDecide(p('adm', 'admin'), { ...ctx, relatedToRequester: true })).toThrow(
      /two-person integrity: one of you created the other/,
    );
    expect(() => assertMayDecide(p('adm', 'admin', false), ctx)).toThrow(/POST \/api\/v1\/me\/api-keys/);
  });
});

describe('isBypassEnvironment', () => {
  it('allows named non-production environments and treats every other name as production', () => {
    expect(isBypassEnvironment('development')).toBe(true);
    expect(isBypassEnvironment('staging')).toBe(true);
    for (const env of ['production', 'prod', 'live', 'Production', 'prd', 'eu-prod', '']) {
      expect(isBypassEnvironment(env)).toBe(false);
    }
  });
});

describe('quorumReached', () => {
  it('needs at least the required number of distinct votes', () => {
    expect(quorumReached(0, 1)).toBe(false);
    expect(quorumReached(1, 2)).toBe(false);
    expect(quorumReached(2, 2)).toBe(true);
  });
});
