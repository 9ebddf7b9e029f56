import { type Kysely, sql } from 'kysely';

/**
 * The gate guards its own configuration (SPEC §1.6). Once an org is two-person
 * ready (org_two_person_ready: two enabled admins, neither created by the
 * other), a change that could weaken the gate is a configuration request that
 * another admin approves: a new or promoted admin or operator, a demoted or
 * disabled admin, a new profile, a weaker profile (ungated, fewer approvals,
 * wider names, longer validity, bypass, another environment or issuer), a new
 * approver, a credential made for someone else.
 *
 * The database enforces it on its own: each of those writes passes only when
 * the org is not yet ready, or when a configuration request for exactly that
 * change (kind, target and the changed values) was approved in the same
 * transaction (its decided_at is the transaction's now(), which the guard
 * sets itself), so an approval cannot be replayed later or stretched to
 * another change. The request's decider must be another enabled admin of the
 * org, deciding with its own credential, not related to the requester by
 * creation. Which profile changes count is classified here and, for the
 * answers, in packages/domain/src/configuration.ts (a test compares them).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
CREATE TABLE config_requests (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id uuid NOT NULL REFERENCES orgs(id),
  kind text NOT NULL CHECK (kind IN ('principal_create', 'principal_update', 'profile_create', 'profile_update',
                                     'api_key_create', 'client_certificate_create', 'intake_key_create')),
  -- The row the change creates or changes (a profile's for its approvers); ids of new rows are chosen up front.
  target_id uuid NOT NULL,
  -- Exactly what is applied when approved (secrets only as their hashes).
  change jsonb NOT NULL,
  -- What about it weakens the gate, as the approver reads it.
  summary text NOT NULL CHECK (length(summary) BETWEEN 1 AND 4000),
  justification text NOT NULL CHECK (length(justification) BETWEEN 1 AND 4000),
  requested_by text NOT NULL,
  requested_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
  expires_at timestamptz NOT NULL,
  state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'approved', 'rejected', 'expired', 'cancelled')),
  decided_by text,
  decided_by_type text CHECK (decided_by_type IN ('user', 'service', 'system')),
  decided_at timestamptz,
  decision_note text,
  decided_credential_kind text CHECK (decided_credential_kind IN ('api_key', 'client_certificate')),
  decided_credential_id uuid,
  UNIQUE (id, org_id),
  CONSTRAINT config_decided_fields CHECK (
    (state = 'pending' AND decided_by IS NULL AND decided_at IS NULL AND decided_by_type IS NULL)
    OR (state <> 'pending' AND decided_by IS NOT NULL AND decided_at IS NOT NULL AND decided_by_type IS NOT NULL)
  ),
  CONSTRAINT config_two_person CHECK (state NOT IN ('approved', 'rejected') OR decided_by <> requested_by)
);
CREATE INDEX config_requests_org_requested ON config_requests(org_id, requested_at DESC, id DESC);
CREATE INDEX config_requests_pending_expiry ON config_requests(expires_at) WHERE state = 'pending';
CREATE INDEX config_requests_approved_target ON config_requests(target_id, decided_at) WHERE state = 'approved';

CREATE FUNCTION config_requests_guard() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION 'configuration requests are never deleted' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF TG_OP = 'INSERT' THEN
    IF NEW.state <> 'pending' THEN
      RAISE EXCEPTION 'a configuration request starts pending, not %', NEW.state
        USING ERRCODE = 'check_violation', CONSTRAINT = 'config_insert_pending';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM principals p WHERE p.id = as_uuid(NEW.requested_by) AND p.org_id = NEW.org_id AND p.role = 'admin') THEN
      RAISE EXCEPTION 'a configuration request is made by an admin of its org'
        USING ERRCODE = 'check_violation', CONSTRAINT = 'config_requester_admin';
    END IF;
    RETURN NEW;
  END IF;
  IF OLD.state <> 'pending' THEN
    RAISE EXCEPTION 'configuration request % is % and terminal', OLD.id, OLD.state USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.org_id <> OLD.org_id OR NEW.kind <> OLD.kind OR NEW.target_id <> OLD.target_id OR NEW.change <> OLD.change
     OR NEW.summary <> OLD.summary OR NEW.justification <> OLD.justification OR NEW.requested_by <> OLD.requested_by
     -- A deadline may come sooner (an operator closing the window), never later.
     OR NEW.requested_at <> OLD.requested_at OR NEW.expires_at > OLD.expires_at THEN
    RAISE EXCEPTION 'configuration request % facts are immutable', OLD.id USING ERRCODE = 'check_violation';
  END IF;
  -- The decision's time is the transaction's, so the change it authorizes can only be applied alongside it.
  IF NEW.state <> 'pending' THEN
    NEW.decided_at := now();
  END IF;
  IF NEW.state IN ('approved', 'rejected') THEN
    IF OLD.expires_at <= now() THEN
      RAISE EXCEPTION 'configuration request % expired at %', OLD.id, OLD.expires_at USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.decided_by_type NOT IN ('user', 'service')
       OR NOT EXISTS (SELECT 1 FROM principals p WHERE p.id = as_uuid(NEW.decided_by) AND p.org_id = OLD.org_id
                       AND p.role = 'admin' AND p.disabled_at IS NULL)
       OR NOT credential_is_own(NEW.decided_credential_kind, NEW.decided_credential_id, as_uuid(NEW.decided_by))
       OR principals_related(NEW.decided_by, OLD.requested_by) THEN
      RAISE EXCEPTION 'configuration request % is decided by another enabled admin of the org, with its own credential, not related by creation to the requester', OLD.id
        USING ERRCODE = 'check_violation', CONSTRAINT = 'config_decider';
    END IF;
  ELSIF NEW.state = 'cancelled' AND NEW.decided_by_type <> 'system' AND NEW.decided_by <> OLD.requested_by
        AND NOT EXISTS (SELECT 1 FROM principals p WHERE p.id = as_uuid(NEW.decided_by) AND p.org_id = OLD.org_id AND p.role = 'admin') THEN
    RAISE EXCEPTION 'configuration request % is cancelled by its requester or an admin', OLD.id USING ERRCODE = 'check_violation';
  ELSIF NEW.state = 'expired' AND (NEW.decided_by_type <> 'system' OR OLD.expires_at > now()) THEN
    RAISE EXCEPTION 'configuration request % expires only past its deadline, by the reaper', OLD.id USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $fn$;
CREATE TRIGGER config_requests_guard BEFORE INSERT OR UPDATE OR DELETE ON config_requests
  FOR EACH ROW EXECUTE FUNCTION config_requests_guard();
ALTER TABLE config_requests ENABLE ALWAYS TRIGGER config_requests_guard;

-- May this gate-weakening write happen? Yes while the org is not two-person ready; otherwise only with a
-- configuration request of this kind for this target, approved in this transaction, whose change holds p_match.
CREATE FUNCTION config_change_authorized(p_org uuid, p_kinds text[], p_target uuid, p_match jsonb) RETURNS boolean
LANGUAGE sql STABLE AS $fn$
  SELECT NOT org_two_person_ready(p_org) OR EXISTS (
    SELECT 1 FROM config_requests c
     WHERE c.target_id = p_target AND c.state = 'approved' AND c.decided_at = now()
       AND c.org_id = p_org AND c.kind = ANY (p_kinds) AND c.change @> p_match)
$fn$;

CREATE FUNCTION gate_refused(p_what text) RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
  RAISE EXCEPTION 'the org is two-person ready: % needs a configuration request approved by another admin', p_what
    USING ERRCODE = 'check_violation', CONSTRAINT = 'config_gate';
END $fn$;

CREATE FUNCTION principals_gate() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NEW.role IN ('admin', 'operator') AND NEW.created_by !~ '^system-'
       AND NOT config_change_authorized(NEW.org_id, ARRAY['principal_create'], NEW.id, jsonb_build_object('role', NEW.role, 'name', NEW.name)) THEN
      PERFORM gate_refused(format('a new %s', NEW.role));
    END IF;
    RETURN NEW;
  END IF;
  IF (NEW.role IN ('admin', 'operator') AND NEW.disabled_at IS NULL
      AND (OLD.disabled_at IS NOT NULL OR OLD.role NOT IN ('admin', 'operator') OR (NEW.role = 'admin' AND OLD.role <> 'admin')))
     OR (OLD.role = 'admin' AND OLD.disabled_at IS NULL AND (NEW.role <> 'admin' OR NEW.disabled_at IS NOT NULL)) THEN
    IF NOT config_change_authorized(NEW.org_id, ARRAY['principal_update'], NEW.id,
             jsonb_build_object('role', NEW.role, 'disabled', NEW.disabled_at IS NOT NULL)) THEN
      PERFORM gate_refused('a principal change that adds a decider or removes an admin');
    END IF;
  END IF;
  RETURN NEW;
END $fn$;
CREATE TRIGGER principals_gate BEFORE INSERT OR UPDATE ON principals FOR EACH ROW EXECUTE FUNCTION principals_gate();
ALTER TABLE principals ENABLE ALWAYS TRIGGER principals_gate;

CREATE FUNCTION profiles_gate() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
  v_match jsonb := jsonb_build_object(
    'requires_approval', NEW.requires_approval, 'approvals_required', NEW.approvals_required,
    'allow_bypass', NEW.allow_bypass, 'validity_days', NEW.validity_days, 'environment', NEW.environment,
    'issuer', NEW.issuer, 'allowed_domains', to_jsonb(NEW.allowed_domains));
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NOT config_change_authorized(NEW.org_id, ARRAY['profile_create'], NEW.id, v_match) THEN
      PERFORM gate_refused('a new profile');
    END IF;
    RETURN NEW;
  END IF;
  IF (OLD.requires_approval AND NOT NEW.requires_approval) OR NEW.approvals_required < OLD.approvals_required
     OR (NEW.allow_bypass AND NOT OLD.allow_bypass) OR NEW.validity_days > OLD.validity_days
     OR NOT (NEW.allowed_domains <@ OLD.allowed_domains) OR NEW.environment <> OLD.environment OR NEW.issuer <> OLD.issuer THEN
    IF NOT config_change_authorized(NEW.org_id, ARRAY['profile_update'], NEW.id, v_match) THEN
      PERFORM gate_refused(format('weakening profile %s', OLD.name));
    END IF;
  END IF;
  RETURN NEW;
END $fn$;
CREATE TRIGGER profiles_gate BEFORE INSERT OR UPDATE ON profiles FOR EACH ROW EXECUTE FUNCTION profiles_gate();
ALTER TABLE profiles ENABLE ALWAYS TRIGGER profiles_gate;

CREATE FUNCTION profile_approvers_gate() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  -- An approver already listed is no change (the insert will do nothing).
  IF EXISTS (SELECT 1 FROM profile_approvers WHERE profile_id = NEW.profile_id AND principal_id = NEW.principal_id) THEN
    RETURN NEW;
  END IF;
  IF NOT config_change_authorized(NEW.org_id, ARRAY['profile_create', 'profile_update'], NEW.profile_id,
           jsonb_build_object('approvers', jsonb_build_array(NEW.principal_id::text))) THEN
    PERFORM gate_refused('a new approver');
  END IF;
  RETURN NEW;
END $fn$;
CREATE TRIGGER profile_approvers_gate BEFORE INSERT ON profile_approvers FOR EACH ROW EXECUTE FUNCTION profile_approvers_gate();
ALTER TABLE profile_approvers ENABLE ALWAYS TRIGGER profile_approvers_gate;

-- A credential an admin makes for someone else (an enrollment credential). System actors (the bootstrap run with
-- database access) are the installation, outside any org's authority.
CREATE FUNCTION api_keys_gate() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF NEW.created_by <> NEW.principal_id::text AND NEW.created_by !~ '^system-'
     AND NOT config_change_authorized(NEW.org_id, ARRAY['api_key_create'], NEW.id,
               jsonb_build_object('secret_hash', encode(NEW.secret_hash, 'hex'), 'principal_id', NEW.principal_id::text)) THEN
    PERFORM gate_refused('a key for someone else');
  END IF;
  RETURN NEW;
END $fn$;
CREATE TRIGGER api_keys_gate BEFORE INSERT ON api_keys FOR EACH ROW EXECUTE FUNCTION api_keys_gate();
ALTER TABLE api_keys ENABLE ALWAYS TRIGGER api_keys_gate;

CREATE FUNCTION client_certificates_gate() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF NEW.created_by <> NEW.principal_id::text AND NEW.created_by !~ '^system-'
     AND NOT config_change_authorized(NEW.org_id, ARRAY['client_certificate_create'], NEW.id,
               jsonb_build_object('match_kind', NEW.match_kind, 'match_value', NEW.match_value, 'principal_id', NEW.principal_id::text)) THEN
    PERFORM gate_refused('a client certificate for someone else');
  END IF;
  RETURN NEW;
END $fn$;
CREATE TRIGGER client_certificates_gate BEFORE INSERT ON client_certificates FOR EACH ROW EXECUTE FUNCTION client_certificates_gate();
ALTER TABLE client_certificates ENABLE ALWAYS TRIGGER client_certificates_gate;

-- Configuration mail is delivered and recorded like every other kind.
ALTER TABLE notification_deliveries DROP CONSTRAINT notification_deliveries_kind_check;
ALTER TABLE notification_deliveries ADD CONSTRAINT notification_deliveries_kind_check CHECK (kind IN (
  'approval_submitted', 'approval_decided', 'approval_escalation', 'certificate_issued', 'config_submitted', 'config_decided'));

REVOKE ALL ON config_requests FROM PUBLIC;
GRANT SELECT, INSERT ON config_requests TO countersign_app;
GRANT UPDATE (state, decided_by, decided_by_type, decided_at, decision_note, decided_credential_kind, decided_credential_id)
  ON config_requests TO countersign_app;
`.execute(db);
}

export async function down(): Promise<void> {
  throw new Error('migrations are forward-only; restore from backup to go back');
}
