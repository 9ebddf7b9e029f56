import { type Kysely, sql } from 'kysely';

/**
 * Signing keys of the `renewal-requests` intake (SPEC §4, issue 20): a message
 * on the queue is a compact JWS whose `kid` names one of these rows, and the
 * api files it as the key's principal only if the signature verifies with the
 * stored public key. Only public keys are stored: the SubjectPublicKeyInfo
 * (DER) of an ES256 (P-256), EdDSA (Ed25519) or RS256 (RSA >= 2048 bits) key.
 * The database refuses, whatever the code does:
 * - a key for a principal that is not a service account of the same org;
 * - a key whose bytes are not a public key of its algorithm (a PKCS#8 private
 *   key, a certificate or another curve never fits the shapes checked here);
 * - any change but revoking it, and un-revoking it.
 *
 * Replay of intake messages: the submission's idempotency record also stores
 * the BullMQ job that carried it and the SHA-256 of the signed message, in the
 * same transaction, so a retry of that job replays the first answer while a
 * copy of the message added as another job is refused.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
CREATE TABLE intake_keys (
  -- The JWS kid.
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id uuid NOT NULL,
  principal_id uuid NOT NULL,
  alg text NOT NULL CHECK (alg IN ('ES256', 'EdDSA', 'RS256')),
  -- SubjectPublicKeyInfo, DER.
  public_key bytea NOT NULL,
  -- RFC 7638 JWK thumbprint (SHA-256, base64url), what producers compare with their own key.
  thumbprint text NOT NULL CHECK (thumbprint ~ '^[A-Za-z0-9_-]{43}$'),
  name text CHECK (name IS NULL OR length(name) BETWEEN 1 AND 200),
  -- A principal id of the same org or a system actor (system-...).
  created_by text NOT NULL CHECK (length(created_by) BETWEEN 1 AND 200),
  -- Millisecond precision, like the JavaScript Date in a list cursor, so keyset pages neither skip nor repeat a row.
  created_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
  revoked_at timestamptz,
  FOREIGN KEY (principal_id, org_id) REFERENCES principals(id, org_id),
  CONSTRAINT intake_keys_public_key_shape CHECK (
    -- Ed25519: the 12-byte SPKI prefix and a 32-byte key.
    (alg = 'EdDSA' AND length(public_key) = 44
      AND substring(public_key FROM 1 FOR 12) = '\\x302a300506032b6570032100'::bytea)
    -- P-256, uncompressed point: the 27-byte SPKI prefix (id-ecPublicKey, prime256v1, 0x04) and 64 bytes.
    OR (alg = 'ES256' AND length(public_key) = 91
      AND substring(public_key FROM 1 FOR 27) = '\\x3059301306072a8648ce3d020106082a8648ce3d03010703420004'::bytea)
    -- rsaEncryption with NULL parameters, long enough for a 2048-bit modulus (the code checks the exact size),
    -- at most 8192 bits.
    OR (alg = 'RS256' AND length(public_key) BETWEEN 290 AND 1100
      AND substring(public_key FROM 1 FOR 2) = '\\x3082'::bytea
      AND substring(public_key FROM 5 FOR 15) = '\\x300d06092a864886f70d0101010500'::bytea)
  )
);
CREATE INDEX intake_keys_org_created ON intake_keys(org_id, created_at, id);
CREATE INDEX intake_keys_principal ON intake_keys(principal_id);
-- One live registration of a public key per org: two service principals sharing a key would be one signer.
CREATE UNIQUE INDEX intake_keys_live_thumbprint ON intake_keys(org_id, thumbprint) WHERE revoked_at IS NULL;

CREATE FUNCTION intake_keys_guard() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NOT EXISTS (
      SELECT 1 FROM principals p WHERE p.id = NEW.principal_id AND p.org_id = NEW.org_id AND p.kind = 'service'
    ) THEN
      RAISE EXCEPTION 'intake keys are registered for service principals only'
        USING ERRCODE = 'check_violation', CONSTRAINT = 'intake_keys_service_principal';
    END IF;
    IF NEW.created_by !~ '^system-[a-z-]{1,60}$' AND NOT EXISTS (
      SELECT 1 FROM principals c WHERE c.id::text = NEW.created_by AND c.org_id = NEW.org_id
    ) THEN
      RAISE EXCEPTION 'intake key creator % is neither a principal of its org nor a system actor', NEW.created_by
        USING ERRCODE = 'check_violation', CONSTRAINT = 'intake_keys_creator';
    END IF;
    IF NEW.revoked_at IS NOT NULL THEN
      RAISE EXCEPTION 'an intake key is registered live' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
  END IF;
  IF NEW.id <> OLD.id OR NEW.org_id <> OLD.org_id OR NEW.principal_id <> OLD.principal_id OR NEW.alg <> OLD.alg
     OR NEW.public_key <> OLD.public_key OR NEW.thumbprint <> OLD.thumbprint OR NEW.name IS DISTINCT FROM OLD.name
     OR NEW.created_by <> OLD.created_by OR NEW.created_at <> OLD.created_at THEN
    RAISE EXCEPTION 'intake key % is immutable but for its revocation', OLD.id
      USING ERRCODE = 'check_violation', CONSTRAINT = 'intake_keys_immutable';
  END IF;
  IF OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at THEN
    RAISE EXCEPTION 'intake key % was revoked at %; revocation is final', OLD.id, OLD.revoked_at
      USING ERRCODE = 'check_violation', CONSTRAINT = 'intake_keys_revocation_final';
  END IF;
  RETURN NEW;
END $fn$;
CREATE TRIGGER intake_keys_guard BEFORE INSERT OR UPDATE ON intake_keys FOR EACH ROW EXECUTE FUNCTION intake_keys_guard();
ALTER TABLE intake_keys ENABLE ALWAYS TRIGGER intake_keys_guard;

ALTER TABLE idempotency_keys
  ADD COLUMN queue_job_id text CHECK (queue_job_id IS NULL OR length(queue_job_id) BETWEEN 1 AND 512),
  ADD COLUMN message_digest text CHECK (message_digest IS NULL OR message_digest ~ '^[0-9a-f]{64}$'),
  ADD CONSTRAINT idempotency_keys_queue_origin CHECK ((queue_job_id IS NULL) = (message_digest IS NULL));

REVOKE ALL ON intake_keys FROM PUBLIC;
-- A key an admin registers for a service principal is a credential for someone else: once the org is two-person
-- ready it needs a configuration request another admin approved (config_change_authorized, migration 0016).
CREATE FUNCTION intake_keys_gate() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF NEW.created_by <> NEW.principal_id::text AND NEW.created_by !~ '^system-'
     AND NOT config_change_authorized(NEW.org_id, ARRAY['intake_key_create'], NEW.id,
               jsonb_build_object('public_key', encode(NEW.public_key, 'hex'), 'principal_id', NEW.principal_id::text)) THEN
    PERFORM gate_refused('an intake key for someone else');
  END IF;
  RETURN NEW;
END $fn$;
CREATE TRIGGER intake_keys_gate BEFORE INSERT ON intake_keys FOR EACH ROW EXECUTE FUNCTION intake_keys_gate();
ALTER TABLE intake_keys ENABLE ALWAYS TRIGGER intake_keys_gate;

GRANT SELECT, INSERT ON intake_keys TO countersign_app;
GRANT UPDATE (revoked_at) ON intake_keys TO countersign_app;
`.execute(db);
}

export async function down(): Promise<void> {
  throw new Error('migrations are forward-only; restore from backup to go back');
}
