import { readFile, writeFile } from 'node:fs/promises';
import { type Db, identity, type ProfileFields } from '@countersign/db';
import type { Caller, Principal, Role } from '@countersign/domain';
import {
  addInstallationAdmin,
  bootstrapOrg,
  createEnrollmentKey,
  createPrincipal,
  type IssuedKey,
  mintOwnApiKey,
  saveProfile,
} from '@countersign/workflow';

/**
 * The demo org of the local stack: an admin, two operators who approve the
 * production profile, a requester and an auditor, with one gated and one
 * ungated profile. Keys are shown once, so they are kept in a file the user
 * can read (and that a restart of the stack reuses).
 */
export interface DemoPrincipal {
  id: string;
  name: string;
  role: Role;
  key: string;
}

export interface DemoOrg {
  org_id: string;
  org: string;
  domain: string;
  principals: Record<'admin' | 'alice' | 'bob' | 'carol' | 'dave', DemoPrincipal> & {
    /** The second admin, added by the installation: present when the demo is two-person ready. */
    erin?: DemoPrincipal;
  };
  /** Two independent admins: changes that could weaken the gate need the other one's approval. */
  two_person_ready: boolean;
  profiles: { production: string; development: string; staging: string };
}

export const DEMO_DOMAIN = 'demo.example';

const profile = (o: Partial<ProfileFields>): ProfileFields => ({
  name: 'production-web',
  environment: 'production',
  requires_approval: true,
  approvals_required: 1,
  allowed_domains: [DEMO_DOMAIN, `*.${DEMO_DOMAIN}`],
  issuer: 'local',
  validity_days: 90,
  approval_timeout_seconds: null,
  escalation_after_seconds: null,
  renew_before_days: 30,
  escalation_contacts: [],
  allow_bypass: false,
  ...o,
});

export interface DemoOptions {
  /**
   * Adds erin, a second admin made by the installation (not by admin), once the
   * rest is seeded: the org is then two-person ready, as a production org
   * should be. The local stack's demo has her; most tests seed without.
   */
  readonly secondAdmin?: boolean;
}

export async function seedDemo(db: Db, keysFile: string, opts: DemoOptions = {}): Promise<DemoOrg> {
  const existing = await identity.findOrgByName(db, 'demo');
  if (existing) {
    let saved: DemoOrg;
    try {
      saved = JSON.parse(await readFile(keysFile, 'utf8')) as DemoOrg;
    } catch {
      throw new Error(`the demo org exists but ${keysFile} is missing; remove the data directory to start over`);
    }
    if (saved.two_person_ready === undefined) {
      // Seeded before principals held their own keys: those keys were minted by the admin, and cannot approve now.
      throw new Error(
        `the demo org in ${keysFile} was seeded by an older Countersign whose keys cannot approve any more; remove the data directory to start over`,
      );
    }
    return saved;
  }
  const boot = await bootstrapOrg(db, 'demo', [{ name: 'admin', email: `admin@${DEMO_DOMAIN}` }]);
  const first = boot.admins[0];
  if (!first) throw new Error('bootstrap made no admin');
  // Each demo person mints its own key with the enrollment key it was given, as a newcomer would
  // with 'countersign enroll': only an own key may approve.
  const enroll = async (p: Principal, enrollment: IssuedKey): Promise<DemoPrincipal> => {
    const asEnrolled: Caller = {
      ...p,
      credential: { kind: 'api_key', id: enrollment.id, own: false, createdBy: enrollment.created_by },
    };
    const own = await mintOwnApiKey(db, asEnrolled, { name: 'demo' });
    return { id: p.id, name: p.name, role: p.role, key: own.key };
  };
  const adminPrincipal: Principal = {
    id: first.admin.id,
    orgId: boot.org.id,
    role: 'admin',
    kind: 'user',
    name: 'admin',
  };
  const admin = await enroll(adminPrincipal, first.key);
  const make = async (name: string, role: Role): Promise<DemoPrincipal> => {
    const p = await createPrincipal(db, adminPrincipal, { name, email: `${name}@${DEMO_DOMAIN}`, role });
    const key = await createEnrollmentKey(db, { id: admin.id, type: 'user' }, boot.org.id, p.id, {
      name: 'enrollment',
    });
    return enroll({ id: p.id, orgId: boot.org.id, role, kind: 'user', name }, key);
  };
  const alice = await make('alice', 'operator');
  const bob = await make('bob', 'operator');
  const carol = await make('carol', 'requester');
  const dave = await make('dave', 'auditor');
  const production = await saveProfile(db, adminPrincipal, null, profile({}), [alice.id, bob.id]);
  const development = await saveProfile(
    db,
    adminPrincipal,
    null,
    profile({ name: 'development-web', environment: 'development', requires_approval: false }),
    [],
  );
  // Gated, but COUNTERSIGN_APPROVAL_BYPASS (`scripts/up.sh --bypass`) may approve it: a non-production permission.
  const staging = await saveProfile(
    db,
    adminPrincipal,
    null,
    profile({ name: 'staging-web', environment: 'staging', allow_bypass: true }),
    [alice.id, bob.id],
  );
  let erin: DemoPrincipal | undefined;
  if (opts.secondAdmin) {
    const added = await addInstallationAdmin(db, 'demo', { name: 'erin', email: `erin@${DEMO_DOMAIN}` });
    erin = await enroll(
      { id: added.admin.id, orgId: boot.org.id, role: 'admin', kind: 'user', name: 'erin' },
      added.key,
    );
  }
  const demo: DemoOrg = {
    org_id: boot.org.id,
    org: 'demo',
    domain: DEMO_DOMAIN,
    principals: { admin, alice, bob, carol, dave, ...(erin ? { erin } : {}) },
    two_person_ready: erin !== undefined,
    profiles: { production: production.id, development: development.id, staging: staging.id },
  };
  await writeFile(keysFile, `${JSON.stringify(demo, null, 2)}\n`, { mode: 0o600 });
  return demo;
}
