import { sql } from 'kysely';
import { type AuditEntry, auditStagingCtes } from './audit-ledger.ts';
import type { Executor } from './database.ts';
import { type OutboxEvent, outboxInsert } from './outbox.ts';

/**
 * After a request was approved (by the statement before this one, which the
 * job's guard trigger must see): releases its job and, only if that happened,
 * queues the outbox events and stages the audit records, in ONE statement
 * (three round trips before; submission-write.ts says why they count). The
 * other parts read `released`, so the job's update runs first. Returns false
 * when the job was no longer awaiting approval; nothing else is written then.
 */
export async function releaseApprovedJob(
  ex: Executor,
  r: { orgId: string; jobId: string; events: readonly OutboxEvent[]; audit: readonly AuditEntry[]; at: Date },
): Promise<boolean> {
  const released = sql`EXISTS (SELECT 1 FROM released)`;
  const ctes = [
    sql`released AS (
      UPDATE jobs SET status = 'pending', released_at = ${r.at}, updated_at = ${r.at}
      WHERE id = ${r.jobId} AND status = 'awaiting_approval'
      RETURNING id
    )`,
    sql`events AS (${outboxInsert(r.orgId, r.events, released)})`,
    ...auditStagingCtes(r.audit, r.at, released),
  ];
  const { rows } = await sql<{ released: number }>`
    WITH ${sql.join(ctes)}
    SELECT (SELECT count(*) FROM released)::int AS released
  `.execute(ex);
  return rows[0]?.released === 1;
}
