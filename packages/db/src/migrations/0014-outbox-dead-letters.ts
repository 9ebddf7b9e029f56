import { type Kysely, sql } from 'kysely';

/**
 * Outbox rows the relay could not publish because their payload breaks the
 * queue contract. Such a row used to fail its relay batch every time, and
 * since the relay takes the oldest rows first, it stopped every release and
 * every mail behind it. The relay now moves it here, in the transaction that
 * takes it, with the reason, and publishes the rest. Nothing is lost: an
 * operator reads the row here (docs/operator-guide.md), and the reaper's
 * reconcilers re-derive released jobs and mail from the state rows anyway.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
CREATE TABLE outbox_dead_letters (
  id bigint PRIMARY KEY,
  org_id uuid NOT NULL,
  topic text NOT NULL,
  payload jsonb NOT NULL,
  created_at timestamptz NOT NULL,
  failed_at timestamptz NOT NULL DEFAULT now(),
  reason text NOT NULL
);
REVOKE ALL ON outbox_dead_letters FROM PUBLIC;
GRANT SELECT, INSERT ON outbox_dead_letters TO countersign_app;
`.execute(db);
}

export async function down(): Promise<void> {
  throw new Error('migrations are forward-only; restore from backup to go back');
}
