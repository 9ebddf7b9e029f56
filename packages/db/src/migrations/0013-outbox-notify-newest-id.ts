import { type Kysely, sql } from 'kysely';

/**
 * The outbox wake-up names the newest row its statement wrote (it was empty).
 *
 * A notification is delivered after its transaction commits, so the relay
 * often has taken and published the row by the time the notification for it
 * arrives: a batch already in flight saw the committed row. With an empty
 * payload the relay could not tell, and ran another batch that found nothing
 * (BEGIN, take, COMMIT): 1.7 such batches per lifecycle in the benchmark.
 * Now it skips a wake-up whose row it published. A relay of an older version
 * ignores the payload; a newer relay treats an empty one as before.
 *
 * A statement that wrote no row (an expiry run with nothing due) no longer
 * wakes the relay at all. Replacing the trigger locks the outbox against
 * inserts: with a lock_timeout the migration fails (and is simply run again)
 * rather than queue every request behind a long relay transaction.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
SET LOCAL lock_timeout = '5s';
CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  newest bigint := (SELECT max(id) FROM written);
BEGIN
  IF newest IS NOT NULL THEN
    PERFORM pg_notify('countersign_outbox', newest::text);
  END IF;
  RETURN NULL;
END $fn$;
DROP TRIGGER outbox_notify ON outbox;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox REFERENCING NEW TABLE AS written
  FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
`.execute(db);
}

export async function down(): Promise<void> {
  throw new Error('migrations are forward-only; restore from backup to go back');
}
