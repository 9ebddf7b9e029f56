import { sql } from 'kysely';
import { anyOf } from './any-of.ts';
import type { KeysetPosition } from './cursor.ts';
import type { Executor } from './database.ts';

export async function findCertificate(ex: Executor, orgId: string, id: string) {
  return ex.selectFrom('certificates').selectAll().where('org_id', '=', orgId).where('id', '=', id).executeTakeFirst();
}

export async function listCertificates(
  ex: Executor,
  q: { orgId: string; ownerId?: string; profileId?: string; after: KeysetPosition | null; limit: number },
) {
  let query = ex.selectFrom('certificates').selectAll().where('org_id', '=', q.orgId);
  if (q.ownerId) query = query.where('owner_id', '=', q.ownerId);
  if (q.profileId) query = query.where('profile_id', '=', q.profileId);
  if (q.after) {
    const { at, id } = q.after;
    query = query.where(sql<boolean>`(created_at, id) < (${at}, ${id}::uuid)`);
  }
  return query
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .limit(q.limit + 1)
    .execute();
}

export async function insertVersion(
  ex: Executor,
  v: {
    orgId: string;
    certificateId: string;
    jobId: string;
    issuer: string;
    serial: string;
    fingerprint: string;
    notBefore: Date;
    notAfter: Date;
    leafPem: string;
    chainPem: string;
    /** The DNS names the signed leaf carries (the database compares them with the approved names). */
    sans: readonly string[];
  },
) {
  return ex
    .insertInto('certificate_versions')
    .values({
      org_id: v.orgId,
      certificate_id: v.certificateId,
      job_id: v.jobId,
      issuer: v.issuer,
      serial: v.serial,
      fingerprint_sha256: v.fingerprint,
      not_before: v.notBefore,
      not_after: v.notAfter,
      leaf_pem: v.leafPem,
      chain_pem: v.chainPem,
      sans: [...v.sans],
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function findVersion(ex: Executor, orgId: string, id: string) {
  return ex
    .selectFrom('certificate_versions')
    .selectAll()
    .where('org_id', '=', orgId)
    .where('id', '=', id)
    .executeTakeFirst();
}

/**
 * A recorded version with what its mail shows of the job and profile, in one
 * statement (three reads before). The job's and profile's fields are null when
 * they are gone.
 */
export async function findIssuedVersion(ex: Executor, orgId: string, versionId: string) {
  const row = await ex
    .selectFrom('certificate_versions as v')
    .leftJoin('jobs as j', 'j.id', 'v.job_id')
    .leftJoin('profiles as p', (join) => join.onRef('p.id', '=', 'j.profile_id').onRef('p.org_id', '=', 'j.org_id'))
    .selectAll('v')
    .select([
      'j.kind as job_kind',
      'j.common_name as job_common_name',
      'j.sans as job_sans',
      'j.requested_by as job_requested_by',
      'j.requester_type as job_requester_type',
      'p.name as profile_name',
    ])
    .where('v.org_id', '=', orgId)
    .where('v.id', '=', versionId)
    .executeTakeFirst();
  if (!row) return undefined;
  const { job_kind, job_common_name, job_sans, job_requested_by, job_requester_type, profile_name, ...version } = row;
  const job =
    job_kind !== null &&
    job_common_name !== null &&
    job_sans !== null &&
    job_requested_by !== null &&
    job_requester_type !== null
      ? {
          kind: job_kind,
          commonName: job_common_name,
          sans: job_sans,
          requestedBy: job_requested_by,
          requesterType: job_requester_type,
        }
      : null;
  return { version, job, profileName: profile_name };
}

export async function listVersions(ex: Executor, certificateId: string) {
  return ex
    .selectFrom('certificate_versions')
    .selectAll()
    .where('certificate_id', '=', certificateId)
    .orderBy('created_at', 'desc')
    .execute();
}

export async function findVersionsByIds(ex: Executor, ids: readonly string[]) {
  if (ids.length === 0) return [];
  return ex.selectFrom('certificate_versions').selectAll().where('id', '=', anyOf(ids)).execute();
}

/**
 * Certificates due for automatic renewal: the current version expires within
 * the profile's renew_before_days (0 turns automatic renewal off), no job of
 * the certificate is open, and no renewal was tried since the current version
 * was issued (a rejected, expired or failed automatic renewal is not asked
 * again every scan; a person renews by hand). As cert-manager does, the window
 * is capped at two thirds of the version's lifetime, so a profile whose
 * validity is shorter than renew_before_days does not renew every new
 * certificate at once. Keyset-paged on (not_after, id).
 */
export async function findRenewalDue(
  ex: Executor,
  q: { now: Date; limit: number; after?: { notAfter: Date; id: string } | null },
) {
  let query = ex
    .selectFrom('certificates as c')
    .innerJoin('profiles as p', 'p.id', 'c.profile_id')
    .innerJoin('certificate_versions as v', 'v.id', 'c.current_version_id')
    .select(['c.id', 'c.org_id', 'c.profile_id', 'c.owner_id', 'c.common_name', 'v.not_after', 'p.renew_before_days'])
    .where('p.renew_before_days', '>', 0)
    // The widest window any profile allows, so the partial index on not_after bounds the scan.
    .where('c.not_after', '<=', sql<Date>`${q.now}::timestamptz + interval '365 days'`)
    .where(
      sql<boolean>`v.not_after <= ${q.now}::timestamptz
        + LEAST(make_interval(days => p.renew_before_days), (v.not_after - v.not_before) * (2.0 / 3))`,
    )
    .where(({ not, exists, selectFrom }) =>
      not(
        exists(
          selectFrom('jobs as j')
            .select('j.id')
            .whereRef('j.certificate_id', '=', 'c.id')
            .where((eb) =>
              eb.or([
                eb('j.status', 'in', ['awaiting_approval', 'pending', 'running']),
                eb('j.created_at', '>', eb.ref('v.created_at')),
              ]),
            ),
        ),
      ),
    );
  if (q.after) {
    query = query.where(sql<boolean>`(v.not_after, c.id) > (${q.after.notAfter}::timestamptz, ${q.after.id}::uuid)`);
  }
  return query.orderBy('v.not_after').orderBy('c.id').limit(q.limit).execute();
}
