import { type Kysely, sql } from 'kysely';

/**
 * The approval queue (org_id = $1 AND state = 'pending' ORDER BY requested_at
 * DESC, id DESC) gets an index of its own, holding pending requests only.
 *
 * The planner prices a page of the queue by the statistics of the last
 * ANALYZE. When an org's requests were all pending then, a scan of
 * approvals_requested_at or approvals_org_requested filtering on state cost
 * no more than approvals_org_state_requested (a larger index), and once a
 * backlog had been expired, every page stepped over the expired rows: 60-90
 * ms per page in the benchmark's reaper phase. A partial index needs no
 * filter and is never larger than approvals_org_requested, so the planner
 * takes it whatever the statistics say (approval-queue.int.test.ts); it also
 * stays small (pending requests are few) and gets no new entry when a
 * request is decided.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
CREATE INDEX approvals_pending_queue ON approval_requests(org_id, requested_at DESC, id DESC) WHERE state = 'pending';
`.execute(db);
}

export async function down(): Promise<void> {
  throw new Error('migrations are forward-only; restore from backup to go back');
}
