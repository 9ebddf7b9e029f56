import { type Kysely, sql } from 'kysely';

/**
 * Appends several records of one org in a single round trip. The chain head
 * is locked by the first append and held until commit; appending the records
 * of a transaction one statement at a time kept that lock through extra
 * client round trips, which serialized a busy org's transactions for longer
 * than needed. Same chain, same hash formula as audit_append.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
CREATE FUNCTION audit_append_batch(
  p_org uuid, p_at timestamptz, p_actor_ids text[], p_actor_types text[], p_actions text[],
  p_resource_types text[], p_resource_ids text[], p_details jsonb[], p_bodies bytea[]
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
  -- The head is locked and updated once for the whole batch: updating the same
  -- row once per record would grow a version chain that every later update
  -- walks (quadratic in the batch size).
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
REVOKE ALL ON FUNCTION audit_append_batch(uuid, timestamptz, text[], text[], text[], text[], text[], jsonb[], bytea[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_append_batch(uuid, timestamptz, text[], text[], text[], text[], text[], jsonb[], bytea[]) TO countersign_app;
`.execute(db);
}

export async function down(): Promise<void> {
  throw new Error('migrations are forward-only; restore from backup to go back');
}
