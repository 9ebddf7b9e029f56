import { type Kysely, sql } from 'kysely';

/**
 * Indexes for the reaper's notification reconciler: it looks for recent
 * decisions and issued certificates whose mails have no delivery record (their
 * queue message was lost with a Redis wipe or restart). Without these it would
 * scan both tables on every run.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
CREATE INDEX approvals_decided_at ON approval_requests(decided_at) WHERE decided_at IS NOT NULL;
CREATE INDEX certificate_versions_created_at ON certificate_versions(created_at);
`.execute(db);
}

export async function down(): Promise<void> {
  throw new Error('migrations are forward-only; restore from backup to go back');
}
