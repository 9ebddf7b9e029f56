import { type Kysely, sql } from 'kysely';

/**
 * Audit details are stored as the exact canonical text that was hashed
 * (json keeps its input text; jsonb re-renders it). The verifier can then
 * hash the stored bytes as they come, instead of having PostgreSQL render
 * jsonb back to text (over half of the server's work per record in the
 * verification COPY) and re-sorting every object's keys in Node. Records
 * written before this migration hold jsonb's rendering; the verifier
 * canonicalises those when the stored text does not hash (audit-verify.ts).
 *
 * The append functions take json now, so the text reaches the table as the
 * ledger module wrote it (a jsonb parameter would re-render it).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
ALTER TABLE audit_records ALTER COLUMN details TYPE json USING details::json;
ALTER TABLE audit_staging ALTER COLUMN details TYPE json USING details::json;

DROP FUNCTION audit_append(uuid, timestamptz, text, text, text, text, text, jsonb, bytea);
CREATE FUNCTION audit_append(
  p_org uuid, p_at timestamptz, p_actor_id text, p_actor_type text, p_action text,
  p_resource_type text, p_resource_id text, p_details json, p_body bytea
) RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $fn$
DECLARE
  v_seq bigint;
  v_prev bytea;
  v_hash bytea;
BEGIN
  UPDATE audit_heads SET seq = seq + 1 WHERE org_id = p_org RETURNING seq, hash INTO v_seq, v_prev;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'audit chain of org % does not exist', p_org USING ERRCODE = 'foreign_key_violation';
  END IF;
  v_hash := sha256(v_prev || int8send(v_seq) || p_body);
  INSERT INTO audit_records(org_id, seq, at, actor_id, actor_type, action, resource_type, resource_id, details, prev_hash, hash)
  VALUES (p_org, v_seq, p_at, p_actor_id, p_actor_type, p_action, p_resource_type, p_resource_id, p_details, v_prev, v_hash);
  UPDATE audit_heads SET hash = v_hash WHERE org_id = p_org;
  RETURN v_seq;
END $fn$;
REVOKE ALL ON FUNCTION audit_append(uuid, timestamptz, text, text, text, text, text, json, bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_append(uuid, timestamptz, text, text, text, text, text, json, bytea) TO countersign_app;

DROP FUNCTION audit_append_batch(uuid, timestamptz, text[], text[], text[], text[], text[], jsonb[], bytea[]);
CREATE FUNCTION audit_append_batch(
  p_org uuid, p_at timestamptz, p_actor_ids text[], p_actor_types text[], p_actions text[],
  p_resource_types text[], p_resource_ids text[], p_details json[], p_bodies bytea[]
) RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $fn$
DECLARE
  n integer := coalesce(array_length(p_actions, 1), 0);
  v_seq bigint;
  v_prev bytea;
  v_seqs bigint[] := '{}';
  v_prevs bytea[] := '{}';
  v_hashes bytea[] := '{}';
BEGIN
  IF array_length(p_actor_ids, 1) IS DISTINCT FROM n OR array_length(p_bodies, 1) IS DISTINCT FROM n
     OR array_length(p_details, 1) IS DISTINCT FROM n OR array_length(p_resource_ids, 1) IS DISTINCT FROM n
     OR array_length(p_resource_types, 1) IS DISTINCT FROM n OR array_length(p_actor_types, 1) IS DISTINCT FROM n THEN
    RAISE EXCEPTION 'audit_append_batch: arrays of different lengths' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF n = 0 THEN
    RETURN NULL;
  END IF;
  -- One head lock and update for the whole batch (see migration 0005).
  SELECT seq, hash INTO v_seq, v_prev FROM audit_heads WHERE org_id = p_org FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'audit chain of org % does not exist', p_org USING ERRCODE = 'foreign_key_violation';
  END IF;
  FOR i IN 1 .. n LOOP
    v_seq := v_seq + 1;
    v_seqs := v_seqs || v_seq;
    v_prevs := v_prevs || v_prev;
    v_prev := sha256(v_prev || int8send(v_seq) || p_bodies[i]);
    v_hashes := v_hashes || v_prev;
  END LOOP;
  INSERT INTO audit_records(org_id, seq, at, actor_id, actor_type, action, resource_type, resource_id, details, prev_hash, hash)
  SELECT p_org, s, p_at, a, t, act, rt, ri, d, ph, h
  FROM unnest(v_seqs, p_actor_ids, p_actor_types, p_actions, p_resource_types, p_resource_ids, p_details, v_prevs, v_hashes)
    AS u(s, a, t, act, rt, ri, d, ph, h);
  UPDATE audit_heads SET seq = v_seq, hash = v_prev WHERE org_id = p_org;
  RETURN v_seq;
END $fn$;
REVOKE ALL ON FUNCTION audit_append_batch(uuid, timestamptz, text[], text[], text[], text[], text[], json[], bytea[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_append_batch(uuid, timestamptz, text[], text[], text[], text[], text[], json[], bytea[]) TO countersign_app;
`.execute(db);
}

export async function down(): Promise<void> {
  throw new Error('migrations are forward-only; restore from backup to go back');
}
