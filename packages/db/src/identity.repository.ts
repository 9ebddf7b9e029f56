import type { Role } from '@countersign/domain';
import { sql } from 'kysely';
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
  /** The creating principal's id, or a system actor. */
  createdBy: string;
  /** Chosen up front when a configuration request names the principal before it exists. */
  id?: string | undefined;
}

export async function insertPrincipal(ex: Executor, p: NewPrincipal) {
  return ex
    .insertInto('principals')
    .values({
      ...(p.id ? { id: p.id } : {}),
      org_id: p.orgId,
      name: p.name,
      email: p.email,
      role: p.role,
      kind: p.kind,
      created_by: p.createdBy,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** Changes a principal's role, email or enabled state; provenance and identity never change (0015). */
export async function updatePrincipal(
  ex: Executor,
  orgId: string,
  id: string,
  set: { role?: Role; email?: string | null; disabled?: boolean },
) {
  return ex
    .updateTable('principals')
    .set({
      ...(set.role !== undefined ? { role: set.role } : {}),
      ...(set.email !== undefined ? { email: set.email } : {}),
      ...(set.disabled !== undefined ? { disabled_at: set.disabled ? sql<Date>`now()` : null } : {}),
    })
    .where('org_id', '=', orgId)
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirst();
}

/**
 * Is the decider related to the requester by creation (one created the
 * other, directly or through principals it created)? Such a principal never
 * counts as a second person (SPEC §1.6); the vote and decision guards ask the
 * same function.
 */
export async function relatedByCreation(ex: Executor, a: string, b: string): Promise<boolean> {
  const { rows } = await sql<{ related: boolean }>`SELECT principals_related(${a}, ${b}) AS related`.execute(ex);
  return rows[0]?.related === true;
}

/**
 * An org is two-person ready when it has two enabled admins neither of whom
 * created the other; until then one admin can change its configuration alone.
 */
export async function twoPersonReady(ex: Executor, orgId: string): Promise<boolean> {
  const { rows } = await sql<{ ready: boolean }>`SELECT org_two_person_ready(${orgId}::uuid) AS ready`.execute(ex);
  return rows[0]?.ready === true;
}

/** Every org with whether it is two-person ready and its enabled admins, for the gauge and the boot warning. */
export async function orgReadiness(ex: Executor) {
  const { rows } = await sql<{ org_id: string; name: string; ready: boolean; admins: number }>`
    SELECT o.id AS org_id, o.name, org_two_person_ready(o.id) AS ready,
           (SELECT count(*) FROM principals p WHERE p.org_id = o.id AND p.role = 'admin' AND p.disabled_at IS NULL)::int AS admins
      FROM orgs o ORDER BY o.name`.execute(ex);
  return rows;
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
 * enabled admin of the org, and the enabled operators listed on the profile,
 * but none related by creation to the requester (SPEC §1.6).
 */
export async function findEligibleApprovers(ex: Executor, orgId: string, profileId: string, requestedBy: string) {
  return ex
    .selectFrom('principals')
    .selectAll()
    .where('org_id', '=', orgId)
    .where('disabled_at', 'is', null)
    .where(sql<boolean>`NOT principals_related(principals.id::text, ${requestedBy})`)
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

/** The org's enabled admins: who decides configuration requests (and is mailed about them). */
export async function findEnabledAdmins(ex: Executor, orgId: string) {
  return ex
    .selectFrom('principals')
    .selectAll()
    .where('org_id', '=', orgId)
    .where('role', '=', 'admin')
    .where('disabled_at', 'is', null)
    .orderBy('id')
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
    /** The principal itself for an own key; whoever mints it for the principal otherwise. */
    createdBy: string;
    /** For an own key: the credential of the same principal it is minted with. */
    enrolledVia: { kind: 'api_key' | 'client_certificate'; id: string } | null;
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
      created_by: k.createdBy,
      enrolled_via_kind: k.enrolledVia?.kind ?? null,
      enrolled_via: k.enrolledVia?.id ?? null,
    })
    .returning(['id', 'principal_id', 'name', 'created_at', 'expires_at', 'created_by'])
    .executeTakeFirstOrThrow();
}

/**
 * Marks an enrollment credential used: it mints its principal's own key once.
 * Returns false when it was already used (or is not an unused enrollment
 * credential of that principal); the key guard refuses a second own key too.
 */
export async function markEnrollmentUsed(
  ex: Executor,
  credential: { kind: 'api_key' | 'client_certificate'; id: string },
  principalId: string,
): Promise<boolean> {
  const table = credential.kind === 'api_key' ? sql.table('api_keys') : sql.table('client_certificates');
  const { rows } = await sql<{ id: string }>`
    UPDATE ${table} SET enrollment_used_at = now()
     WHERE id = ${credential.id} AND principal_id = ${principalId} AND enrollment_used_at IS NULL
       AND created_by <> ${principalId}
    RETURNING id`.execute(ex);
  return rows.length === 1;
}

/** The keys of one principal, newest first (never their secrets). */
export async function listApiKeys(ex: Executor, orgId: string, principalId: string) {
  return ex
    .selectFrom('api_keys')
    .select([
      'id',
      'principal_id',
      'name',
      'created_by',
      'created_at',
      'expires_at',
      'revoked_at',
      'enrolled_via',
      'enrollment_used_at',
    ])
    .where('org_id', '=', orgId)
    .where('principal_id', '=', principalId)
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .execute();
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
      'k.created_by',
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
