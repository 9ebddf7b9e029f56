import { type Kysely, sql } from 'kysely';

/**
 * Links audit records into the chain at COMMIT instead of during the
 * transaction. Appending in the transaction locked the org's chain head from
 * the append until the client's COMMIT arrived, so every round trip and every
 * event-loop delay of a busy service serialized the org's writers (measured:
 * most time spent waiting on that row lock). Now a transaction stages its
 * records in audit_staging, and a deferred constraint trigger appends them at
 * commit, inside the server, in the order they were staged: the head is held
 * only for the commit itself. The records still commit or vanish with the
 * business change, and the chain format is unchanged.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
CREATE TABLE audit_staging (
  id bigserial PRIMARY KEY,
  org_id uuid NOT NULL,
  at timestamptz NOT NULL,
  actor_id text NOT NULL,
  actor_type text NOT NULL,
  action text NOT NULL,
  resource_type text NOT NULL,
  resource_id text NOT NULL,
  details jsonb NOT NULL,
  body bytea NOT NULL
);

CREATE FUNCTION audit_staging_seal() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $fn$
BEGIN
  PERFORM audit_append(NEW.org_id, NEW.at, NEW.actor_id, NEW.actor_type, NEW.action, NEW.resource_type,
                       NEW.resource_id, NEW.details, NEW.body);
  DELETE FROM audit_staging WHERE id = NEW.id;
  RETURN NULL;
END $fn$;

CREATE CONSTRAINT TRIGGER audit_staging_seal AFTER INSERT ON audit_staging
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION audit_staging_seal();
ALTER TABLE audit_staging ENABLE ALWAYS TRIGGER audit_staging_seal;

REVOKE ALL ON audit_staging FROM PUBLIC;
-- The services may only stage records; sealing runs as the owner.
GRANT INSERT ON audit_staging TO countersign_app;
GRANT USAGE ON SEQUENCE audit_staging_id_seq TO countersign_app;
`.execute(db);
}

export async function down(): Promise<void> {
  throw new Error('migrations are forward-only; restore from backup to go back');
}
