import type { ApprovalState } from '@countersign/domain';
import { sql } from 'kysely';
import { anyOf } from './any-of.ts';
import type { KeysetPosition } from './cursor.ts';
import { backgroundRead, type Db, type Executor } from './database.ts';
import type { ApprovalRow } from './schema.ts';

/** Approval requests and their votes. Decisions are compare-and-set on `state = 'pending'`. */
export async function insertApproval(
  ex: Executor,
  a: {
    orgId: string;
    jobId: string;
    certificateId: string;
    profileId: string;
    requestedBy: string;
    requesterType: string;
    justification: string;
    domains: string[];
    environment: string;
    approvalsRequired: number;
    requestedAt: Date;
    expiresAt: Date;
    escalateAt: Date | null;
  },
) {
  return ex
    .insertInto('approval_requests')
    .values({
      org_id: a.orgId,
      job_id: a.jobId,
      certificate_id: a.certificateId,
      profile_id: a.profileId,
      requested_by: a.requestedBy,
      requester_type: a.requesterType,
      justification: a.justification,
      domains: a.domains,
      environment: a.environment,
      approvals_required: a.approvalsRequired,
      requested_at: a.requestedAt,
      expires_at: a.expiresAt,
      escalate_at: a.escalateAt,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function findApproval(ex: Executor, orgId: string, id: string) {
  return ex
    .selectFrom('approval_requests')
    .selectAll()
    .where('org_id', '=', orgId)
    .where('id', '=', id)
    .executeTakeFirst();
}

export async function findApprovalById(ex: Executor, id: string) {
  return ex.selectFrom('approval_requests').selectAll().where('id', '=', id).executeTakeFirst();
}

/** What the outbox relay needs to schedule first reminders: state and escalation time of several requests. */
export async function findEscalationStarts(ex: Executor, ids: readonly string[]) {
  if (ids.length === 0) return [];
  return ex
    .selectFrom('approval_requests')
    .select(['id', 'state', 'escalate_at'])
    .where('id', '=', anyOf(ids))
    .execute();
}

export async function findApprovalByJob(ex: Executor, jobId: string) {
  return ex.selectFrom('approval_requests').selectAll().where('job_id', '=', jobId).executeTakeFirst();
}

/** Locks the request so concurrent decisions serialize and exactly one wins. */
export async function lockApproval(ex: Executor, orgId: string, id: string) {
  return ex
    .selectFrom('approval_requests')
    .selectAll()
    .where('org_id', '=', orgId)
    .where('id', '=', id)
    .forUpdate()
    .executeTakeFirst();
}

export async function insertVote(
  ex: Executor,
  v: {
    approvalId: string;
    orgId: string;
    voterId: string;
    voterType: string;
    requestedBy: string;
    note: string | null;
  },
) {
  return ex
    .insertInto('approval_votes')
    .values({
      approval_id: v.approvalId,
      org_id: v.orgId,
      voter_id: v.voterId,
      voter_type: v.voterType,
      requested_by: v.requestedBy,
      note: v.note,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function listVotes(ex: Executor, approvalIds: readonly string[]) {
  if (approvalIds.length === 0) return [];
  return ex
    .selectFrom('approval_votes')
    .selectAll()
    .where('approval_id', '=', anyOf(approvalIds))
    .orderBy('voted_at')
    .execute();
}

export async function markDecided(
  ex: Executor,
  d: {
    id: string;
    state: Exclude<ApprovalState, 'pending'>;
    decidedBy: string;
    decidedByType: string;
    note: string | null;
  },
): Promise<ApprovalRow | undefined> {
  return ex
    .updateTable('approval_requests')
    .set({
      state: d.state,
      decided_by: d.decidedBy,
      decided_by_type: d.decidedByType,
      decided_at: new Date(),
      decision_note: d.note,
    })
    .where('id', '=', d.id)
    .where('state', '=', 'pending')
    .returningAll()
    .executeTakeFirst();
}

export interface ApprovalFilter {
  orgId: string;
  state?: ApprovalState;
  profileId?: string;
  requestedBy?: string;
  certificateId?: string;
  after: KeysetPosition | null;
  limit: number;
}

/** The approval queue, newest first, keyset-paged on (requested_at, id). */
export async function listApprovals(ex: Executor, f: ApprovalFilter) {
  let q = ex.selectFrom('approval_requests').selectAll().where('org_id', '=', f.orgId);
  if (f.state) q = q.where('state', '=', f.state);
  if (f.profileId) q = q.where('profile_id', '=', f.profileId);
  if (f.requestedBy) q = q.where('requested_by', '=', f.requestedBy);
  if (f.certificateId) q = q.where('certificate_id', '=', f.certificateId);
  if (f.after) {
    const { at, id } = f.after;
    q = q.where(sql<boolean>`(requested_at, id) < (${at}, ${id}::uuid)`);
  }
  return q
    .orderBy('requested_at', 'desc')
    .orderBy('id', 'desc')
    .limit(f.limit + 1)
    .execute();
}

/**
 * Claims a batch of pending requests past their deadline. SKIP LOCKED lets
 * several reapers work side by side without touching the same rows; the
 * decision itself is still compare-and-set.
 */
export async function lockExpiredBatch(ex: Executor, now: Date, limit: number) {
  return ex
    .selectFrom('approval_requests')
    .selectAll()
    .where('state', '=', 'pending')
    .where('expires_at', '<=', now)
    .orderBy('expires_at')
    .limit(limit)
    .forUpdate()
    .skipLocked()
    .execute();
}

/** Pending requests per profile, for the countersign_approvals_pending gauge (a background read). */
export async function countPendingByProfile(db: Db): Promise<{ profile_id: string; pending: number }[]> {
  const rows = await backgroundRead(db, (tx) =>
    tx
      .selectFrom('approval_requests')
      .select(['profile_id', (eb) => eb.fn.countAll<string>().as('pending')])
      .where('state', '=', 'pending')
      .groupBy('profile_id')
      .execute(),
  );
  return rows.map((r) => ({ profile_id: r.profile_id, pending: Number(r.pending) }));
}

/** A request the reaper expired, and whether its job was cancelled with it. */
export interface ExpiredApproval {
  readonly id: string;
  readonly org_id: string;
  readonly job_id: string;
  readonly profile_id: string;
  readonly requested_at: Date;
  readonly expires_at: Date;
  readonly decided_at: Date;
  /** False when the job had already left awaiting_approval (nothing to cancel). */
  readonly job_cancelled: boolean;
}

/**
 * Expires up to `limit` pending requests past their deadline, cancels their
 * jobs ('approval expired') and queues one outbox event each, in one statement:
 * the reaper must clear a large backlog quickly, and shipping thousands of ids
 * back and forth for the job and outbox statements cost more than the updates
 * themselves. Rows are claimed with SKIP LOCKED so several reapers share the
 * work; every change is still compare-and-set (`pending`, `awaiting_approval`).
 */
export async function expireBatch(
  ex: Executor,
  now: Date,
  limit: number,
  decidedBy: string,
): Promise<ExpiredApproval[]> {
  const { rows } = await sql<ExpiredApproval>`
    WITH due AS (
      SELECT id FROM approval_requests
       WHERE state = 'pending' AND expires_at <= ${now}
       ORDER BY expires_at LIMIT ${limit}
       FOR UPDATE SKIP LOCKED
    ), expired AS (
      UPDATE approval_requests a
         SET state = 'expired', decided_by = ${decidedBy}, decided_by_type = 'system', decided_at = now(),
             decision_note = 'approval expired'
       WHERE a.id = ANY (ARRAY(SELECT id FROM due)) AND a.state = 'pending'
       RETURNING a.id, a.org_id, a.job_id, a.profile_id, a.requested_at, a.expires_at, a.decided_at
    ), cancelled AS (
      UPDATE jobs j
         SET status = 'cancelled', error = 'approval expired', updated_at = now(), completed_at = now()
       WHERE j.id = ANY (ARRAY(SELECT job_id FROM expired)) AND j.status = 'awaiting_approval'
       RETURNING j.id
    ), mailed AS (
      INSERT INTO outbox (org_id, topic, payload)
      SELECT org_id, 'approval.decided', jsonb_build_object('approval_id', id, 'outcome', 'expired') FROM expired
    )
    SELECT e.*, c.id IS NOT NULL AS job_cancelled
      FROM expired e LEFT JOIN cancelled c ON c.id = e.job_id
  `.execute(ex);
  return rows;
}
