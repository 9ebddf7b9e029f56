import { generateKeyAndCsr } from '@countersign/ca/csr-generate';
import type { Db, ProfileFields, ProfileWithApprovers } from '@countersign/db';
import type { Actor, Caller, Principal, Role } from '@countersign/domain';
import { bootstrapOrg, createEnrollmentKey, createPrincipal, mintOwnApiKey, saveProfile } from '@countersign/workflow';

/**
 * A demo org as the tests (and the local stack) use it: an admin, two
 * operators who approve the gated profile, a requester, an auditor, and two
 * profiles, one gated and one not. Every principal holds its own API key (it
 * minted it with the enrollment key an admin or the bootstrap gave it, as a
 * person would), and the enrollment key is kept for tests of that rule.
 */
export interface SeededPrincipal extends Caller {
  /** The principal's own key: it may vote and decide with it. */
  readonly key: string;
  readonly keyId: string;
  /** The enrollment key it was given (already used to mint `key`); reads and requests, never decides. */
  readonly enrollmentKey: string;
  readonly enrollmentKeyId: string;
}

export interface SeededOrg {
  readonly orgId: string;
  readonly admin: SeededPrincipal;
  readonly operator1: SeededPrincipal;
  readonly operator2: SeededPrincipal;
  readonly requester: SeededPrincipal;
  readonly auditor: SeededPrincipal;
  readonly gated: ProfileWithApprovers;
  readonly open: ProfileWithApprovers;
}

/**
 * Turns a principal and its enrollment key into a seeded principal holding its
 * own key: the principal mints it with the enrollment key, as `countersign
 * enroll` does.
 */
export async function enrollPrincipal(
  db: Db,
  p: Principal,
  enrollment: { id: string; key: string; createdBy: string },
): Promise<SeededPrincipal> {
  const asEnrolled: Caller = {
    ...p,
    credential: { kind: 'api_key', id: enrollment.id, own: false, createdBy: enrollment.createdBy },
  };
  const own = await mintOwnApiKey(db, asEnrolled, { name: 'own' });
  return {
    ...p,
    credential: { kind: 'api_key', id: own.id, own: true, createdBy: p.id },
    key: own.key,
    keyId: own.id,
    enrollmentKey: enrollment.key,
    enrollmentKeyId: enrollment.id,
  };
}

/** Creates a principal as `admin` and enrolls it (enrollment key by the admin, own key by the principal). */
export async function seedPrincipal(
  db: Db,
  admin: Principal,
  name: string,
  role: Role,
  kind: Principal['kind'] = 'user',
): Promise<SeededPrincipal> {
  const created = await createPrincipal(db, admin, { name, email: `${name}@${DEMO_DOMAIN}`, role, kind });
  const actor: Actor = { id: admin.id, type: 'user' };
  const enrollment = await createEnrollmentKey(db, actor, admin.orgId, created.id, { name: 'enrollment' });
  return enrollPrincipal(
    db,
    { id: created.id, orgId: admin.orgId, role, kind, name },
    {
      id: enrollment.id,
      key: enrollment.key,
      createdBy: admin.id,
    },
  );
}

export const DEMO_DOMAIN = 'example.test';

export function profileFields(overrides: Partial<ProfileFields> = {}): ProfileFields {
  return {
    name: 'production-web',
    environment: 'production',
    requires_approval: true,
    approvals_required: 1,
    allowed_domains: [`*.${DEMO_DOMAIN}`, DEMO_DOMAIN],
    issuer: 'local',
    validity_days: 90,
    approval_timeout_seconds: null,
    escalation_after_seconds: null,
    renew_before_days: 30,
    escalation_contacts: [],
    allow_bypass: false,
    ...overrides,
  };
}

export async function seedOrg(db: Db, name = `org-${Math.random().toString(36).slice(2, 10)}`): Promise<SeededOrg> {
  const boot = await bootstrapOrg(db, name, [{ name: 'admin', email: `admin@${DEMO_DOMAIN}` }]);
  const first = boot.admins[0];
  if (!first) throw new Error('bootstrap made no admin');
  const admin = await enrollPrincipal(
    db,
    { id: first.admin.id, orgId: boot.org.id, role: 'admin', kind: 'user', name: 'admin' },
    { id: first.key.id, key: first.key.key, createdBy: first.key.created_by },
  );
  const operator1 = await seedPrincipal(db, admin, 'operator1', 'operator');
  const operator2 = await seedPrincipal(db, admin, 'operator2', 'operator');
  const requester = await seedPrincipal(db, admin, 'requester', 'requester');
  const auditor = await seedPrincipal(db, admin, 'auditor', 'auditor');
  const gated = await saveProfile(db, admin, null, profileFields(), [operator1.id, operator2.id]);
  const open = await saveProfile(
    db,
    admin,
    null,
    profileFields({ name: 'development-web', environment: 'development', requires_approval: false }),
    [],
  );
  return { orgId: admin.orgId, admin, operator1, operator2, requester, auditor, gated, open };
}

export async function csrFor(commonName: string, sans: string[] = []) {
  return generateKeyAndCsr({ commonName, dnsNames: [commonName, ...sans] });
}
