import { type Kysely, sql } from 'kysely';

/**
 * Every filter of every list endpoint gets an index whose range is the
 * filter and whose order is the list's order, so a page costs its own rows
 * whatever the table holds (issue 20: `GET /api/v1/jobs` without a
 * certificate and `GET /api/v1/audit?from=` read whole tables).
 *
 * - jobs, newest first: by org (nothing served it: every unfiltered page
 *   sorted all of the org's jobs), by requester (a requester's own list), by
 *   certificate (jobs_certificate lacked the id tie-break, so a page sorted
 *   its ties; it is replaced, and still serves the renewal scan's lookups);
 * - certificates, newest first: by owner (a requester's own list) and by
 *   profile;
 * - approval requests, newest first: by profile, by requester and by
 *   certificate (org and state were served already);
 * - audit records: by time (`from`/`to`), in the order such a list is read
 *   (at, then seq; audit-query.ts). Action, actor and resource id were served
 *   already, in seq order.
 * A combination of filters is read through the index of one of them (the
 * planner picks the most selective) and checks the others on those rows.
 * list-plans.int.test.ts explains every endpoint's SQL for each combination.
 *
 * Each index is one more write per row inserted (a submission writes a
 * certificate, a job, a request and a few audit records). CREATE INDEX holds
 * off writes to its table while it builds: on a large installation build them
 * beforehand with CREATE INDEX CONCURRENTLY under these names and this
 * migration keeps them (IF NOT EXISTS; one an interrupted build left INVALID
 * is dropped and built again); docs/operator-guide.md says how.
 */
const NAMES = [
  'jobs_org_created',
  'jobs_org_requester_created',
  'jobs_certificate_created',
  'certificates_org_owner_created',
  'certificates_org_profile_created',
  'approvals_org_profile_requested',
  'approvals_org_requester_requested',
  'approvals_certificate_requested',
  'audit_records_at',
];

export async function up(db: Kysely<unknown>): Promise<void> {
  // A concurrent build that was interrupted leaves an INVALID index that IF NOT EXISTS would keep.
  // (A DO block takes no parameters: the names are constants of this file.)
  await sql`
DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
           WHERE NOT i.indisvalid AND c.relname IN (${sql.raw(NAMES.map((n) => `'${n}'`).join(', '))}) LOOP
    EXECUTE format('DROP INDEX %I', r.relname);
  END LOOP;
END $$;
`.execute(db);
  await sql`
CREATE INDEX IF NOT EXISTS jobs_org_created ON jobs(org_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_org_requester_created ON jobs(org_id, requested_by, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_certificate_created ON jobs(certificate_id, created_at DESC, id DESC);
DROP INDEX IF EXISTS jobs_certificate;

CREATE INDEX IF NOT EXISTS certificates_org_owner_created ON certificates(org_id, owner_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS certificates_org_profile_created ON certificates(org_id, profile_id, created_at DESC, id DESC);

CREATE INDEX IF NOT EXISTS approvals_org_profile_requested
  ON approval_requests(org_id, profile_id, requested_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS approvals_org_requester_requested
  ON approval_requests(org_id, requested_by, requested_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS approvals_certificate_requested
  ON approval_requests(certificate_id, requested_at DESC, id DESC);

CREATE INDEX IF NOT EXISTS audit_records_at ON audit_records(org_id, at, seq);
`.execute(db);
}

export async function down(): Promise<void> {
  throw new Error('migrations are forward-only; restore from backup to go back');
}
