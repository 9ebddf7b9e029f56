import type { Insertable } from 'kysely';
import { sql } from 'kysely';
import { type AuditEntry, auditStagingCtes } from './audit-ledger.ts';
import type { Executor } from './database.ts';
import { type OutboxEvent, outboxInsert } from './outbox.ts';
import type {
  ApprovalRequestsTable,
  ApprovalRow,
  CertificateRow,
  CertificatesTable,
  JobRow,
  JobsTable,
} from './schema.ts';

/** Rows of one submission, with ids chosen by the caller so its audit records can name them beforehand. */
export interface SubmissionRows {
  /** A new certificate (a first request); absent for a renewal of an existing one. */
  readonly certificate?: Insertable<CertificatesTable> & { id: string };
  readonly job: Insertable<JobsTable> & { id: string };
  /** The approval request of a gated profile. */
  readonly approval?: Insertable<ApprovalRequestsTable> & { id: string };
  readonly outbox: readonly OutboxEvent[];
  readonly audit: readonly AuditEntry[];
  /** The audit records' time. */
  readonly at: Date;
}

export interface WrittenSubmission {
  certificate: CertificateRow | null;
  job: JobRow;
  approval: ApprovalRow | null;
}

/**
 * Writes a submission (certificate, job, approval request, outbox event,
 * audit staging) as ONE statement of data-modifying CTEs. A submission's
 * separate INSERTs cost a round trip each, and a round trip here costs ~75 us
 * of machine CPU in wake-ups alone (docs/performance.md); in a profile of
 * submissions at 200/s the api spent 38% of its CPU writing to PostgreSQL's
 * sockets. Run outside a transaction, the statement is its own, so BEGIN and
 * COMMIT are not round trips either; the audit records join the chain at its
 * commit like any others (the seal is a deferred trigger).
 *
 * The sub-statements see one snapshot and their foreign keys are checked at
 * the statement's end, so the job may reference the certificate inserted
 * beside it. The rows come back as jsonb and are typed again here.
 */
export async function writeSubmission(ex: Executor, w: SubmissionRows): Promise<WrittenSubmission> {
  const parts = [];
  if (w.certificate) parts.push(sql`c AS (${ex.insertInto('certificates').values(w.certificate).returningAll()})`);
  parts.push(sql`j AS (${ex.insertInto('jobs').values(w.job).returningAll()})`);
  if (w.approval) parts.push(sql`a AS (${ex.insertInto('approval_requests').values(w.approval).returningAll()})`);
  if (w.outbox.length > 0) parts.push(sql`o AS (${outboxInsert(w.job.org_id, w.outbox)})`);
  parts.push(...auditStagingCtes(w.audit, w.at));
  const { rows } = await sql<{ certificate: JsonRow | null; job: JsonRow; approval: JsonRow | null }>`
    WITH ${sql.join(parts)}
    SELECT ${w.certificate ? sql`(SELECT to_jsonb(c) FROM c)` : sql`NULL::jsonb`} AS certificate,
           (SELECT to_jsonb(j) FROM j) AS job,
           ${w.approval ? sql`(SELECT to_jsonb(a) FROM a)` : sql`NULL::jsonb`} AS approval
  `.execute(ex);
  const row = rows[0];
  if (!row) throw new Error('the submission statement returned no row');
  return {
    certificate: row.certificate ? typedRow<CertificateRow>(row.certificate, COLUMN_TYPES.certificates) : null,
    job: typedRow<JobRow>(row.job, COLUMN_TYPES.jobs),
    approval: row.approval ? typedRow<ApprovalRow>(row.approval, COLUMN_TYPES.approval_requests) : null,
  };
}

type JsonRow = Record<string, unknown>;

interface ColumnTypes<T> {
  /** timestamptz: an ISO string in jsonb, a Date as the pg driver reads it. */
  readonly dates: readonly (keyof T)[];
  /** bytea: '\x'-prefixed hex in jsonb, a Buffer as the pg driver reads it. */
  readonly bytes: readonly (keyof T)[];
}

/**
 * The columns whose jsonb form differs from what the pg driver returns; the rest
 * (text, uuid, boolean, integer, text[]) read the same either way.
 * `statement-writes.int.test.ts` compares each row with a plain read of it, so a
 * column added later without its entry here fails there.
 */
const COLUMN_TYPES = {
  certificates: { dates: ['not_after', 'created_at', 'updated_at'], bytes: ['public_key'] },
  jobs: { dates: ['created_at', 'updated_at', 'released_at', 'completed_at'], bytes: ['public_key'] },
  approval_requests: { dates: ['requested_at', 'expires_at', 'escalate_at', 'decided_at'], bytes: [] },
} satisfies {
  certificates: ColumnTypes<CertificatesTable>;
  jobs: ColumnTypes<JobsTable>;
  approval_requests: ColumnTypes<ApprovalRequestsTable>;
};

function typedRow<T>(json: JsonRow, types: { dates: readonly string[]; bytes: readonly string[] }): T {
  const row: JsonRow = { ...json };
  for (const c of types.dates) if (typeof row[c] === 'string') row[c] = new Date(row[c] as string);
  for (const c of types.bytes) {
    const text = row[c];
    if (typeof text !== 'string') continue;
    // jsonb renders bytea as bytea_output says; hex is PostgreSQL's default and the only form read here.
    if (!text.startsWith('\\x'))
      throw new Error(`column ${c} came back as "${text.slice(0, 8)}...": bytea_output must be hex`);
    row[c] = Buffer.from(text.slice(2), 'hex');
  }
  return row as T;
}
