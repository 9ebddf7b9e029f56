import { type Kysely, sql } from 'kysely';

/**
 * The notification reconciler looks at requests of the last week across all
 * orgs. It used to read every pending request however old (the benchmark's
 * million seeded pending rows showed it: a full scan every 30 s, and a
 * million "lost" submission mails); it now reads a requested_at range, which
 * this index serves.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`CREATE INDEX approvals_requested_at ON approval_requests(requested_at);`.execute(db);
}

export async function down(): Promise<void> {
  throw new Error('migrations are forward-only; restore from backup to go back');
}
