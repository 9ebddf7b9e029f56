import { type Kysely, sql } from 'kysely';

/**
 * Signed checkpoints of the audit chain (audit-checkpoint.ts). Like the
 * ledger itself the table is append-only, also for a session that sets
 * session_replication_role = replica, and a checkpoint can only name a head
 * the chain really has: its hash must be the stored hash of the record at its
 * seq. The signature is made outside the database with a key the database
 * never sees, so rows forged here fail verification with the public key.
 * Also an index for the audit query API's `actor` filter.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
CREATE TABLE audit_checkpoints (
  id uuid PRIMARY KEY,
  org_id uuid NOT NULL REFERENCES orgs(id),
  seq bigint NOT NULL CHECK (seq >= 0),
  head_hash bytea NOT NULL CHECK (length(head_hash) = 32),
  at timestamptz NOT NULL,
  key_id text NOT NULL CHECK (key_id ~ '^[0-9a-f]{32}$'),
  signature bytea NOT NULL CHECK (length(signature) = 64),
  UNIQUE (org_id, seq)
);

CREATE FUNCTION audit_checkpoints_guard() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP <> 'INSERT' THEN
    RAISE EXCEPTION 'audit_checkpoints is append-only: % is not allowed', TG_OP USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF NEW.seq = 0 THEN
    IF NEW.head_hash <> '\\x0000000000000000000000000000000000000000000000000000000000000000'::bytea THEN
      RAISE EXCEPTION 'a checkpoint of an empty chain has the all-zero hash' USING ERRCODE = 'check_violation';
    END IF;
  ELSIF NOT EXISTS (
    SELECT 1 FROM audit_records WHERE org_id = NEW.org_id AND seq = NEW.seq AND hash = NEW.head_hash
  ) THEN
    RAISE EXCEPTION 'checkpoint of org % names record % with a hash the chain does not have', NEW.org_id, NEW.seq
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $fn$;
CREATE TRIGGER audit_checkpoints_guard BEFORE INSERT OR UPDATE OR DELETE ON audit_checkpoints
  FOR EACH ROW EXECUTE FUNCTION audit_checkpoints_guard();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
  FOR EACH STATEMENT EXECUTE FUNCTION audit_checkpoints_guard();
ALTER TABLE audit_checkpoints ENABLE ALWAYS TRIGGER audit_checkpoints_guard;
ALTER TABLE audit_checkpoints ENABLE ALWAYS TRIGGER audit_checkpoints_no_truncate;

CREATE INDEX audit_records_actor ON audit_records(org_id, actor_id, seq);

REVOKE ALL ON audit_checkpoints FROM PUBLIC;
GRANT SELECT, INSERT ON audit_checkpoints TO countersign_app;
`.execute(db);
}

export async function down(): Promise<void> {
  throw new Error('migrations are forward-only; restore from backup to go back');
}
