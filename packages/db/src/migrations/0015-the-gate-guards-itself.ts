import { type Kysely, sql } from 'kysely';

/**
 * The database's half of SPEC §1.6 (no single person, no other org, no
 * unproven producer), so that a bug in the services cannot hand one person a
 * certificate:
 *
 * Provenance. Every principal and credential records who created it
 * (`created_by`: a principal id or a system actor), and that never changes.
 * A credential created for a principal by someone else is an enrollment
 * credential; one the principal created for itself is its own. An own API key
 * names the credential it was minted with (`enrolled_via`), which must be a
 * live credential of the same principal; an enrollment credential mints an
 * own one at most once (`enrollment_used_at`, set in the same transaction).
 *
 * Votes and decisions. A vote row carries the credential it was cast with,
 * and the guard accepts it only when that credential is the voter's own and
 * live, and the voter is not related to the requester by creation (one
 * created the other, directly or through principals it created). A request
 * decided by a principal carries that principal's own credential too.
 *
 * What was approved is what is issued. An approval request is inserted only
 * pending, for a gated job awaiting approval, with that job's names,
 * requester, profile, the profile's environment and at least its quorum; a
 * job's names, key, profile and kind never change; a certificate version
 * carries the names it was signed with, and they must equal the names its
 * approval request showed to the approvers.
 *
 * Bypass is a per-profile permission (`allow_bypass`) that only a
 * non-production environment can hold, checked when the bypass actor decides.
 *
 * Existing rows: `created_by` is taken from each row's creation audit record
 * (`system-migration` when there is none). Keys an admin minted for other
 * principals become enrollment keys: their holders mint their own before
 * they can vote again (docs/security.md, "Upgrading").
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
-- A text that is a uuid, or NULL: actor ids are principal ids or system actor names.
CREATE FUNCTION as_uuid(p text) RETURNS uuid LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
  SELECT CASE WHEN p ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN p::uuid END
$fn$;

-- Environments whose profiles may allow the approval bypass; every other name counts as production.
-- packages/domain/src/policy.ts holds the same list (a test compares them).
CREATE FUNCTION is_bypass_environment(p text) RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
  SELECT p IN ('development', 'dev', 'test', 'testing', 'ci', 'sandbox', 'local', 'qa', 'staging')
$fn$;

ALTER TABLE principals ADD COLUMN created_by text;
UPDATE principals p SET created_by = coalesce(
  (SELECT r.actor_id FROM audit_records r
    WHERE r.org_id = p.org_id AND r.resource_id = p.id::text AND r.action = 'principal_created'
    ORDER BY r.seq LIMIT 1),
  'system-migration');
ALTER TABLE principals ALTER COLUMN created_by SET NOT NULL;
ALTER TABLE principals ADD CONSTRAINT principals_created_by_shape
  CHECK (created_by ~ '^system-[a-z-]+$' OR as_uuid(created_by) IS NOT NULL);

ALTER TABLE api_keys ADD COLUMN created_by text;
UPDATE api_keys k SET created_by = coalesce(
  (SELECT r.actor_id FROM audit_records r
    WHERE r.org_id = k.org_id AND r.resource_id = k.id::text AND r.action = 'api_key_created'
    ORDER BY r.seq LIMIT 1),
  'system-migration');
ALTER TABLE api_keys ALTER COLUMN created_by SET NOT NULL;
ALTER TABLE api_keys ADD COLUMN enrolled_via_kind text CHECK (enrolled_via_kind IN ('api_key', 'client_certificate'));
ALTER TABLE api_keys ADD COLUMN enrolled_via uuid;
ALTER TABLE api_keys ADD COLUMN enrollment_used_at timestamptz;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_enrolled_via_pair CHECK ((enrolled_via IS NULL) = (enrolled_via_kind IS NULL));

ALTER TABLE client_certificates ADD COLUMN enrollment_used_at timestamptz;
ALTER TABLE client_certificates ADD COLUMN enrolled_via_kind text CHECK (enrolled_via_kind IN ('api_key', 'client_certificate'));
ALTER TABLE client_certificates ADD COLUMN enrolled_via uuid;
ALTER TABLE client_certificates ADD CONSTRAINT client_certificates_enrolled_via_pair
  CHECK ((enrolled_via IS NULL) = (enrolled_via_kind IS NULL));

-- Related by creation: the same principal, or one created the other (directly or through principals it created).
-- PL/pgSQL walking created_by one primary-key lookup at a time: its plans are cached per session, where a
-- recursive SQL function was planned on every call (0.35 ms, three calls per vote; now ~0.03 ms). Creators
-- exist before what they create, so a chain cannot loop; the step bound is a backstop.
CREATE FUNCTION principals_related(a text, b text) RETURNS boolean LANGUAGE plpgsql STABLE AS $fn$
DECLARE
  v_from text;
  v_to text;
  v_cur uuid;
  v_creator text;
  v_steps integer;
BEGIN
  IF a = b THEN
    RETURN true;
  END IF;
  FOR v_pass IN 1..2 LOOP
    IF v_pass = 1 THEN v_from := a; v_to := b; ELSE v_from := b; v_to := a; END IF;
    v_cur := as_uuid(v_from);
    v_steps := 0;
    WHILE v_cur IS NOT NULL AND v_steps < 64 LOOP
      SELECT created_by INTO v_creator FROM principals WHERE id = v_cur;
      EXIT WHEN NOT FOUND;
      IF v_creator = v_to THEN
        RETURN true;
      END IF;
      v_cur := as_uuid(v_creator);
      v_steps := v_steps + 1;
    END LOOP;
  END LOOP;
  RETURN false;
END $fn$;

-- A live credential that the principal created for itself (PL/pgSQL for its cached plans, as above).
CREATE FUNCTION credential_is_own(p_kind text, p_id uuid, p_principal uuid) RETURNS boolean LANGUAGE plpgsql STABLE AS $fn$
BEGIN
  IF p_kind = 'api_key' THEN
    RETURN EXISTS (
      SELECT 1 FROM api_keys k
       WHERE k.id = p_id AND k.principal_id = p_principal AND k.created_by = p_principal::text
         AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now()));
  ELSIF p_kind = 'client_certificate' THEN
    RETURN EXISTS (
      SELECT 1 FROM client_certificates c
       WHERE c.id = p_id AND c.principal_id = p_principal AND c.created_by = p_principal::text);
  END IF;
  RETURN false;
END $fn$;

-- Two enabled admins of the org, neither created (directly or not) by the other.
CREATE FUNCTION org_two_person_ready(p_org uuid) RETURNS boolean LANGUAGE sql STABLE AS $fn$
  SELECT EXISTS (
    SELECT 1 FROM principals a JOIN principals b ON b.org_id = a.org_id AND b.id > a.id
     WHERE a.org_id = p_org AND a.role = 'admin' AND b.role = 'admin'
       AND a.disabled_at IS NULL AND b.disabled_at IS NULL
       AND NOT principals_related(a.id::text, b.id::text))
$fn$;

-- A principal's creator is a system actor or a principal of the same org; its identity never changes.
CREATE FUNCTION principals_guard() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF as_uuid(NEW.created_by) IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM principals c WHERE c.id = as_uuid(NEW.created_by) AND c.org_id = NEW.org_id) THEN
      RAISE EXCEPTION 'principal % names a creator that is not a principal of its org', NEW.name
        USING ERRCODE = 'check_violation', CONSTRAINT = 'principals_creator';
    END IF;
    RETURN NEW;
  END IF;
  IF NEW.created_by <> OLD.created_by OR NEW.org_id <> OLD.org_id OR NEW.id <> OLD.id OR NEW.kind <> OLD.kind THEN
    RAISE EXCEPTION 'principal % identity and provenance are immutable', OLD.id
      USING ERRCODE = 'check_violation', CONSTRAINT = 'principals_immutable';
  END IF;
  RETURN NEW;
END $fn$;
CREATE TRIGGER principals_guard BEFORE INSERT OR UPDATE ON principals FOR EACH ROW EXECUTE FUNCTION principals_guard();
ALTER TABLE principals ENABLE ALWAYS TRIGGER principals_guard;

-- A new own credential (created_by = its principal) names the credential it was minted with: a live credential
-- of the same principal. An enrollment credential mints once: its enrollment_used_at must have been set in this
-- very transaction (now() is the transaction's start). A credential made for someone else names a creator of the
-- same org (or a system actor).
CREATE FUNCTION credential_provenance_ok(
  p_org uuid, p_principal uuid, p_created_by text, p_via_kind text, p_via uuid
) RETURNS boolean LANGUAGE plpgsql STABLE AS $fn$
DECLARE
  v_used timestamptz;
  v_live boolean;
BEGIN
  IF p_created_by <> p_principal::text THEN
    RETURN as_uuid(p_created_by) IS NULL
        OR EXISTS (SELECT 1 FROM principals c WHERE c.id = as_uuid(p_created_by) AND c.org_id = p_org);
  END IF;
  IF p_via IS NULL THEN
    RETURN false;
  END IF;
  IF p_via_kind = 'api_key' THEN
    SELECT CASE WHEN k.created_by = k.principal_id::text THEN NULL ELSE coalesce(k.enrollment_used_at, '-infinity') END,
           k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())
      INTO v_used, v_live
      FROM api_keys k WHERE k.id = p_via AND k.principal_id = p_principal;
  ELSE
    SELECT CASE WHEN c.created_by = c.principal_id::text THEN NULL ELSE coalesce(c.enrollment_used_at, '-infinity') END, true
      INTO v_used, v_live
      FROM client_certificates c WHERE c.id = p_via AND c.principal_id = p_principal;
  END IF;
  RETURN FOUND AND v_live AND (v_used IS NULL OR v_used = now());
END $fn$;

-- Keys: provenance and secret are immutable; revocation and enrollment use happen once.
CREATE FUNCTION api_keys_guard() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP = 'UPDATE' THEN
    IF NEW.created_by <> OLD.created_by OR NEW.principal_id <> OLD.principal_id OR NEW.org_id <> OLD.org_id
       OR NEW.secret_hash <> OLD.secret_hash OR NEW.enrolled_via IS DISTINCT FROM OLD.enrolled_via
       -- An expiry may only come sooner (an operator cutting a key short), never later.
       OR (NEW.expires_at IS DISTINCT FROM OLD.expires_at
           AND NOT (NEW.expires_at IS NOT NULL AND (OLD.expires_at IS NULL OR NEW.expires_at < OLD.expires_at)))
       OR NEW.created_at <> OLD.created_at
       OR (OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at)
       OR (OLD.enrollment_used_at IS NOT NULL AND NEW.enrollment_used_at IS DISTINCT FROM OLD.enrollment_used_at) THEN
      RAISE EXCEPTION 'API key % is immutable but for its revocation and its first enrollment', OLD.id
        USING ERRCODE = 'check_violation', CONSTRAINT = 'api_keys_immutable';
    END IF;
    RETURN NEW;
  END IF;
  IF NEW.enrollment_used_at IS NOT NULL
     OR NOT credential_provenance_ok(NEW.org_id, NEW.principal_id, NEW.created_by, NEW.enrolled_via_kind, NEW.enrolled_via) THEN
    RAISE EXCEPTION 'API key %: an own key is minted with a live credential of the same principal (an enrollment credential mints once); a key for someone else names a creator of the org', NEW.id
      USING ERRCODE = 'check_violation', CONSTRAINT = 'api_keys_enrollment';
  END IF;
  RETURN NEW;
END $fn$;
CREATE TRIGGER api_keys_guard BEFORE INSERT OR UPDATE ON api_keys FOR EACH ROW EXECUTE FUNCTION api_keys_guard();
ALTER TABLE api_keys ENABLE ALWAYS TRIGGER api_keys_guard;

CREATE FUNCTION client_certificates_guard() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NEW.enrollment_used_at IS NOT NULL
       OR NOT credential_provenance_ok(NEW.org_id, NEW.principal_id, NEW.created_by, NEW.enrolled_via_kind, NEW.enrolled_via) THEN
      RAISE EXCEPTION 'client certificate binding %: an own binding is made with a live credential of the same principal (an enrollment credential once); one for someone else names a creator of the org', NEW.id
        USING ERRCODE = 'check_violation', CONSTRAINT = 'client_certificates_enrollment';
    END IF;
    RETURN NEW;
  END IF;
  IF NEW.created_by <> OLD.created_by OR NEW.principal_id <> OLD.principal_id OR NEW.org_id <> OLD.org_id
     OR NEW.match_kind <> OLD.match_kind OR NEW.match_value <> OLD.match_value
     OR NEW.enrolled_via IS DISTINCT FROM OLD.enrolled_via
     OR (OLD.enrollment_used_at IS NOT NULL AND NEW.enrollment_used_at IS DISTINCT FROM OLD.enrollment_used_at) THEN
    RAISE EXCEPTION 'client certificate binding % is immutable but for its first enrollment', OLD.id
      USING ERRCODE = 'check_violation', CONSTRAINT = 'client_certificates_immutable';
  END IF;
  RETURN NEW;
END $fn$;
CREATE TRIGGER client_certificates_guard BEFORE INSERT OR UPDATE ON client_certificates FOR EACH ROW EXECUTE FUNCTION client_certificates_guard();
ALTER TABLE client_certificates ENABLE ALWAYS TRIGGER client_certificates_guard;

ALTER TABLE approval_votes ADD COLUMN credential_kind text CHECK (credential_kind IN ('api_key', 'client_certificate'));
ALTER TABLE approval_votes ADD COLUMN credential_id uuid;
-- NOT VALID: votes cast before this migration carry none; every new vote must.
ALTER TABLE approval_votes ADD CONSTRAINT vote_carries_credential
  CHECK (credential_kind IS NOT NULL AND credential_id IS NOT NULL) NOT VALID;

ALTER TABLE approval_requests ADD COLUMN decided_credential_kind text
  CHECK (decided_credential_kind IN ('api_key', 'client_certificate'));
ALTER TABLE approval_requests ADD COLUMN decided_credential_id uuid;
ALTER TABLE approval_requests ADD CONSTRAINT approval_decision_credential
  CHECK (state = 'pending' OR decided_by_type NOT IN ('user', 'service')
         OR (decided_credential_kind IS NOT NULL AND decided_credential_id IS NOT NULL)) NOT VALID;

ALTER TABLE profiles ADD COLUMN allow_bypass boolean NOT NULL DEFAULT false;
ALTER TABLE profiles ADD CONSTRAINT profiles_bypass_not_production CHECK (NOT allow_bypass OR is_bypass_environment(environment));

ALTER TABLE certificate_versions ADD COLUMN sans text[];
UPDATE certificate_versions v SET sans = j.sans FROM jobs j WHERE j.id = v.job_id;
ALTER TABLE certificate_versions ALTER COLUMN sans SET NOT NULL;
`.execute(db);

  await sql`
-- Votes only on pending requests within their deadline, with the voter's own live credential, never by a
-- principal related by creation to the requester.
CREATE OR REPLACE FUNCTION approval_votes_guard() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM approval_requests WHERE id = NEW.approval_id AND state = 'pending' AND expires_at > now()) THEN
    RAISE EXCEPTION 'approval request % is not pending or has expired', NEW.approval_id USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.voter_id::text = NEW.requested_by THEN
    RAISE EXCEPTION 'two-person integrity: the requester never votes on its own request (vote_two_person)'
      USING ERRCODE = 'check_violation', CONSTRAINT = 'vote_two_person';
  END IF;
  IF NOT credential_is_own(NEW.credential_kind, NEW.credential_id, NEW.voter_id) THEN
    RAISE EXCEPTION 'a vote is cast with a live credential the voter created for itself, never an enrollment credential'
      USING ERRCODE = 'check_violation', CONSTRAINT = 'vote_own_credential';
  END IF;
  IF principals_related(NEW.voter_id::text, NEW.requested_by) THEN
    RAISE EXCEPTION 'two-person integrity: principal % is related by creation to the requester %', NEW.voter_id, NEW.requested_by
      USING ERRCODE = 'check_violation', CONSTRAINT = 'vote_provenance';
  END IF;
  RETURN NEW;
END $fn$;

-- Inserted only pending, for the gated job it describes; terminal states never change; facts never change;
-- approval needs its quorum (or the bypass actor on a profile that allows it); a principal decides only with
-- its own credential and never on a request of a principal related to it by creation.
CREATE OR REPLACE FUNCTION approval_requests_guard() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  v_votes integer;
BEGIN
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION 'approval requests are never deleted' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF TG_OP = 'INSERT' THEN
    IF NEW.state <> 'pending' THEN
      RAISE EXCEPTION 'an approval request starts pending, not %', NEW.state
        USING ERRCODE = 'check_violation', CONSTRAINT = 'approval_insert_pending';
    END IF;
    RETURN NEW;
  END IF;
  IF OLD.state <> 'pending' THEN
    RAISE EXCEPTION 'approval request % is % and terminal', OLD.id, OLD.state USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.job_id <> OLD.job_id OR NEW.requested_by <> OLD.requested_by OR NEW.org_id <> OLD.org_id
     OR NEW.approvals_required <> OLD.approvals_required OR NEW.requested_at <> OLD.requested_at
     OR NEW.environment <> OLD.environment OR NEW.domains <> OLD.domains OR NEW.profile_id <> OLD.profile_id
     OR NEW.certificate_id <> OLD.certificate_id OR NEW.justification <> OLD.justification THEN
    RAISE EXCEPTION 'approval request % facts are immutable', OLD.id USING ERRCODE = 'check_violation';
  END IF;
  -- Past its deadline a request can only expire (or be voided): never approved or rejected late.
  IF NEW.state IN ('approved', 'rejected') AND OLD.expires_at <= now() THEN
    RAISE EXCEPTION 'approval request % expired at %', OLD.id, OLD.expires_at USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.state = 'approved' THEN
    IF NEW.decided_by_type = 'system' THEN
      IF NEW.decided_by <> 'system-bypass' OR NOT is_bypass_environment(OLD.environment) OR NOT EXISTS (
           SELECT 1 FROM profiles p WHERE p.id = OLD.profile_id AND p.allow_bypass AND is_bypass_environment(p.environment)) THEN
        RAISE EXCEPTION 'approval request % can only be auto-approved by the bypass, on a profile that allows it', OLD.id
          USING ERRCODE = 'check_violation', CONSTRAINT = 'approval_bypass';
      END IF;
    ELSE
      SELECT count(*) INTO v_votes FROM approval_votes WHERE approval_id = OLD.id;
      IF v_votes < OLD.approvals_required THEN
        RAISE EXCEPTION 'approval request % has % of % required votes', OLD.id, v_votes, OLD.approvals_required USING ERRCODE = 'check_violation';
      END IF;
    END IF;
  END IF;
  IF NEW.state IN ('approved', 'rejected') AND NEW.decided_by = OLD.requested_by THEN
    RAISE EXCEPTION 'two-person integrity: the requester never decides its own request (approval_two_person)'
      USING ERRCODE = 'check_violation', CONSTRAINT = 'approval_two_person';
  END IF;
  IF NEW.state <> 'pending' AND NEW.decided_by_type IN ('user', 'service') THEN
    IF NOT credential_is_own(NEW.decided_credential_kind, NEW.decided_credential_id, as_uuid(NEW.decided_by)) THEN
      RAISE EXCEPTION 'approval request % is decided with a live credential the decider created for itself', OLD.id
        USING ERRCODE = 'check_violation', CONSTRAINT = 'approval_decision_own_credential';
    END IF;
    IF NEW.state IN ('approved', 'rejected') AND principals_related(NEW.decided_by, OLD.requested_by) THEN
      RAISE EXCEPTION 'two-person integrity: % is related by creation to the requester %', NEW.decided_by, OLD.requested_by
        USING ERRCODE = 'check_violation', CONSTRAINT = 'approval_provenance';
    END IF;
  END IF;
  RETURN NEW;
END $fn$;
DROP TRIGGER approval_requests_guard ON approval_requests;
CREATE TRIGGER approval_requests_guard BEFORE INSERT OR UPDATE OR DELETE ON approval_requests
  FOR EACH ROW EXECUTE FUNCTION approval_requests_guard();
ALTER TABLE approval_requests ENABLE ALWAYS TRIGGER approval_requests_guard;

-- A new request describes its job exactly as the job was created, and at least the profile's quorum. After the
-- statement (the submission writes job and request in one statement), so the job is visible.
CREATE FUNCTION approval_requests_match_job() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  v_job jobs%ROWTYPE;
  v_profile profiles%ROWTYPE;
BEGIN
  SELECT * INTO v_job FROM jobs WHERE id = NEW.job_id;
  SELECT * INTO v_profile FROM profiles WHERE id = NEW.profile_id;
  IF v_job.id IS NULL OR v_profile.id IS NULL OR v_job.org_id <> NEW.org_id OR NOT v_job.requires_approval
     OR v_job.status <> 'awaiting_approval' OR v_job.requested_by <> NEW.requested_by
     OR v_job.certificate_id <> NEW.certificate_id OR v_job.profile_id <> NEW.profile_id
     OR NEW.domains <> v_job.sans OR NEW.environment <> v_profile.environment
     OR NEW.approvals_required < v_profile.approvals_required THEN
    RAISE EXCEPTION 'approval request % does not describe its job % as created (names, requester, profile, environment, quorum)', NEW.id, NEW.job_id
      USING ERRCODE = 'check_violation', CONSTRAINT = 'approval_matches_job';
  END IF;
  RETURN NULL;
END $fn$;
CREATE TRIGGER approval_requests_match_job AFTER INSERT ON approval_requests
  FOR EACH ROW EXECUTE FUNCTION approval_requests_match_job();
ALTER TABLE approval_requests ENABLE ALWAYS TRIGGER approval_requests_match_job;

-- Job transitions follow the state machine; the gate snapshot, the names, key, profile and kind never change.
CREATE OR REPLACE FUNCTION jobs_guard() RETURNS trigger LANGUAGE plpgsql AS $fn$
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
     OR NEW.org_id <> OLD.org_id OR NEW.public_key <> OLD.public_key OR NEW.requested_by <> OLD.requested_by
     OR NEW.common_name <> OLD.common_name OR NEW.sans <> OLD.sans OR NEW.profile_id <> OLD.profile_id
     OR NEW.kind <> OLD.kind OR NEW.requester_type <> OLD.requester_type THEN
    RAISE EXCEPTION 'job % identity columns are immutable', OLD.id
      USING ERRCODE = 'check_violation', CONSTRAINT = 'jobs_immutable';
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

-- The database's own refusal to record a certificate without the decision, or with other names than approved.
CREATE OR REPLACE FUNCTION certificate_versions_guard() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  v_job jobs%ROWTYPE;
  v_domains text[];
BEGIN
  SELECT * INTO v_job FROM jobs WHERE id = NEW.job_id;
  IF NOT FOUND OR v_job.certificate_id <> NEW.certificate_id OR v_job.org_id <> NEW.org_id THEN
    RAISE EXCEPTION 'certificate version for unknown job %', NEW.job_id USING ERRCODE = 'foreign_key_violation';
  END IF;
  IF v_job.status NOT IN ('pending', 'running') THEN
    RAISE EXCEPTION 'job % is %, not released for issuance', v_job.id, v_job.status USING ERRCODE = 'check_violation';
  END IF;
  IF v_job.requires_approval THEN
    SELECT a.domains INTO v_domains FROM approval_requests a WHERE a.job_id = v_job.id AND a.state = 'approved';
    IF NOT FOUND THEN
      RAISE EXCEPTION 'job % requires an approved approval request before a certificate can be recorded', v_job.id
        USING ERRCODE = 'check_violation';
    END IF;
  ELSE
    v_domains := v_job.sans;
  END IF;
  -- The same set of names (both contain the other), and at least one.
  IF v_domains IS NULL OR NOT (NEW.sans @> v_domains AND v_domains @> NEW.sans) OR cardinality(NEW.sans) = 0 THEN
    RAISE EXCEPTION 'certificate version of job % names [%], not the approved [%]', v_job.id,
      array_to_string(NEW.sans, ', '), array_to_string(v_domains, ', ')
      USING ERRCODE = 'check_violation', CONSTRAINT = 'certificate_versions_names_approved';
  END IF;
  RETURN NEW;
END $fn$;
`.execute(db);

  await sql`
-- Only the columns a service legitimately changes; provenance, secrets and identity stay as written.
REVOKE UPDATE ON principals, api_keys FROM countersign_app;
GRANT UPDATE (email, role, disabled_at) ON principals TO countersign_app;
GRANT UPDATE (revoked_at, enrollment_used_at) ON api_keys TO countersign_app;
GRANT UPDATE (enrollment_used_at) ON client_certificates TO countersign_app;
`.execute(db);
}

export async function down(): Promise<void> {
  throw new Error('migrations are forward-only; restore from backup to go back');
}
