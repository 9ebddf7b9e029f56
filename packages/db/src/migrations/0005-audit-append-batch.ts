import { type Kysely, sql } from 'kysely';

/**
 * Appends several records of one org in a single round trip. The chain head
 * is locked by the first append and held until commit; appending the records
 * of a transaction one statement at a time kept that lock through extra
 * client round trips, which serialized a busy org's transactions for longer
 * than needed. Same chain, same hashes: it calls audit_append in order.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
CREATE FUNCTION audit_append_batch(
  p_org uuid, p_at timestamptz, p_actor_ids text[], p_actor_types text[], p_actions text[],
  p_resource_types text[], p_resource_ids text[], p_details jsonb[], p_bodies bytea[]
) RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $fn$
DECLARE
  v_seq bigint;
  n integer := coalesce(array_length(p_actions, 1), 0);
BEGIN
  IF array_length(p_actor_ids, 1) IS DISTINCT FROM n OR array_length(p_bodies, 1) IS DISTINCT FROM n
     OR array_length(p_details, 1) IS DISTINCT FROM n OR array_length(p_resource_ids, 1) IS DISTINCT FROM n
     OR array_length(p_resource_types, 1) IS DISTINCT FROM n OR array_length(p_actor_types, 1) IS DISTINCT FROM n THEN
    RAISE EXCEPTION 'audit_append_batch: arrays of different lengths' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  FOR i IN 1 .. n LOOP
    v_seq := audit_append(p_org, p_at, p_actor_ids[i], p_actor_types[i], p_actions[i], p_resource_types[i],
                          p_resource_ids[i], p_details[i], p_bodies[i]);
  END LOOP;
  RETURN v_seq;
END $fn$;
REVOKE ALL ON FUNCTION audit_append_batch(uuid, timestamptz, text[], text[], text[], text[], text[], jsonb[], bytea[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_append_batch(uuid, timestamptz, text[], text[], text[], text[], text[], jsonb[], bytea[]) TO countersign_app;
`.execute(db);
}

export async function down(): Promise<void> {
  throw new Error('migrations are forward-only; restore from backup to go back');
}
