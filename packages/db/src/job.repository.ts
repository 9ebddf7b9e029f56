import { sql } from 'kysely';
import type { Executor } from './database.ts';

export async function findJob(ex: Executor, orgId: string, id: string) {
  return ex.selectFrom('jobs').selectAll().where('org_id', '=', orgId).where('id', '=', id).executeTakeFirst();
}

export async function listJobs(
  ex: Executor,
  q: {
    orgId: string;
    certificateId?: string;
    requestedBy?: string;
    limit: number;
    before?: { at: Date; id: string } | null;
  },
) {
  let query = ex.selectFrom('jobs').selectAll().where('org_id', '=', q.orgId);
  if (q.certificateId) query = query.where('certificate_id', '=', q.certificateId);
  if (q.requestedBy) query = query.where('requested_by', '=', q.requestedBy);
  if (q.before) {
    const { at, id } = q.before;
    query = query.where(sql<boolean>`(created_at, id) < (${at}, ${id}::uuid)`);
  }
  return query
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .limit(q.limit + 1)
    .execute();
}

/**
 * Row-locks the job for the issuer (no other worker can sign it until this
 * transaction ends) and reads, in the same round trip, what issuing it depends
 * on: its request's state (null for an ungated job) and its profile's issuer
 * and validity (null when the profile is gone). Those are read in the
 * statement's snapshot, which may predate the lock's wait; that is safe here:
 * an approved request is final, and the job is released only after it was.
 */
export async function lockJobForIssuance(ex: Executor, id: string) {
  const row = await ex
    .selectFrom('jobs as j')
    .leftJoin('approval_requests as a', 'a.job_id', 'j.id')
    .leftJoin('profiles as p', (join) => join.onRef('p.id', '=', 'j.profile_id').onRef('p.org_id', '=', 'j.org_id'))
    .selectAll('j')
    .select([
      'a.state as approval_state',
      'a.domains as approval_domains',
      'p.issuer as profile_issuer',
      'p.validity_days as profile_validity_days',
    ])
    .where('j.id', '=', id)
    .forUpdate('j')
    .executeTakeFirst();
  if (!row) return undefined;
  const { approval_state, approval_domains, profile_issuer, profile_validity_days, ...job } = row;
  return {
    job,
    approvalState: approval_state,
    /** The names the approvers were shown: what a gated job's certificate must carry. */
    approvedNames: approval_domains,
    profile:
      profile_issuer === null || profile_validity_days === null
        ? null
        : { id: job.profile_id, issuer: profile_issuer, validityDays: profile_validity_days },
  };
}

export async function cancelJob(ex: Executor, id: string, error: string) {
  return ex
    .updateTable('jobs')
    .set({ status: 'cancelled', error, updated_at: new Date(), completed_at: new Date() })
    .where('id', '=', id)
    .where('status', '=', 'awaiting_approval')
    .returningAll()
    .executeTakeFirst();
}

export async function failJob(ex: Executor, id: string, error: string) {
  return ex
    .updateTable('jobs')
    .set({ status: 'failed', error, completed_at: new Date(), updated_at: new Date() })
    .where('id', '=', id)
    .where('status', 'in', ['pending', 'running'])
    .returningAll()
    .executeTakeFirst();
}

export async function recordAttempt(ex: Executor, id: string, error: string | null) {
  await ex
    .updateTable('jobs')
    .set((eb) => ({ attempts: eb('attempts', '+', 1), error, updated_at: new Date() }))
    .where('id', '=', id)
    .execute();
}

/**
 * Released jobs still not finished after `graceMs`: candidates for re-release
 * when their queue message was lost. The caller checks the queue before acting.
 */
export async function findStaleReleasedJobs(ex: Executor, graceMs: number, limit: number) {
  return ex
    .selectFrom('jobs')
    .select(['id', 'org_id', 'released_at'])
    .where('status', 'in', ['pending', 'running'])
    .where('released_at', '<', new Date(Date.now() - graceMs))
    .orderBy('released_at')
    .limit(limit)
    .execute();
}

/**
 * Like findStaleReleasedJobs, keyset-paged on (released_at, id) so one
 * reconcile run can walk every stale job, however many a Redis wipe left.
 */
export async function findStaleReleasedJobsPage(
  ex: Executor,
  q: { graceMs: number; limit: number; after?: { releasedAt: Date; id: string } | null },
) {
  let query = ex
    .selectFrom('jobs')
    .select(['id', 'org_id', 'released_at'])
    .where('status', 'in', ['pending', 'running'])
    .where('released_at', '<', new Date(Date.now() - q.graceMs));
  if (q.after) {
    query = query.where(sql<boolean>`(released_at, id) > (${q.after.releasedAt}::timestamptz, ${q.after.id}::uuid)`);
  }
  return query.orderBy('released_at').orderBy('id').limit(q.limit).execute();
}
