import { sql } from 'kysely';
import type { Executor } from './database.ts';
import type { ProfileRow } from './schema.ts';

export interface ProfileFields {
  name: string;
  environment: string;
  requires_approval: boolean;
  approvals_required: number;
  allowed_domains: string[];
  issuer: string;
  validity_days: number;
  approval_timeout_seconds: number | null;
  escalation_after_seconds: number | null;
  renew_before_days: number;
  escalation_contacts: string[];
  /** The approval bypass may decide this profile's requests; only non-production environments may allow it. */
  allow_bypass: boolean;
}

export interface ProfileWithApprovers extends ProfileRow {
  approvers: string[];
}

export async function insertProfile(
  ex: Executor,
  orgId: string,
  f: ProfileFields,
  approvers: readonly string[],
  id?: string,
) {
  const row = await ex
    .insertInto('profiles')
    .values({ ...(id ? { id } : {}), org_id: orgId, ...f })
    .returningAll()
    .executeTakeFirstOrThrow();
  await replaceApprovers(ex, orgId, row.id, approvers);
  return { ...row, approvers: [...approvers] };
}

export async function updateProfile(
  ex: Executor,
  orgId: string,
  id: string,
  f: ProfileFields,
  approvers: readonly string[],
): Promise<ProfileWithApprovers | undefined> {
  const row = await ex
    .updateTable('profiles')
    .set({ ...f, updated_at: new Date() })
    .where('org_id', '=', orgId)
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirst();
  if (!row) return undefined;
  await replaceApprovers(ex, orgId, id, approvers);
  return { ...row, approvers: [...approvers] };
}

/**
 * Removes the approvers no longer listed and inserts only the new ones, so an
 * inserted row always means an approver was added (which, once the org is
 * two-person ready, another admin must have approved: migration 0016).
 */
async function replaceApprovers(ex: Executor, orgId: string, profileId: string, approvers: readonly string[]) {
  let removal = ex.deleteFrom('profile_approvers').where('profile_id', '=', profileId);
  if (approvers.length > 0) removal = removal.where('principal_id', 'not in', [...approvers]);
  await removal.execute();
  if (approvers.length === 0) return;
  await ex
    .insertInto('profile_approvers')
    .values(approvers.map((principal_id) => ({ profile_id: profileId, org_id: orgId, principal_id })))
    .onConflict((oc) => oc.columns(['profile_id', 'principal_id']).doNothing())
    .execute();
}

/** A profile's approvers as one array column, so a profile and its approvers are one round trip. */
const approversColumn = sql<string[]>`array(
  SELECT principal_id FROM profile_approvers pa WHERE pa.profile_id = profiles.id ORDER BY principal_id
)`;

export async function findProfile(ex: Executor, orgId: string, id: string): Promise<ProfileWithApprovers | undefined> {
  return ex
    .selectFrom('profiles')
    .selectAll()
    .select(approversColumn.as('approvers'))
    .where('org_id', '=', orgId)
    .where('id', '=', id)
    .executeTakeFirst();
}

export async function listProfiles(ex: Executor, orgId: string): Promise<ProfileWithApprovers[]> {
  return ex
    .selectFrom('profiles')
    .selectAll()
    .select(approversColumn.as('approvers'))
    .where('org_id', '=', orgId)
    .orderBy('name')
    .execute();
}
