import { type PrincipalGateFields, principalWeakenings, profileWeakenings } from '@countersign/domain';
import {
  createTestDatabase,
  enrollPrincipal,
  profileFields,
  type SeededOrg,
  type SeededPrincipal,
  seedOrg,
  type TestDatabase,
} from '@countersign/testing';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addInstallationAdmin } from './administration.ts';
import { approveConfigRequest, configurePrincipalUpdate, configureProfile } from './configuration.ts';

/**
 * The gate's two classifications of "could weaken the gate" agree: the
 * domain's (which turns a change into a configuration request and writes its
 * summary) and the database's gate triggers (which refuse the write without
 * an approved request). For each single change, in a two-person ready org, the
 * raw write as the services' role is refused exactly when the domain calls it
 * a weakening.
 */
let tdb: TestDatabase;
let org: SeededOrg;
let admin2: SeededPrincipal;
const settings = { approvalTimeoutMs: 3_600_000, escalationAfterMs: 600_000 };

beforeAll(async () => {
  tdb = await createTestDatabase();
  org = await seedOrg(tdb.handle.db);
  const name = (await tdb.superuser<{ name: string }>('SELECT name FROM orgs WHERE id = $1', [org.orgId])).rows[0]
    ?.name;
  const added = await addInstallationAdmin(tdb.handle.db, name ?? '', { name: 'admin2', email: null });
  admin2 = await enrollPrincipal(
    tdb.handle.db,
    { id: added.admin.id, orgId: org.orgId, role: 'admin', kind: 'user', name: 'admin2' },
    { id: added.key.id, key: added.key.key, createdBy: added.key.created_by },
  );
});
afterAll(async () => tdb?.drop());

/** Runs the write and rolls it back; says whether the database let it through. */
async function allowed(statement: ReturnType<typeof sql>): Promise<boolean> {
  try {
    await tdb.handle.db.transaction().execute(async (tx) => {
      await statement.execute(tx);
      throw new Error('rollback');
    });
  } catch (err) {
    if (err instanceof Error && err.message === 'rollback') return true;
    if (err instanceof Error && /configuration request approved by another admin/.test(err.message)) return false;
    throw err;
  }
  return true;
}

describe('profile changes', () => {
  const base = profileFields({ name: 'classified', environment: 'staging', approvals_required: 2, validity_days: 90 });
  const cases: [string, Partial<typeof base>, string][] = [
    ['ungated', { requires_approval: false }, 'requires_approval = false'],
    ['fewer approvals', { approvals_required: 1 }, 'approvals_required = 1'],
    ['more approvals', { approvals_required: 3 }, 'approvals_required = 3'],
    ['bypass allowed', { allow_bypass: true }, 'allow_bypass = true'],
    ['longer validity', { validity_days: 91 }, 'validity_days = 91'],
    ['shorter validity', { validity_days: 30 }, 'validity_days = 30'],
    [
      'a wider name',
      { allowed_domains: [...base.allowed_domains, '*.evil.test'] },
      `allowed_domains = allowed_domains || '{*.evil.test}'`,
    ],
    ['a narrower list', { allowed_domains: [base.allowed_domains[0] ?? ''] }, 'allowed_domains = allowed_domains[1:1]'],
    ['another environment', { environment: 'qa' }, `environment = 'qa'`],
    ['another issuer', { issuer: 'other' }, `issuer = 'other'`],
    ['a new name', { name: 'renamed' }, `name = 'renamed'`],
    ['escalation contacts', { escalation_contacts: ['x@example.test'] }, `escalation_contacts = '{x@example.test}'`],
    ['a longer approval timeout', { approval_timeout_seconds: 999_999 }, 'approval_timeout_seconds = 999999'],
  ];
  let profileId: string;
  beforeAll(async () => {
    // The org is two-person ready: a new profile comes through an approved request, as it must.
    const c = await configureProfile(tdb.handle.db, settings, org.admin, null, base, []);
    if (c.status !== 'pending') throw new Error('a new profile must wait for the other admin');
    const { applied } = await approveConfigRequest(tdb.handle.db, admin2, c.request.id, null);
    profileId = (applied as { id: string }).id;
  });

  it.each(
    cases,
  )('%s: the database refuses it exactly when the domain calls it a weakening', async (_n, change, set) => {
    const gate = (p: typeof base) => ({ ...p, approvers: [] as string[] });
    const weakens = profileWeakenings(gate(base), gate({ ...base, ...change })).length > 0;
    const ok = await allowed(sql.raw(`UPDATE profiles SET ${set} WHERE id = '${profileId}'`));
    expect(ok, `database ${ok ? 'allowed' : 'refused'} it; domain says weakening: ${weakens}`).toBe(!weakens);
  });

  it('adding an approver is refused without a request, removing one is not', async () => {
    expect(profileWeakenings({ ...gateOf(base), approvers: [] }, { ...gateOf(base), approvers: ['x'] })).not.toEqual(
      [],
    );
    expect(
      await allowed(
        sql`INSERT INTO profile_approvers (profile_id, org_id, principal_id) VALUES (${profileId}::uuid, ${org.orgId}::uuid, ${org.operator1.id}::uuid)`,
      ),
    ).toBe(false);
    expect(
      await allowed(
        sql`DELETE FROM profile_approvers WHERE profile_id = ${org.gated.id}::uuid AND principal_id = ${org.operator2.id}::uuid`,
      ),
    ).toBe(true);
  });
});

