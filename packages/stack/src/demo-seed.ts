import { readFile, writeFile } from 'node:fs/promises';
import { type Db, identity, type ProfileFields } from '@countersign/db';
import type { Role } from '@countersign/domain';
import { bootstrapOrg, createApiKey, createPrincipal, saveProfile } from '@countersign/workflow';

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
  principals: Record<'admin' | 'alice' | 'bob' | 'carol' | 'dave', DemoPrincipal>;
  profiles: { production: string; development: string };
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
  ...o,
});

export async function seedDemo(db: Db, keysFile: string): Promise<DemoOrg> {
  const existing = await identity.findOrgByName(db, 'demo');
  if (existing) {
    try {
      return JSON.parse(await readFile(keysFile, 'utf8')) as DemoOrg;
    } catch {
      throw new Error(`the demo org exists but ${keysFile} is missing; remove the data directory to start over`);
    }
  }
  const boot = await bootstrapOrg(db, 'demo', 'admin', `admin@${DEMO_DOMAIN}`);
  const admin = { id: boot.admin.id, orgId: boot.org.id, role: 'admin' as const, kind: 'user' as const, name: 'admin' };
  const make = async (name: string, role: Role): Promise<DemoPrincipal> => {
    const p = await createPrincipal(db, admin, { name, email: `${name}@${DEMO_DOMAIN}`, role });
    const key = await createApiKey(db, { id: admin.id, type: 'user' }, admin.orgId, p.id, { name: 'demo' });
    return { id: p.id, name, role, key: key.key };
  };
  const alice = await make('alice', 'operator');
  const bob = await make('bob', 'operator');
  const carol = await make('carol', 'requester');
  const dave = await make('dave', 'auditor');
  const production = await saveProfile(db, admin, null, profile({}), [alice.id, bob.id]);
  const development = await saveProfile(
    db,
    admin,
    null,
    profile({ name: 'development-web', environment: 'development', requires_approval: false }),
    [],
  );
  const demo: DemoOrg = {
    org_id: boot.org.id,
    org: 'demo',
    domain: DEMO_DOMAIN,
    principals: { admin: { id: admin.id, name: 'admin', role: 'admin', key: boot.key.key }, alice, bob, carol, dave },
    profiles: { production: production.id, development: development.id },
  };
  await writeFile(keysFile, `${JSON.stringify(demo, null, 2)}\n`, { mode: 0o600 });
  return demo;
}
