import { type Kysely, sql } from 'kysely';

/**
 * Counts the SMTP transactions of a delivery that ended without any reply
 * from the server (a timeout or a dropped connection). Such an attempt may
 * or may not have delivered the mail: SMTP cannot tell (RFC 1047), so the
 * notifier sends again with the same Message-ID. The count makes every such
 * possible duplicate explainable from the delivery record alone.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
ALTER TABLE notification_deliveries
  ADD COLUMN unanswered_attempts integer NOT NULL DEFAULT 0 CHECK (unanswered_attempts >= 0);
`.execute(db);
}

export async function down(): Promise<void> {
  throw new Error('migrations are forward-only; restore from backup to go back');
}
