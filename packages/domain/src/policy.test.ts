import { describe, expect, it } from 'vitest';
import type { Principal } from './actors.ts';
import { DomainError } from './errors.ts';
import { assertMayDecide, quorumReached } from './policy.ts';

const p = (id: string, role: Principal['role']): Principal => ({ id, orgId: 'o', role, kind: 'user', name: id });
const ctx = { requestedBy: 'req', profileApprovers: ['op-listed'] };

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
    ['the requester, even as admin', p('req', 'admin'), 'two_person_integrity'],
    ['an admin', p('adm', 'admin'), null],
    ['a listed operator', p('op-listed', 'operator'), null],
    ['an unlisted operator', p('op-other', 'operator'), 'forbidden'],
    ['a requester', p('someone', 'requester'), 'forbidden'],
    ['an auditor', p('aud', 'auditor'), 'forbidden'],
  ])('%s', (_name, principal, expected) => {
    expect(codeOf(() => assertMayDecide(principal, ctx))).toBe(expected);
  });

  it('names two-person integrity in the message', () => {
    expect(() => assertMayDecide(p('req', 'operator'), { ...ctx, profileApprovers: ['req'] })).toThrow(
      /two-person integrity/,
    );
  });
});

describe('quorumReached', () => {
  it('needs at least the required number of distinct votes', () => {
    expect(quorumReached(0, 1)).toBe(false);
    expect(quorumReached(1, 2)).toBe(false);
    expect(quorumReached(2, 2)).toBe(true);
  });
});