const gateOf = (p: ReturnType<typeof profileFields>) => ({ ...p, approvers: [] as string[] });

describe('principal changes', () => {
  const cases: [string, 'requester' | 'operator' | 'admin' | 'auditor', boolean, PrincipalGateFields][] = [
    ['a requester made operator', 'requester', false, { role: 'operator', disabled: false }],
    ['a requester made auditor', 'requester', false, { role: 'auditor', disabled: false }],
    ['an operator made requester', 'operator', false, { role: 'requester', disabled: false }],
    ['an operator made admin', 'operator', false, { role: 'admin', disabled: false }],
    ['an operator disabled', 'operator', false, { role: 'operator', disabled: true }],
    ['an operator enabled again', 'operator', true, { role: 'operator', disabled: false }],
    ['a requester enabled again', 'requester', true, { role: 'requester', disabled: false }],
    ['an admin made operator', 'admin', false, { role: 'operator', disabled: false }],
    ['an admin disabled', 'admin', false, { role: 'admin', disabled: true }],
  ];
  let n = 0;
  it.each(
    cases,
  )('%s: the database refuses it exactly when the domain calls it a weakening', async (_n, role, disabled, after) => {
    // Each case on a principal of its own, made as the org must now make it; then the change is tried raw.
    const name = `p${++n}`;
    const { configurePrincipal } = await import('./configuration.ts');
    const c = await configurePrincipal(tdb.handle.db, settings, org.admin, { name, role });
    // A requester or auditor is created at once; an operator or admin waits for the other admin.
    if (c.status === 'pending') await approveConfigRequest(tdb.handle.db, admin2, c.request.id, null);
    const p = { id: c.status === 'pending' ? c.request.target_id : c.result.id };
    expect(c.status).toBe(role === 'requester' || role === 'auditor' ? 'applied' : 'pending');
    if (disabled) {
      const c = await configurePrincipalUpdate(tdb.handle.db, settings, org.admin, p.id, { disabled: true });
      if (c.status === 'pending') await approveConfigRequest(tdb.handle.db, admin2, c.request.id, null);
    }
    const weakens = principalWeakenings({ role, disabled }, after).length > 0;
    const ok = await allowed(
      sql`UPDATE principals SET role = ${after.role}, disabled_at = ${after.disabled ? sql`now()` : null}
          WHERE id = ${p.id}::uuid`,
    );
    expect(ok, `database ${ok ? 'allowed' : 'refused'} it; domain says weakening: ${weakens}`).toBe(!weakens);
  });
});
