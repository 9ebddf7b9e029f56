import { sql } from 'kysely';
import { type AuditEntry, auditStagingCtes } from './audit-ledger.ts';
import type { Executor } from './database.ts';
import { outboxInsert } from './outbox.ts';
import type { CertificateVersionRow, JobRow } from './schema.ts';

/**
 * After a job's certificate version is recorded: completes the job and, only
 * if that happened, points the certificate at the version (with the names and
 * key it carries), queues the `certificate.issued` event and stages the audit
 * record, in ONE statement (four round trips before; submission-write.ts says
 * why they count).
 *
 * The version is inserted by its own statement before this one: its guard
 * trigger reads the job, which must still be released when it does. Within
 * this statement every other part reads `done`, so the job's update runs
 * first and the rest is written only when it hit the row: a job no longer
 * pending or running gets nothing, even outside a transaction, and the call
 * throws (its caller holds the job's lock, so that would be a bug).
 */
export async function completeIssuance(
  ex: Executor,
  c: { job: JobRow; version: CertificateVersionRow; audit: AuditEntry; at: Date },
): Promise<void> {
  const { job, version, at } = c;
  const completed = sql`EXISTS (SELECT 1 FROM done)`;
  const ctes = [
    sql`done AS (
      UPDATE jobs SET status = 'completed', completed_at = ${at}, updated_at = ${at}, error = NULL
      WHERE id = ${job.id} AND status IN ('pending', 'running')
      RETURNING id
    )`,
    sql`pointed AS (
      UPDATE certificates
      SET current_version_id = ${version.id}, not_after = ${version.not_after}, common_name = ${job.common_name},
          sans = ${job.sans}::text[], public_key = ${job.public_key}, updated_at = ${at}
      WHERE id = ${job.certificate_id} AND ${completed}
      RETURNING id
    )`,
    sql`event AS (${outboxInsert(
      job.org_id,
      [{ topic: 'certificate.issued', payload: { job_id: job.id, version_id: version.id } }],
      completed,
    )})`,
    ...auditStagingCtes([c.audit], at, completed),
  ];
  const { rows } = await sql<{ completed: number }>`
    WITH ${sql.join(ctes)}
    SELECT (SELECT count(*) FROM done)::int AS completed
  `.execute(ex);
  if (rows[0]?.completed !== 1)
    throw new Error(`job ${job.id} was not pending or running when its certificate was recorded`);
}
