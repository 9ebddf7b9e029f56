import { type Kysely, sql } from 'kysely';

/**
 * The core schema. Invariants of SPEC §1 live here as constraints and triggers
 * so that even raw SQL through the services' role cannot break them:
 * - one approval request per job; terminal approval states never change;
 * - a terminal approval names who decided; the requester never decides or votes;
 * - an approval reaches `approved` only with its quorum of votes (or the bypass
 *   actor, never for production);
 * - one certificate version per job, and none for a gated job whose approval is
 *   not `approved`;
 * - the audit table accepts appends only through audit_append(), which extends
 *   the per-org hash chain, and rejects UPDATE, DELETE and TRUNCATE.
 * Runs as the owner role; the services' role `countersign_app` gets only the
 * privileges granted at the end.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
CREATE TABLE orgs (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  name text NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 200),
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE principals (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id uuid NOT NULL REFERENCES orgs(id),
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  email text,
  role text NOT NULL CHECK (role IN ('admin', 'operator', 'requester', 'auditor')),
  kind text NOT NULL DEFAULT 'user' CHECK (kind IN ('user', 'service')),
  created_at timestamptz NOT NULL DEFAULT now(),
  disabled_at timestamptz,
  UNIQUE (org_id, name),
  UNIQUE (id, org_id)
);

CREATE TABLE api_keys (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id uuid NOT NULL,
  principal_id uuid NOT NULL,
  name text,
  -- SHA-256 of the 256-bit random secret; the secret itself is never stored.
  secret_hash bytea NOT NULL CHECK (length(secret_hash) = 32),
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz,
  revoked_at timestamptz,
  FOREIGN KEY (principal_id, org_id) REFERENCES principals(id, org_id)
);
CREATE INDEX api_keys_principal ON api_keys(principal_id);

CREATE TABLE profiles (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id uuid NOT NULL REFERENCES orgs(id),
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  environment text NOT NULL CHECK (environment ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
  requires_approval boolean NOT NULL,
  approvals_required integer NOT NULL DEFAULT 1 CHECK (approvals_required BETWEEN 1 AND 10),
  allowed_domains text[] NOT NULL,
  issuer text NOT NULL DEFAULT 'local',
  validity_days integer NOT NULL CHECK (validity_days BETWEEN 1 AND 825),
  -- NULL means the service default (COUNTERSIGN_APPROVAL_TIMEOUT / _ESCALATION_AFTER).
  approval_timeout_seconds integer CHECK (approval_timeout_seconds > 0),
  escalation_after_seconds integer CHECK (escalation_after_seconds > 0),
  renew_before_days integer NOT NULL DEFAULT 30 CHECK (renew_before_days BETWEEN 0 AND 365),
  escalation_contacts text[] NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (org_id, name),
  UNIQUE (id, org_id)
);

CREATE TABLE profile_approvers (
  profile_id uuid NOT NULL,
  org_id uuid NOT NULL,
  principal_id uuid NOT NULL,
  PRIMARY KEY (profile_id, principal_id),
  FOREIGN KEY (profile_id, org_id) REFERENCES profiles(id, org_id),
  FOREIGN KEY (principal_id, org_id) REFERENCES principals(id, org_id)
);

CREATE TABLE certificates (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id uuid NOT NULL,
  profile_id uuid NOT NULL,
  owner_id uuid NOT NULL,
  common_name text NOT NULL,
  sans text[] NOT NULL,
  -- SubjectPublicKeyInfo (DER) of the key most recently requested; reused by
  -- renewals that bring no CSR.
  public_key bytea NOT NULL,
  current_version_id uuid,
  not_after timestamptz,
  -- Millisecond precision: keyset cursors carry JavaScript dates, so paging must compare like with like.
  created_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
  updated_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (id, org_id),
  FOREIGN KEY (profile_id, org_id) REFERENCES profiles(id, org_id),
  FOREIGN KEY (owner_id, org_id) REFERENCES principals(id, org_id)
);
CREATE INDEX certificates_org_created ON certificates(org_id, created_at DESC, id DESC);
CREATE INDEX certificates_renewal_due ON certificates(not_after) WHERE not_after IS NOT NULL;

CREATE TABLE jobs (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id uuid NOT NULL,
  certificate_id uuid NOT NULL,
  profile_id uuid NOT NULL,
  kind text NOT NULL CHECK (kind IN ('issuance', 'renewal')),
  status text NOT NULL CHECK (status IN ('awaiting_approval', 'pending', 'running', 'completed', 'failed', 'cancelled')),
  -- Snapshot of the profile's gate when the job was created; immutable.
  requires_approval boolean NOT NULL,
  requested_by text NOT NULL,
  requester_type text NOT NULL CHECK (requester_type IN ('user', 'service', 'system')),
  common_name text NOT NULL,
  sans text[] NOT NULL,
  public_key bytea NOT NULL,
  error text,
  attempts integer NOT NULL DEFAULT 0,
  -- Millisecond precision: keyset cursors carry JavaScript dates, so paging must compare like with like.
  created_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
  updated_at timestamptz NOT NULL DEFAULT now(),
  released_at timestamptz,
  completed_at timestamptz,
  UNIQUE (id, org_id),
  FOREIGN KEY (certificate_id, org_id) REFERENCES certificates(id, org_id),
  FOREIGN KEY (profile_id, org_id) REFERENCES profiles(id, org_id)
);
-- Never two open jobs for one certificate (renewal_in_progress).
CREATE UNIQUE INDEX jobs_one_open_per_certificate ON jobs(certificate_id)
  WHERE status IN ('awaiting_approval', 'pending', 'running');
CREATE INDEX jobs_certificate ON jobs(certificate_id, created_at DESC);
CREATE INDEX jobs_released_unfinished ON jobs(released_at) WHERE status IN ('pending', 'running');

CREATE TABLE approval_requests (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id uuid NOT NULL,
  job_id uuid NOT NULL UNIQUE,
  certificate_id uuid NOT NULL,
  profile_id uuid NOT NULL,
  requested_by text NOT NULL,
  requester_type text NOT NULL CHECK (requester_type IN ('user', 'service', 'system')),
  justification text NOT NULL CHECK (length(justification) BETWEEN 1 AND 4000),
  domains text[] NOT NULL,
  environment text NOT NULL,
  approvals_required integer NOT NULL CHECK (approvals_required BETWEEN 1 AND 10),
  -- Millisecond precision: keyset cursors carry JavaScript dates, so paging must compare like with like.
  requested_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
  expires_at timestamptz NOT NULL,
  escalate_at timestamptz,
  state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'approved', 'rejected', 'expired', 'voided')),
  decided_by text,
  decided_by_type text CHECK (decided_by_type IN ('user', 'service', 'system')),
  decided_at timestamptz,
  decision_note text,
  UNIQUE (id, org_id),
  UNIQUE (id, requested_by),
  FOREIGN KEY (job_id, org_id) REFERENCES jobs(id, org_id),
  FOREIGN KEY (certificate_id, org_id) REFERENCES certificates(id, org_id),
  FOREIGN KEY (profile_id, org_id) REFERENCES profiles(id, org_id),
  -- A terminal request always names who decided and when; a pending one never does.
  CONSTRAINT approval_decided_fields CHECK (
    (state = 'pending' AND decided_by IS NULL AND decided_at IS NULL AND decided_by_type IS NULL)
    OR (state <> 'pending' AND decided_by IS NOT NULL AND decided_at IS NOT NULL AND decided_by_type IS NOT NULL)
  ),
  -- Two-person integrity: the requester never approves or rejects its own request.
  CONSTRAINT approval_two_person CHECK (state NOT IN ('approved', 'rejected') OR decided_by <> requested_by)
);
CREATE INDEX approvals_org_requested ON approval_requests(org_id, requested_at DESC, id DESC);
CREATE INDEX approvals_org_state_requested ON approval_requests(org_id, state, requested_at DESC, id DESC);
CREATE INDEX approvals_pending_expiry ON approval_requests(expires_at) WHERE state = 'pending';

CREATE TABLE approval_votes (
  approval_id uuid NOT NULL,
  org_id uuid NOT NULL,
  voter_id uuid NOT NULL,
  voter_type text NOT NULL CHECK (voter_type IN ('user', 'service')),
  -- Copied from the request (and tied to it by the foreign key) so that the
  -- two-person rule is a plain CHECK constraint.
  requested_by text NOT NULL,
  note text,
  voted_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (approval_id, voter_id),
  FOREIGN KEY (approval_id, requested_by) REFERENCES approval_requests(id, requested_by),
  FOREIGN KEY (voter_id, org_id) REFERENCES principals(id, org_id),
  CONSTRAINT vote_two_person CHECK (voter_id::text <> requested_by)
);

CREATE TABLE certificate_versions (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id uuid NOT NULL,
  certificate_id uuid NOT NULL,
  -- Exactly one certificate per job, whatever the queue re-delivers.
  job_id uuid NOT NULL UNIQUE,
  issuer text NOT NULL,
  serial text NOT NULL,
  fingerprint_sha256 text NOT NULL UNIQUE,
  not_before timestamptz NOT NULL,
  not_after timestamptz NOT NULL,
  leaf_pem text NOT NULL,
  chain_pem text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (id, org_id),
  FOREIGN KEY (certificate_id, org_id) REFERENCES certificates(id, org_id),
  FOREIGN KEY (job_id, org_id) REFERENCES jobs(id, org_id)
);
CREATE INDEX certificate_versions_certificate ON certificate_versions(certificate_id, created_at DESC);

CREATE TABLE idempotency_keys (
  principal_id uuid NOT NULL,
  key text NOT NULL,
  org_id uuid NOT NULL,
  request_hash text NOT NULL,
  response_status integer NOT NULL,
  response_body jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (principal_id, key)
);

CREATE TABLE outbox (
  id bigserial PRIMARY KEY,
  org_id uuid NOT NULL,
  topic text NOT NULL,
  payload jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_heads (
  org_id uuid PRIMARY KEY REFERENCES orgs(id),
  seq bigint NOT NULL,
  hash bytea NOT NULL
);

CREATE TABLE audit_records (
  org_id uuid NOT NULL REFERENCES orgs(id),
  seq bigint NOT NULL CHECK (seq > 0),
  at timestamptz NOT NULL,
  actor_id text NOT NULL,
  actor_type text NOT NULL CHECK (actor_type IN ('user', 'service', 'system')),
  action text NOT NULL,
  resource_type text NOT NULL,
  resource_id text NOT NULL,
  details jsonb NOT NULL,
  prev_hash bytea NOT NULL CHECK (length(prev_hash) = 32),
  hash bytea NOT NULL CHECK (length(hash) = 32),
  PRIMARY KEY (org_id, seq)
);
CREATE INDEX audit_records_resource ON audit_records(org_id, resource_id, seq);
CREATE INDEX audit_records_action ON audit_records(org_id, action, seq);
`.execute(db);

  await sql`
-- Every org starts its own chain at seq 0 with an all-zero hash.
CREATE FUNCTION orgs_start_audit_chain() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $fn$
BEGIN
  INSERT INTO audit_heads(org_id, seq, hash) VALUES (NEW.id, 0, '\\x0000000000000000000000000000000000000000000000000000000000000000'::bytea);
  RETURN NEW;
END $fn$;
CREATE TRIGGER orgs_start_audit_chain AFTER INSERT ON orgs FOR EACH ROW EXECUTE FUNCTION orgs_start_audit_chain();

-- Appends one record to the org's chain: hash = SHA-256(prev_hash || seq as
-- 8-byte big-endian || canonical body). The body is the RFC 8785 canonical
-- JSON of the record's columns, computed by the ledger module; the verifier
-- recomputes it from the stored columns, so a body that does not match them
-- is caught there. Locking the head row serializes appends per org: the chain
-- cannot fork. SECURITY DEFINER: the services can append but never write the
-- table or the head directly.
CREATE FUNCTION audit_append(
  p_org uuid, p_at timestamptz, p_actor_id text, p_actor_type text, p_action text,
  p_resource_type text, p_resource_id text, p_details jsonb, p_body bytea
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

CREATE FUNCTION audit_records_reject_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  RAISE EXCEPTION 'audit_records is append-only: % is not allowed', TG_OP USING ERRCODE = 'insufficient_privilege';
END $fn$;
CREATE TRIGGER audit_records_no_update BEFORE UPDATE OR DELETE ON audit_records
  FOR EACH ROW EXECUTE FUNCTION audit_records_reject_change();
CREATE TRIGGER audit_records_no_truncate BEFORE TRUNCATE ON audit_records
  FOR EACH STATEMENT EXECUTE FUNCTION audit_records_reject_change();
-- ALWAYS: the triggers fire even under session_replication_role = replica.
ALTER TABLE audit_records ENABLE ALWAYS TRIGGER audit_records_no_update;
ALTER TABLE audit_records ENABLE ALWAYS TRIGGER audit_records_no_truncate;

-- Job transitions follow the state machine; the gate snapshot and the
-- identifying columns never change.
CREATE FUNCTION jobs_guard() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  v_profile_gated boolean;
BEGIN
  IF TG_OP = 'INSERT' THEN
    SELECT requires_approval INTO v_profile_gated FROM profiles WHERE id = NEW.profile_id;
    IF v_profile_gated AND NOT NEW.requires_approval THEN
      RAISE EXCEPTION 'a job of a profile that requires approval must require approval' USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.status NOT IN ('awaiting_approval', 'pending') OR (NEW.requires_approval AND NEW.status <> 'awaiting_approval') THEN
      RAISE EXCEPTION 'a new job starts awaiting_approval (gated) or pending (ungated), not %', NEW.status USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
  END IF;
  IF NEW.requires_approval IS DISTINCT FROM OLD.requires_approval OR NEW.certificate_id <> OLD.certificate_id
     OR NEW.org_id <> OLD.org_id OR NEW.public_key <> OLD.public_key OR NEW.requested_by <> OLD.requested_by THEN
    RAISE EXCEPTION 'job % identity columns are immutable', OLD.id USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.status <> OLD.status AND NOT (
       (OLD.status = 'awaiting_approval' AND NEW.status IN ('pending', 'cancelled'))
    OR (OLD.status = 'pending' AND NEW.status IN ('running', 'completed', 'failed'))
    OR (OLD.status = 'running' AND NEW.status IN ('pending', 'completed', 'failed'))
  ) THEN
    RAISE EXCEPTION 'job % cannot move from % to %', OLD.id, OLD.status, NEW.status USING ERRCODE = 'check_violation';
  END IF;
  IF OLD.status = 'awaiting_approval' AND NEW.status = 'pending' AND NOT EXISTS (
    SELECT 1 FROM approval_requests a WHERE a.job_id = NEW.id AND a.state = 'approved'
  ) THEN
    RAISE EXCEPTION 'job % cannot be released before its approval is approved', OLD.id USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $fn$;
CREATE TRIGGER jobs_guard BEFORE INSERT OR UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION jobs_guard();

-- Terminal approval states never change; the request's facts never change;
-- approval needs its quorum (or the bypass actor outside production).
CREATE FUNCTION approval_requests_guard() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  v_votes integer;
BEGIN
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION 'approval requests are never deleted' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF OLD.state <> 'pending' THEN
    RAISE EXCEPTION 'approval request % is % and terminal', OLD.id, OLD.state USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.job_id <> OLD.job_id OR NEW.requested_by <> OLD.requested_by OR NEW.org_id <> OLD.org_id
     OR NEW.approvals_required <> OLD.approvals_required OR NEW.requested_at <> OLD.requested_at
     OR NEW.environment <> OLD.environment OR NEW.domains <> OLD.domains THEN
    RAISE EXCEPTION 'approval request % facts are immutable', OLD.id USING ERRCODE = 'check_violation';
  END IF;
  -- Past its deadline a request can only expire (or be voided): never approved or rejected late.
  IF NEW.state IN ('approved', 'rejected') AND OLD.expires_at <= now() THEN
    RAISE EXCEPTION 'approval request % expired at %', OLD.id, OLD.expires_at USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.state = 'approved' THEN
    IF NEW.decided_by_type = 'system' THEN
      IF NEW.decided_by <> 'system-bypass' OR NEW.environment = 'production' THEN
        RAISE EXCEPTION 'approval request % can only be auto-approved by the bypass, never in production', OLD.id USING ERRCODE = 'check_violation';
      END IF;
    ELSE
      SELECT count(*) INTO v_votes FROM approval_votes WHERE approval_id = OLD.id;
      IF v_votes < OLD.approvals_required THEN
        RAISE EXCEPTION 'approval request % has % of % required votes', OLD.id, v_votes, OLD.approvals_required USING ERRCODE = 'check_violation';
      END IF;
    END IF;
  END IF;
  RETURN NEW;
END $fn$;
CREATE TRIGGER approval_requests_guard BEFORE UPDATE OR DELETE ON approval_requests
  FOR EACH ROW EXECUTE FUNCTION approval_requests_guard();

-- Votes are only cast on pending requests still within their deadline.
CREATE FUNCTION approval_votes_guard() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM approval_requests WHERE id = NEW.approval_id AND state = 'pending' AND expires_at > now()) THEN
    RAISE EXCEPTION 'approval request % is not pending or has expired', NEW.approval_id USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $fn$;
CREATE TRIGGER approval_votes_guard BEFORE INSERT ON approval_votes FOR EACH ROW EXECUTE FUNCTION approval_votes_guard();

-- The database's own refusal to record a certificate without the decision.
CREATE FUNCTION certificate_versions_guard() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  v_job jobs%ROWTYPE;
BEGIN
  SELECT * INTO v_job FROM jobs WHERE id = NEW.job_id;
  IF NOT FOUND OR v_job.certificate_id <> NEW.certificate_id THEN
    RAISE EXCEPTION 'certificate version for unknown job %', NEW.job_id USING ERRCODE = 'foreign_key_violation';
  END IF;
  IF v_job.status NOT IN ('pending', 'running') THEN
    RAISE EXCEPTION 'job % is %, not released for issuance', v_job.id, v_job.status USING ERRCODE = 'check_violation';
  END IF;
  IF v_job.requires_approval AND NOT EXISTS (
    SELECT 1 FROM approval_requests a WHERE a.job_id = v_job.id AND a.state = 'approved'
  ) THEN
    RAISE EXCEPTION 'job % requires an approved approval request before a certificate can be recorded', v_job.id
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $fn$;
CREATE TRIGGER certificate_versions_guard BEFORE INSERT ON certificate_versions
  FOR EACH ROW EXECUTE FUNCTION certificate_versions_guard();
ALTER TABLE certificate_versions ENABLE ALWAYS TRIGGER certificate_versions_guard;
ALTER TABLE approval_requests ENABLE ALWAYS TRIGGER approval_requests_guard;
ALTER TABLE jobs ENABLE ALWAYS TRIGGER jobs_guard;

-- Wake the approval relay as soon as a transaction that wrote outbox rows commits.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM pg_notify('countersign_outbox', '');
  RETURN NULL;
END $fn$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
`.execute(db);

  await sql`
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;
REVOKE ALL ON FUNCTION audit_append(uuid, timestamptz, text, text, text, text, text, jsonb, bytea) FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO countersign_app;
GRANT SELECT, INSERT, UPDATE ON orgs, principals, api_keys, profiles, certificates, jobs, approval_requests TO countersign_app;
GRANT SELECT, INSERT, DELETE ON profile_approvers TO countersign_app;
GRANT SELECT, INSERT ON approval_votes, certificate_versions TO countersign_app;
-- UPDATE is needed for SELECT ... FOR UPDATE SKIP LOCKED (the relay claims rows); rows are never changed.
GRANT SELECT, INSERT, UPDATE, DELETE ON outbox TO countersign_app;
GRANT SELECT, INSERT, DELETE ON idempotency_keys TO countersign_app;
GRANT USAGE ON SEQUENCE outbox_id_seq TO countersign_app;
GRANT SELECT ON audit_records, audit_heads TO countersign_app;
GRANT EXECUTE ON FUNCTION audit_append(uuid, timestamptz, text, text, text, text, text, jsonb, bytea) TO countersign_app;
`.execute(db);
}

export async function down(): Promise<void> {
  throw new Error('migrations are forward-only; restore from backup to go back');
}
