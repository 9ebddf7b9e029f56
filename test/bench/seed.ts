import pg from 'pg';

/**
 * Bulk rows for the list and reaper measurements, written straight into
 * PostgreSQL as the superuser: certificates, jobs and pending approval
 * requests, in batches. The job guard trigger is paused while seeding (these
 * rows are fixtures of the benchmark, not traffic).
 *
 * They are dated more than a week back: rows written past the api have no
 * mail events, and the reaper's notification reconciler (which looks back 7
 * days) would otherwise take them for lost mail and send a million
 * submission mails in the middle of the measurements.
 */
export async function seedPendingApprovals(
  superuserDbUrl: string,
  o: { orgId: string; profileId: string; ownerId: string; count: number; expired: boolean; batch?: number },
  /** VACUUM as well as ANALYZE (not for the reaper's rows: the reaper is already at work on them). */
  vacuum = true,
): Promise<void> {
  const c = new pg.Client({ connectionString: superuserDbUrl });
  await c.connect();
  const batch = o.batch ?? 100_000;
  try {
    await c.query('ALTER TABLE jobs DISABLE TRIGGER jobs_guard');
    for (let from = 0; from < o.count; from += batch) {
      const n = Math.min(batch, o.count - from);
      await c.query(
        `WITH c AS (
           INSERT INTO certificates (org_id, profile_id, owner_id, common_name, sans, public_key, created_at)
           SELECT $1, $2, $3, 'seed-' || g || '.demo.example', ARRAY['seed-' || g || '.demo.example'], '\\x00'::bytea,
                  date_trunc('milliseconds', now()) - interval '8 days' - make_interval(secs => g + $5)
           FROM generate_series(1, $4) g
           RETURNING id, created_at, common_name, sans
         ), j AS (
           INSERT INTO jobs (org_id, certificate_id, profile_id, kind, status, requires_approval, requested_by, requester_type,
                             common_name, sans, public_key, created_at)
           SELECT $1, c.id, $2, 'issuance', 'awaiting_approval', true, $3::text, 'user', c.common_name, c.sans, '\\x00'::bytea, c.created_at
           FROM c
           RETURNING id, certificate_id, created_at, sans
         )
         INSERT INTO approval_requests (org_id, job_id, certificate_id, profile_id, requested_by, requester_type, justification,
                                        domains, environment, approvals_required, requested_at, expires_at)
         SELECT $1, j.id, j.certificate_id, $2, $3::text, 'user', 'seeded by the benchmark', j.sans, 'production', 1, j.created_at,
                CASE WHEN $6 THEN now() - interval '1 minute' ELSE now() + interval '30 days' END
         FROM j`,
        [o.orgId, o.profileId, o.ownerId, n, from, o.expired],
      );
    }
  } finally {
    await c.query('ALTER TABLE jobs ENABLE ALWAYS TRIGGER jobs_guard').catch(() => {});
    // Vacuumed now, so autovacuum does not wake up on a million new rows in the middle of a measurement.
    for (const t of ['certificates', 'jobs', 'approval_requests'])
      await c.query(`${vacuum ? 'VACUUM ANALYZE' : 'ANALYZE'} ${t}`).catch(() => {});
    await c.end();
  }
}
