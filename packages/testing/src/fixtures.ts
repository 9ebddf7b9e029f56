import { generateKeyAndCsr } from '@countersign/ca/csr-generate';
import type { Db, ProfileFields, ProfileWithApprovers } from '@countersign/db';
import type { Principal, Role } from '@countersign/domain';
import { bootstrapOrg, createApiKey, createPrincipal, saveProfile } from '@countersign/workflow';

/**
 * A demo org as the tests (and the local stack) use it: an admin, two
 * operators who approve the gated profile, a requester, an auditor, and two
 * profiles, one gated and one not. Every principal has an API key.
 */
export interface SeededPrincipal extends Principal {
  readonly key: string;
  readonly keyId: string;
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
    ...overrides,
  };
}

export async function seedOrg(db: Db, name = `org-${Math.random().toString(36).slice(2, 10)}`): Promise<SeededOrg> {
  const boot = await bootstrapOrg(db, name, 'admin', `admin@${DEMO_DOMAIN}`);
  const admin: SeededPrincipal = {
    id: boot.admin.id,
    orgId: boot.org.id,
    role: 'admin',
    kind: 'user',
    name: 'admin',
    key: boot.key.key,
    keyId: boot.key.id,
  };
  const make = async (pname: string, role: Role): Promise<SeededPrincipal> => {
    const p = await createPrincipal(db, admin, { name: pname, email: `${pname}@${DEMO_DOMAIN}`, role });
    const key = await createApiKey(db, { id: admin.id, type: 'user' }, admin.orgId, p.id, { name: 'default' });
    return { id: p.id, orgId: admin.orgId, role, kind: 'user', name: pname, key: key.key, keyId: key.id };
  };
  const operator1 = await make('operator1', 'operator');
  const operator2 = await make('operator2', 'operator');
  const requester = await make('requester', 'requester');
  const auditor = await make('auditor', 'auditor');
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
