import { createTestDatabase, seedOrg, type TestDatabase } from '@countersign/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listApprovals } from './approval.repository.ts';

/**
 * The approval queue's page must be read from approvals_pending_queue (only
 * pending rows) even when the statistics are stale: planned on an index that
 * filters on state, a page after a large expiry stepped over every expired
 * row (60-90 ms per page in the benchmark). Statistics are taken while all
 * requests are pending, then most are expired, as a reaper clearing a backlog
 * does before autovacuum catches up.
 */
let tdb: TestDatabase;
beforeAll(async () => {
  tdb = await createTestDatabase();
});
afterAll(async () => tdb?.drop());

describe('the pending approval queue', () => {
  it('is planned on the pending-only index after a backlog was expired under stale statistics', async () => {
    const org = await seedOrg(tdb.handle.db);
    const n = 20_000;
    await tdb.superuser('ALTER TABLE jobs DISABLE TRIGGER jobs_guard');
    try {
      await tdb.superuser(
        `WITH c AS (
           INSERT INTO certificates (org_id, profile_id, owner_id, common_name, sans, public_key, created_at)
           SELECT $1, $2, $3, 'q' || g || '.example.com', ARRAY['q' || g || '.example.com'], '\\x00'::bytea,
                  date_trunc('milliseconds', now()) - make_interval(secs => g)
           FROM generate_series(1, $4) g RETURNING id, created_at, sans
         ), j AS (
           INSERT INTO jobs (org_id, certificate_id, profile_id, kind, status, requires_approval, requested_by, requester_type,
                             common_name, sans, public_key, created_at)
           SELECT $1, c.id, $2, 'issuance', 'awaiting_approval', true, $3::text, 'user', c.sans[1], c.sans, '\\x00'::bytea, c.created_at
           FROM c RETURNING id, certificate_id, created_at, sans
         )
         INSERT INTO approval_requests (org_id, job_id, certificate_id, profile_id, requested_by, requester_type, justification,
                                        domains, environment, approvals_required, requested_at, expires_at)
         SELECT $1, j.id, j.certificate_id, $2, $3::text, 'user', 'queue test', j.sans, 'production', 1, j.created_at,
                now() + interval '1 day'
         FROM j`,
        [org.orgId, org.gated.id, org.requester.id, n],
      );
    } finally {
      await tdb.superuser('ALTER TABLE jobs ENABLE ALWAYS TRIGGER jobs_guard');
    }
    await tdb.superuser('ANALYZE approval_requests');
    // The newest 19,000 requests expire (the stale statistics still say all are pending).
    await tdb.superuser(
      `UPDATE approval_requests SET state = 'expired', decided_by = 'system-reaper', decided_by_type = 'system',
              decided_at = now(), decision_note = 'approval expired'
       WHERE org_id = $1 AND id IN (SELECT id FROM approval_requests WHERE org_id = $1 ORDER BY requested_at DESC LIMIT 19000)`,
      [org.orgId],
    );
    const plan = await tdb.superuser<{ 'QUERY PLAN': string }>(
      `EXPLAIN SELECT * FROM approval_requests WHERE org_id = $1 AND state = 'pending'
       ORDER BY requested_at DESC, id DESC LIMIT 51`,
      [org.orgId],
    );
    const text = plan.rows.map((r) => r['QUERY PLAN']).join('\n');
    expect(text).toContain('approvals_pending_queue');
    expect(text).not.toContain('Filter');
    // And the page itself is the 50 newest still pending.
    const page = await listApprovals(tdb.handle.db, { orgId: org.orgId, state: 'pending', after: null, limit: 50 });
    expect(page).toHaveLength(51);
    expect(page.every((a) => a.state === 'pending')).toBe(true);
  });
});
