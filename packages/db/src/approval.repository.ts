import type { ApprovalState } from '@countersign/domain';
import { sql } from 'kysely';
import { anyOf } from './any-of.ts';
import type { KeysetPosition } from './cursor.ts';
import { backgroundRead, type Db, type Executor } from './database.ts';
import type { ApprovalRow, VoteRow } from './schema.ts';

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

/** Does the request's profile allow the approval bypass (a per-profile permission, never in production)? */
export async function profileAllowsBypass(ex: Executor, profileId: string): Promise<boolean> {
  const row = await ex.selectFrom('profiles').select('allow_bypass').where('id', '=', profileId).executeTakeFirst();
  return row?.allow_bypass === true;
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

/**
 * What a mail about a request shows besides the request: its job's kind and
 * common name, its profile's name and the votes cast so far, in one statement
 * (three reads before). Nulls when the job or profile is gone.
 */
export async function findMailFacts(
  ex: Executor,
  a: Pick<ApprovalRow, 'id' | 'org_id' | 'job_id' | 'profile_id'>,
): Promise<{ job_kind: string | null; common_name: string | null; profile_name: string | null; votes: number }> {
  const { rows } = await sql<{
    job_kind: string | null;
    common_name: string | null;
    profile_name: string | null;
    votes: number;
  }>`
    SELECT j.kind AS job_kind, j.common_name, p.name AS profile_name,
           (SELECT count(*) FROM approval_votes v WHERE v.org_id = ${a.org_id} AND v.approval_id = ${a.id})::int AS votes
    FROM (SELECT) AS one
    LEFT JOIN jobs j ON j.org_id = ${a.org_id} AND j.id = ${a.job_id}
    LEFT JOIN profiles p ON p.org_id = ${a.org_id} AND p.id = ${a.profile_id}
  `.execute(ex);
  const row = rows[0];
  if (!row) throw new Error('the mail facts query returned no row');
  return row;
}

/**
 * Locks the request for a decision, then reads its profile's approvers. Two
 * statements on purpose: a statement reads in the snapshot it started with,
 * even after waiting for the row lock, so approvers read in the locking
 * statement could miss an approver's removal committed during that wait.
 */
export async function lockForDecision(
  ex: Executor,
  orgId: string,
  id: string,
  deciderId: string,
): Promise<{ approval: ApprovalRow; approvers: string[]; relatedToRequester: boolean } | undefined> {
  const approval = await lockApproval(ex, orgId, id);
  if (!approval) return undefined;
  // The decider's provenance rides along with the approvers: one round trip for both.
  const { rows } = await sql<{ approvers: string[]; related: boolean }>`
    SELECT coalesce((SELECT array_agg(principal_id::text ORDER BY principal_id) FROM profile_approvers
                      WHERE profile_id = ${approval.profile_id}), '{}') AS approvers,
           principals_related(${deciderId}, ${approval.requested_by}) AS related`.execute(ex);
  const row = rows[0];
  return { approval, approvers: row?.approvers ?? [], relatedToRequester: row?.related !== false };
}

/**
 * Casts a vote and returns the request's votes with it, oldest first, in one
 * statement (the statement's snapshot holds the earlier votes; RETURNING adds
 * the new one).
 */
export async function castVote(
  ex: Executor,
  v: {
    approvalId: string;
    orgId: string;
    voterId: string;
    voterType: string;
    requestedBy: string;
    note: string | null;
    /** The voter's own credential (the vote guard checks it is one). */
    credential: { kind: string; id: string };
  },
): Promise<VoteRow[]> {
  const { rows } = await sql<VoteRow>`
    WITH cast_vote AS (
      ${ex
        .insertInto('approval_votes')
        .values({
          approval_id: v.approvalId,
          org_id: v.orgId,
          voter_id: v.voterId,
          voter_type: v.voterType,
          requested_by: v.requestedBy,
          note: v.note,
          credential_kind: v.credential.kind,
          credential_id: v.credential.id,
        })
        .returningAll()}
    )
    SELECT * FROM approval_votes WHERE approval_id = ${v.approvalId}
    UNION ALL
    SELECT * FROM cast_vote
    ORDER BY voted_at
  `.execute(ex);
  return rows;
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
    /** A principal decides with its own credential; system actors with none. */
    credential: { kind: string; id: string } | null;
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
      decided_credential_kind: d.credential?.kind ?? null,
      decided_credential_id: d.credential?.id ?? null,
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

/** A vote as a page of the approval queue carries it. */
export type ListedVote = Pick<VoteRow, 'approval_id' | 'voter_id' | 'note' | 'voted_at'>;

/**
 * The approval queue, newest first, keyset-paged on (requested_at, id), each
 * request with its votes, read in the same statement (one json array per row,
 * through the votes' primary key) so a page is one round trip, not two.
 */
export async function listApprovals(
  ex: Executor,
  f: ApprovalFilter,
): Promise<(ApprovalRow & { votes: ListedVote[] })[]> {
  let q = ex
    .selectFrom('approval_requests')
    .selectAll('approval_requests')
    .select(
      sql<{ voter_id: string; note: string | null; voted_at: string }[]>`(
        SELECT coalesce(json_agg(json_build_object('voter_id', v.voter_id, 'note', v.note, 'voted_at', v.voted_at)
                                 ORDER BY v.voted_at, v.voter_id), '[]')
          FROM approval_votes v WHERE v.approval_id = approval_requests.id)`.as('votes'),
    )
    .where('org_id', '=', f.orgId);
  if (f.state) q = q.where('state', '=', f.state);
  if (f.profileId) q = q.where('profile_id', '=', f.profileId);
  if (f.requestedBy) q = q.where('requested_by', '=', f.requestedBy);
  if (f.certificateId) q = q.where('certificate_id', '=', f.certificateId);
  if (f.after) {
    const { at, id } = f.after;
    q = q.where(sql<boolean>`(requested_at, id) < (${at}, ${id}::uuid)`);
  }
  const rows = await q
    .orderBy('requested_at', 'desc')
    .orderBy('id', 'desc')
    .limit(f.limit + 1)
    .execute();
  return rows.map((r) => ({
    ...r,
    votes: r.votes.map((v) => ({
      approval_id: r.id,
      voter_id: v.voter_id,
      note: v.note,
      voted_at: new Date(v.voted_at),
    })),
  }));
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
  readonly job_id: string;
  readonly profile_id: string;
  /** From the request to its expiry. */
  readonly waited_seconds: number;
  /** False when the job had already left awaiting_approval (nothing to cancel). */
  readonly job_cancelled: boolean;
}

/**
 * Expires up to `limit` pending requests past their deadline, in one
 * statement: the requests, their jobs (cancelled, 'approval expired'), one
 * `approvals.expired` outbox event per org (the requesters' mail, fanned out
 * by the notifier) and one `approval_expired` audit
 * record each, staged per org like appendAuditMany's and sealed into the chain
 * at COMMIT. The reaper must clear a large backlog quickly: shipping every
 * expired row to the service and its audit records back (canonical details
 * and bodies as 1.7 MB of array text per 2,000 rows) cost more than the
 * updates themselves.
 *
 * The records are rendered here exactly as canonicalAuditBody renders them
 * (RFC 8785: members in code-unit order, no whitespace, timestamps as
 * JavaScript's toISOString), and their details text is stored verbatim, so
 * the verifier hashes the same bytes (approval.repository.int.test.ts checks
 * both against the TypeScript rendering). Every string but the actor's is a
 * uuid, a fixed word or a timestamp; the actor's goes through to_json.
 *
 * Rows are claimed with SKIP LOCKED so several reapers share the work; every
 * change is still compare-and-set (`pending`, `awaiting_approval`). Orgs are
 * staged in uuid order, as appendAuditMany stages them, so two transactions
 * lock chain heads in the same order at COMMIT.
 */
export async function expireBatch(
  ex: Executor,
  now: Date,
  limit: number,
  actor: { readonly id: string; readonly type: string },
): Promise<ExpiredApproval[]> {
  const { rows } = await sql<ExpiredApproval>`
    WITH due AS (
      SELECT id FROM approval_requests
       WHERE state = 'pending' AND expires_at <= ${now}
       ORDER BY expires_at LIMIT ${limit}
       FOR UPDATE SKIP LOCKED
    ), expired AS (
      UPDATE approval_requests a
         SET state = 'expired', decided_by = ${actor.id}, decided_by_type = ${actor.type}, decided_at = now(),
             decision_note = 'approval expired'
       WHERE a.id = ANY (ARRAY(SELECT id FROM due)) AND a.state = 'pending'
       RETURNING a.id, a.org_id, a.job_id, a.profile_id, a.requested_at, a.expires_at, a.decided_at
    ), cancelled AS (
      UPDATE jobs j
         SET status = 'cancelled', error = 'approval expired', updated_at = now(), completed_at = now()
       WHERE j.id = ANY (ARRAY(SELECT job_id FROM expired)) AND j.status = 'awaiting_approval'
       RETURNING j.id
    ), mailed AS (
      -- One event per org for the batch (OutboxEvents['approvals.expired']); the notifier fans it out.
      INSERT INTO outbox (org_id, topic, payload)
      SELECT org_id, 'approvals.expired', jsonb_build_object('approval_ids', jsonb_agg(id ORDER BY id))
        FROM expired GROUP BY org_id
    ), outcome AS (
      SELECT e.*, c.id IS NOT NULL AS job_cancelled FROM expired e LEFT JOIN cancelled c ON c.id = e.job_id
    ), record AS (
      SELECT o.org_id, o.id, o.expires_at,
             '{"decided_at":"' || to_char(o.decided_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
             || '","error":"approval expired","expires_at":"'
             || to_char(o.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
             || '","job_id":"' || o.job_id || '","job_status":'
             || CASE WHEN o.job_cancelled THEN '"cancelled"' ELSE 'null' END || ',"state":"expired"}' AS details
        FROM outcome o
    ), stamp AS (
      -- The records' time, to the millisecond as the body renders it (and as appendAuditMany stores it).
      SELECT date_trunc('milliseconds', now()) AS at
    ), staged AS (
      INSERT INTO audit_staging_batches
        (org_id, at, actor_ids, actor_types, actions, resource_types, resource_ids, details, bodies)
      SELECT r.org_id, s.at,
             -- The same for every record: filled, not aggregated (each ordered aggregate sorts the batch again).
             array_fill(${actor.id}::text, ARRAY[count(*)::int]),
             array_fill(${actor.type}::text, ARRAY[count(*)::int]),
             array_fill('approval_expired'::text, ARRAY[count(*)::int]),
             array_fill('approval'::text, ARRAY[count(*)::int]),
             array_agg(r.id::text ORDER BY r.expires_at, r.id),
             array_agg(r.details::json ORDER BY r.expires_at, r.id),
             array_agg(convert_to(
               '{"action":"approval_expired","actor_id":' || to_json(${actor.id}::text)::text
               || ',"actor_type":' || to_json(${actor.type}::text)::text
               || ',"at":"' || to_char(s.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
               || '","details":' || r.details || ',"org_id":"' || r.org_id || '","resource_id":"' || r.id
               || '","resource_type":"approval"}', 'UTF8') ORDER BY r.expires_at, r.id)
        FROM record r CROSS JOIN stamp s
       GROUP BY r.org_id, s.at
       ORDER BY r.org_id
    )
    SELECT id, job_id, profile_id, job_cancelled,
           extract(epoch FROM decided_at - requested_at)::float8 AS waited_seconds
      FROM outcome
  `.execute(ex);
  return rows;
}
