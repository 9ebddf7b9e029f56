import { describe, expect, it } from 'vitest';
import { type GateFields, principalWeakenings, profileWeakenings } from './configuration.ts';

const profile: GateFields = {
  environment: 'production',
  requires_approval: true,
  approvals_required: 2,
  allowed_domains: ['*.example.test'],
  validity_days: 90,
  allow_bypass: false,
  issuer: 'local',
  approvers: ['op1', 'op2'],
};

describe('profileWeakenings', () => {
  it('names each way a change weakens the gate', () => {
    const after: GateFields = {
      ...profile,
      requires_approval: false,
      approvals_required: 1,
      allowed_domains: ['*.example.test', '*.evil.test'],
      validity_days: 365,
      environment: 'staging',
      allow_bypass: true,
      issuer: 'other',
      approvers: ['op1', 'op2', 'op3'],
    };
    expect(profileWeakenings(profile, after)).toEqual([
      'requires_approval: true → false',
      'approvals_required: 2 → 1',
      'allow_bypass: false → true',
      'validity_days: 90 → 365',
      'allowed_domains adds *.evil.test',
      'environment: production → staging',
      'issuer: local → other',
      'approvers add op3',
    ]);
  });

  it('finds nothing in a change that only tightens or leaves the gate alone', () => {
    expect(
      profileWeakenings(profile, {
        ...profile,
        approvals_required: 3,
        validity_days: 30,
        allowed_domains: [],
        approvers: ['op1'],
      }),
    ).toEqual([]);
    expect(profileWeakenings(profile, profile)).toEqual([]);
  });

  it('counts every new profile', () => {
    expect(profileWeakenings(null, profile)).toHaveLength(1);
  });
});

describe('principalWeakenings', () => {
  it.each([
    [null, { role: 'operator', disabled: false }, true],
    [null, { role: 'admin', disabled: false }, true],
    [null, { role: 'requester', disabled: false }, false],
    [null, { role: 'auditor', disabled: false }, false],
    [{ role: 'requester', disabled: false }, { role: 'operator', disabled: false }, true],
    [{ role: 'operator', disabled: false }, { role: 'admin', disabled: false }, true],
    [{ role: 'operator', disabled: false }, { role: 'requester', disabled: false }, false],
    [{ role: 'operator', disabled: false }, { role: 'operator', disabled: true }, false],
    [{ role: 'operator', disabled: true }, { role: 'operator', disabled: false }, true],
    [{ role: 'admin', disabled: false }, { role: 'admin', disabled: true }, true],
    [{ role: 'admin', disabled: false }, { role: 'operator', disabled: false }, true],
    [{ role: 'admin', disabled: true }, { role: 'admin', disabled: true }, false],
  ] as const)('%o → %o weakens: %s', (before, after, weakens) => {
    expect(principalWeakenings(before, after).length > 0).toBe(weakens);
  });
});
