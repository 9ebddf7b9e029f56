import type { Selectable } from 'kysely';
import type { Executor } from './database.ts';
import type { IntakeKeysTable } from './schema.ts';

/**
 * Registered public keys of the `renewal-requests` intake (migration 0018):
 * the `kid` of a signed message names one of these rows.
 */
export type IntakeKeyRow = Selectable<IntakeKeysTable>;

export interface NewIntakeKey {
  readonly orgId: string;
  readonly principalId: string;
  readonly alg: string;
  readonly publicKey: Buffer;
  readonly thumbprint: string;
  readonly name: string | null;
  readonly createdBy: string;
  /** Chosen up front when a configuration request names the key before it exists. */
  readonly id?: string | undefined;
}

export async function insertIntakeKey(ex: Executor, k: NewIntakeKey): Promise<IntakeKeyRow> {
  return ex
    .insertInto('intake_keys')
    .values({
      ...(k.id ? { id: k.id } : {}),
      org_id: k.orgId,
      principal_id: k.principalId,
      alg: k.alg,
      public_key: k.publicKey,
      thumbprint: k.thumbprint,
      name: k.name,
      created_by: k.createdBy,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function findIntakeKey(ex: Executor, orgId: string, id: string): Promise<IntakeKeyRow | undefined> {
  return ex.selectFrom('intake_keys').selectAll().where('org_id', '=', orgId).where('id', '=', id).executeTakeFirst();
}

/** One page of an org's keys, oldest first, after the (created_at, id) of the previous page. */
export async function listIntakeKeys(
  ex: Executor,
  opts: { orgId: string; principalId?: string; after?: { at: Date; id: string } | null; limit: number },
): Promise<IntakeKeyRow[]> {
  let query = ex.selectFrom('intake_keys').selectAll().where('org_id', '=', opts.orgId);
  if (opts.principalId !== undefined) query = query.where('principal_id', '=', opts.principalId);
  const after = opts.after;
  if (after) {
    query = query.where((eb) =>
      eb.or([eb('created_at', '>', after.at), eb.and([eb('created_at', '=', after.at), eb('id', '>', after.id)])]),
    );
  }
  return query
    .orderBy('created_at')
    .orderBy('id')
    .limit(opts.limit + 1)
    .execute();
}

/** Revokes a live key; undefined when there is no such key in the org or it was already revoked. */
export async function revokeIntakeKey(ex: Executor, orgId: string, id: string): Promise<IntakeKeyRow | undefined> {
  return ex
    .updateTable('intake_keys')
    .set({ revoked_at: new Date() })
    .where('org_id', '=', orgId)
    .where('id', '=', id)
    .where('revoked_at', 'is', null)
    .returningAll()
    .executeTakeFirst();
}

/**
 * Everything verifying a message needs about its `kid`, in one indexed
 * lookup: the key and its principal. Not scoped to an org: the kid is what
 * tells which org a message claims to come from.
 */
export async function findIntakeKeyForVerification(ex: Executor, id: string) {
  return ex
    .selectFrom('intake_keys as k')
    .innerJoin('principals as p', 'p.id', 'k.principal_id')
    .select([
      'k.id',
      'k.org_id',
      'k.principal_id',
      'k.alg',
      'k.public_key',
      'k.revoked_at',
      'p.role',
      'p.kind',
      'p.name',
      'p.disabled_at',
    ])
    .where('k.id', '=', id)
    .executeTakeFirst();
}
