import {
  appendAudit,
  type Db,
  identity,
  type ProfileFields,
  type ProfileWithApprovers,
  pgCode,
  profiles,
  UNIQUE_VIOLATION,
} from '@countersign/db';
import {
  type Actor,
  actorOf,
  DomainError,
  notFound,
  type Principal,
  type PrincipalKind,
  type Role,
  SYSTEM_ACTORS,
} from '@countersign/domain';
import { generateApiKey } from './api-keys.ts';

/** Org configuration: principals, keys and profiles, each change audited in its transaction. */
export interface PrincipalInput {
  name: string;
  email?: string | null | undefined;
  role: Role;
  kind?: PrincipalKind | undefined;
}

export interface IssuedKey {
  id: string;
  principal_id: string;
  /** Shown once; only its hash is stored. */
  key: string;
  name: string | null;
  expires_at: string | null;
  created_at: string;
}

const conflictOnDuplicate = (err: unknown, what: string): never => {
  if (pgCode(err) === UNIQUE_VIOLATION) throw new DomainError('conflict', `${what} already exists`);
  throw err;
};

export async function createPrincipal(db: Db, admin: Principal, input: PrincipalInput) {
  return db.transaction().execute(async (tx) => {
    const p = await identity
      .insertPrincipal(tx, {
        orgId: admin.orgId,
        name: input.name,
        email: input.email ?? null,
        role: input.role,
        kind: input.kind ?? 'user',
      })
      .catch((err: unknown) => conflictOnDuplicate(err, `a principal named "${input.name}"`));
    await appendAudit(tx, {
      orgId: admin.orgId,
      actor: actorOf(admin),
      action: 'principal_created',
      resourceType: 'principal',
      resourceId: p.id,
      details: { name: p.name, role: p.role, kind: p.kind, email: p.email },
    });
    return p;
  });
}

export async function createApiKey(
  db: Db,
  actor: Actor,
  orgId: string,
  principalId: string,
  opts: { name?: string | null | undefined; expiresAt?: Date | null | undefined },
): Promise<IssuedKey> {
  return db.transaction().execute(async (tx) => {
    const owner = await identity.findPrincipal(tx, orgId, principalId);
    if (!owner) throw notFound('principal');
    const generated = generateApiKey();
    const row = await identity.insertApiKey(tx, {
      id: generated.id,
      orgId,
      principalId,
      name: opts.name ?? null,
      secretHash: generated.secretHash,
      expiresAt: opts.expiresAt ?? null,
    });
    await appendAudit(tx, {
      orgId,
      actor,
      action: 'api_key_created',
      resourceType: 'api_key',
      resourceId: row.id,
      details: { principal_id: principalId, name: row.name, expires_at: row.expires_at?.toISOString() ?? null },
    });
    return {
      id: row.id,
      principal_id: row.principal_id,
      key: generated.token,
      name: row.name,
      expires_at: row.expires_at?.toISOString() ?? null,
      created_at: row.created_at.toISOString(),
    };
  });
}

export async function revokeApiKey(db: Db, admin: Principal, keyId: string) {
  return db.transaction().execute(async (tx) => {
    const row = await identity.revokeApiKey(tx, admin.orgId, keyId);
    if (!row) {
      const existing = await identity.findApiKey(tx, admin.orgId, keyId);
      if (!existing) throw notFound('API key');
      return existing; // already revoked: revoking again is a no-op
    }
    await appendAudit(tx, {
      orgId: admin.orgId,
      actor: actorOf(admin),
      action: 'api_key_revoked',
      resourceType: 'api_key',
      resourceId: keyId,
      details: { principal_id: row.principal_id },
    });
    return row;
  });
}

async function checkApprovers(db: Db, orgId: string, ids: readonly string[]): Promise<void> {
  const found = await identity.findPrincipals(db, orgId, [...new Set(ids)]);
  for (const id of ids) {
    const p = found.find((f) => f.id === id);
    if (!p) throw new DomainError('validation_failed', `approver ${id} is not a principal of this org`);
    if (p.role !== 'operator' && p.role !== 'admin') {
      throw new DomainError('validation_failed', `approver ${p.name} must have role operator or admin (has ${p.role})`);
    }
  }
}

export async function saveProfile(
  db: Db,
  admin: Principal,
  id: string | null,
  fields: ProfileFields,
  approvers: readonly string[],
): Promise<ProfileWithApprovers> {
  const unique = [...new Set(approvers)];
  await checkApprovers(db, admin.orgId, unique);
  return db.transaction().execute(async (tx) => {
    const saved = id
      ? await profiles.updateProfile(tx, admin.orgId, id, fields, unique)
      : await profiles
          .insertProfile(tx, admin.orgId, fields, unique)
          .catch((err: unknown) => conflictOnDuplicate(err, `a profile named "${fields.name}"`));
    if (!saved) throw notFound('profile');
    await appendAudit(tx, {
      orgId: admin.orgId,
      actor: actorOf(admin),
      action: id ? 'profile_updated' : 'profile_created',
      resourceType: 'profile',
      resourceId: saved.id,
      details: { ...fields, approvers: unique },
    });
    return saved;
  });
}

/** Creates an org with its first admin and that admin's first key (the bootstrap command). */
export async function bootstrapOrg(db: Db, orgName: string, adminName: string, adminEmail: string | null) {
  const { org, admin } = await db.transaction().execute(async (tx) => {
    const org = await identity
      .insertOrg(tx, orgName)
      .catch((err: unknown) => conflictOnDuplicate(err, `an org named "${orgName}"`));
    await appendAudit(tx, {
      orgId: org.id,
      actor: SYSTEM_ACTORS.bootstrap,
      action: 'org_created',
      resourceType: 'org',
      resourceId: org.id,
      details: { name: org.name },
    });
    const admin = await identity.insertPrincipal(tx, {
      orgId: org.id,
      name: adminName,
      email: adminEmail,
      role: 'admin',
      kind: 'user',
    });
    await appendAudit(tx, {
      orgId: org.id,
      actor: SYSTEM_ACTORS.bootstrap,
      action: 'principal_created',
      resourceType: 'principal',
      resourceId: admin.id,
      details: { name: admin.name, role: admin.role, kind: admin.kind, email: admin.email },
    });
    return { org, admin };
  });
  const key = await createApiKey(db, SYSTEM_ACTORS.bootstrap, org.id, admin.id, { name: 'bootstrap' });
  return { org, admin, key };
}
