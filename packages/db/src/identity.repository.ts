import type { Role } from '@countersign/domain';
import { anyOf } from './any-of.ts';
import type { Executor } from './database.ts';

/** Orgs, principals and API keys. */
export async function insertOrg(ex: Executor, name: string): Promise<{ id: string; name: string }> {
  return ex.insertInto('orgs').values({ name }).returning(['id', 'name']).executeTakeFirstOrThrow();
}

export async function findOrgByName(ex: Executor, name: string) {
  return ex.selectFrom('orgs').selectAll().where('name', '=', name).executeTakeFirst();
}

export interface NewPrincipal {
  orgId: string;
  name: string;
  email: string | null;
  role: Role;
  kind: 'user' | 'service';
}

export async function insertPrincipal(ex: Executor, p: NewPrincipal) {
  return ex
    .insertInto('principals')
    .values({ org_id: p.orgId, name: p.name, email: p.email, role: p.role, kind: p.kind })
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function findPrincipal(ex: Executor, orgId: string, id: string) {
  return ex.selectFrom('principals').selectAll().where('org_id', '=', orgId).where('id', '=', id).executeTakeFirst();
}

export async function findPrincipals(ex: Executor, orgId: string, ids: readonly string[]) {
  if (ids.length === 0) return [];
  return ex.selectFrom('principals').selectAll().where('org_id', '=', orgId).where('id', '=', anyOf(ids)).execute();
}

export async function listPrincipals(ex: Executor, orgId: string) {
  return ex
    .selectFrom('principals')
    .selectAll()
    .where('org_id', '=', orgId)
    .orderBy('created_at')
    .orderBy('id')
    .execute();
}

/**
 * Who may decide a request for this profile, as assertMayDecide rules: every
 * enabled admin of the org, and the enabled operators listed on the profile.
 */
export async function findEligibleApprovers(ex: Executor, orgId: string, profileId: string) {
  return ex
    .selectFrom('principals')
    .selectAll()
    .where('org_id', '=', orgId)
    .where('disabled_at', 'is', null)
    .where((eb) =>
      eb.or([
        eb('role', '=', 'admin'),
        eb.and([
          eb('role', '=', 'operator'),
          eb('id', 'in', eb.selectFrom('profile_approvers').select('principal_id').where('profile_id', '=', profileId)),
        ]),
      ]),
    )
    .execute();
}

export async function insertApiKey(
  ex: Executor,
  k: {
    id: string;
    orgId: string;
    principalId: string;
    name: string | null;
    secretHash: Buffer;
    expiresAt: Date | null;
  },
) {
  return ex
    .insertInto('api_keys')
    .values({
      id: k.id,
      org_id: k.orgId,
      principal_id: k.principalId,
      name: k.name,
      secret_hash: k.secretHash,
      expires_at: k.expiresAt,
    })
    .returning(['id', 'principal_id', 'name', 'created_at', 'expires_at'])
    .executeTakeFirstOrThrow();
}

/** Everything authentication needs about a key, in one indexed lookup. */
export async function findApiKeyForAuth(ex: Executor, keyId: string) {
  return ex
    .selectFrom('api_keys as k')
    .innerJoin('principals as p', 'p.id', 'k.principal_id')
    .select([
      'k.id as key_id',
      'k.secret_hash',
      'k.expires_at',
      'k.revoked_at',
      'p.id as principal_id',
      'p.org_id',
      'p.role',
      'p.kind',
      'p.name',
      'p.disabled_at',
    ])
    .where('k.id', '=', keyId)
    .executeTakeFirst();
}

export async function revokeApiKey(ex: Executor, orgId: string, keyId: string) {
  return ex
    .updateTable('api_keys')
    .set({ revoked_at: new Date() })
    .where('org_id', '=', orgId)
    .where('id', '=', keyId)
    .where('revoked_at', 'is', null)
    .returning(['id', 'principal_id'])
    .executeTakeFirst();
}

export async function findApiKey(ex: Executor, orgId: string, keyId: string) {
  return ex.selectFrom('api_keys').selectAll().where('org_id', '=', orgId).where('id', '=', keyId).executeTakeFirst();
}

/** For the intake queue, whose payload names a principal but not its org. */
export async function findPrincipalById(ex: Executor, id: string) {
  return ex.selectFrom('principals').selectAll().where('id', '=', id).executeTakeFirst();
}
