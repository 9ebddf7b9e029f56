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
}

export interface ProfileWithApprovers extends ProfileRow {
  approvers: string[];
}

export async function insertProfile(ex: Executor, orgId: string, f: ProfileFields, approvers: readonly string[]) {
  const row = await ex
    .insertInto('profiles')
    .values({ org_id: orgId, ...f })
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

async function replaceApprovers(ex: Executor, orgId: string, profileId: string, approvers: readonly string[]) {
  await ex.deleteFrom('profile_approvers').where('profile_id', '=', profileId).execute();
  if (approvers.length === 0) return;
  await ex
    .insertInto('profile_approvers')
    .values(approvers.map((principal_id) => ({ profile_id: profileId, org_id: orgId, principal_id })))
    .execute();
}

export async function findProfile(ex: Executor, orgId: string, id: string): Promise<ProfileWithApprovers | undefined> {
  const row = await ex
    .selectFrom('profiles')
    .selectAll()
    .where('org_id', '=', orgId)
    .where('id', '=', id)
    .executeTakeFirst();
  if (!row) return undefined;
  return { ...row, approvers: await profileApprovers(ex, id) };
}

export async function profileApprovers(ex: Executor, profileId: string): Promise<string[]> {
  const rows = await ex
    .selectFrom('profile_approvers')
    .select('principal_id')
    .where('profile_id', '=', profileId)
    .orderBy('principal_id')
    .execute();
  return rows.map((r) => r.principal_id);
}

export async function listProfiles(ex: Executor, orgId: string): Promise<ProfileWithApprovers[]> {
  const rows = await ex.selectFrom('profiles').selectAll().where('org_id', '=', orgId).orderBy('name').execute();
  if (rows.length === 0) return [];
  const links = await ex
    .selectFrom('profile_approvers')
    .select(['profile_id', 'principal_id'])
    .where(
      'profile_id',
      'in',
      rows.map((r) => r.id),
    )
    .execute();
  return rows.map((r) => ({
    ...r,
    approvers: links.filter((l) => l.profile_id === r.id).map((l) => l.principal_id),
  }));
}
