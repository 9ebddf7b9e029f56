import { type Kysely, sql } from 'kysely';

/**
 * Audit records are staged as one row of arrays per org and call, and sealed
 * by audit_append_batch at COMMIT; staging writes no WAL.
 *
 * Since 0006 a transaction staged its audit records one row each, and a
 * deferred trigger linked each at COMMIT with audit_append: two updates of the
 * org's chain head per record, under the head's lock. Batches above 50
 * records (the reaper's expiries) instead called audit_append_batch in the
 * middle of the transaction and held the head from there until the client's
 * COMMIT arrived: with expiry runs overlapping, the reaper's backends spent as
 * much time waiting on that lock as working (pg_stat_activity sampling during
 * a 100,000-request reap). Now every append stages one row per org in
 * audit_staging_batches, and a deferred trigger seals it with
 * audit_append_batch: one lock and one head update per batch, held only for
 * the commit. Measured with audit-append.bench.ts (32 clients, one org, three
 * records per transaction): 463 -> 655-736 transactions/s (two runs; one record
 * per transaction: 742-758 -> 839).
 *
 * Staged rows never outlive their transaction (the seal deletes them), so the
 * staging tables are UNLOGGED: a crash aborts the transaction anyway, and the
 * records that do commit are written to audit_records, which is logged.
 *
 * audit_staging, the per-record staging table, stays (unlogged, still sealed)
 * for one release: services of the previous release write to it while a
 * rolling upgrade replaces them. The services lose EXECUTE on the append
 * functions, which run only inside the owner's sealing triggers; during the
 * roll, a reaper of the previous release fails an expiry batch holding more
 * than 50 requests of one org with "permission denied" (the transaction rolls
 * back, nothing is lost, and the new reaper expires them).
 *
 * SET UNLOGGED and DROP CONSTRAINT lock their tables exclusively: with a
 * lock_timeout the migration fails (and is simply run again) rather than
 * queue every request and decision behind a long transaction.
 *
 * Also dropped: UNIQUE (id, org_id) on approval_requests, which no foreign key
 * references (id is the primary key): one index fewer to write on every
 * request and every decision.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
SET LOCAL lock_timeout = '5s';
ALTER TABLE audit_staging SET UNLOGGED;

CREATE UNLOGGED TABLE audit_staging_batches (
  id bigserial PRIMARY KEY,
  org_id uuid NOT NULL,
  at timestamptz NOT NULL,
  actor_ids text[] NOT NULL,
  actor_types text[] NOT NULL,
  actions text[] NOT NULL,
  resource_types text[] NOT NULL,
  resource_ids text[] NOT NULL,
  details json[] NOT NULL,
  bodies bytea[] NOT NULL
);
-- Read once at COMMIT and deleted: compressing the arrays would cost more than it saves.
ALTER TABLE audit_staging_batches
  ALTER COLUMN actor_ids SET STORAGE EXTERNAL, ALTER COLUMN actor_types SET STORAGE EXTERNAL,
  ALTER COLUMN actions SET STORAGE EXTERNAL, ALTER COLUMN resource_types SET STORAGE EXTERNAL,
  ALTER COLUMN resource_ids SET STORAGE EXTERNAL, ALTER COLUMN details SET STORAGE EXTERNAL,
  ALTER COLUMN bodies SET STORAGE EXTERNAL;

CREATE FUNCTION audit_staging_batches_seal() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $fn$
BEGIN
  PERFORM audit_append_batch(NEW.org_id, NEW.at, NEW.actor_ids, NEW.actor_types, NEW.actions, NEW.resource_types,
                             NEW.resource_ids, NEW.details, NEW.bodies);
  DELETE FROM audit_staging_batches WHERE id = NEW.id;
  RETURN NULL;
END $fn$;
CREATE CONSTRAINT TRIGGER audit_staging_batches_seal AFTER INSERT ON audit_staging_batches
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION audit_staging_batches_seal();
ALTER TABLE audit_staging_batches ENABLE ALWAYS TRIGGER audit_staging_batches_seal;
REVOKE ALL ON audit_staging_batches FROM PUBLIC;
GRANT INSERT ON audit_staging_batches TO countersign_app;
GRANT USAGE ON SEQUENCE audit_staging_batches_id_seq TO countersign_app;

REVOKE EXECUTE ON FUNCTION audit_append(uuid, timestamptz, text, text, text, text, text, json, bytea) FROM countersign_app;
REVOKE EXECUTE ON FUNCTION audit_append_batch(uuid, timestamptz, text[], text[], text[], text[], text[], json[], bytea[]) FROM countersign_app;

ALTER TABLE approval_requests DROP CONSTRAINT approval_requests_id_org_id_key;
`.execute(db);
}

export async function down(): Promise<void> {
  throw new Error('migrations are forward-only; restore from backup to go back');
}
