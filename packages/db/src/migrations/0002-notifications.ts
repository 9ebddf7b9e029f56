import { type Kysely, sql } from 'kysely';

/**
 * Delivery records of the notifier: one row per (event, recipient), so a
 * re-delivered queue message, a retry or a second notifier replica never sends
 * the same mail twice. The row is claimed (attempts + 1, claimed_until) before
 * the SMTP transaction and marked `sent` after it; a claim whose lease ran out
 * belongs to a notifier that died mid-send and may be taken over. `skipped`
 * records mail that was deliberately not sent (no SMTP configured, a principal
 * without an address, a reminder for a request decided meanwhile) with the
 * reason in last_error; `failed` is final, after the last attempt.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
CREATE TABLE notification_deliveries (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id uuid NOT NULL REFERENCES orgs(id),
  -- The notification event, e.g. approval_submitted-<approval id> or approval_escalation-<id>-r2.
  event_key text NOT NULL CHECK (length(event_key) BETWEEN 1 AND 300),
  kind text NOT NULL CHECK (kind IN ('approval_submitted', 'approval_decided', 'approval_escalation', 'certificate_issued')),
  -- A lower-cased email address, or principal:<id> for a principal that has none.
  recipient text NOT NULL CHECK (length(recipient) BETWEEN 1 AND 320),
  subject text NOT NULL,
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed', 'skipped')),
  attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  last_error text,
  message_id text,
  claimed_until timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  sent_at timestamptz,
  CONSTRAINT notification_deliveries_once UNIQUE (event_key, recipient),
  CONSTRAINT notification_deliveries_sent_at CHECK ((status = 'sent') = (sent_at IS NOT NULL)),
  CONSTRAINT notification_deliveries_reason CHECK (status NOT IN ('failed', 'skipped') OR last_error IS NOT NULL)
);
CREATE INDEX notification_deliveries_org_created ON notification_deliveries(org_id, created_at DESC);
CREATE INDEX notification_deliveries_open ON notification_deliveries(created_at) WHERE status = 'pending';

-- A delivery that reached a final state stays there: sent mail is never "unsent".
CREATE FUNCTION notification_deliveries_guard() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF OLD.status <> 'pending' AND NEW.status <> OLD.status THEN
    RAISE EXCEPTION 'delivery % is % and final', OLD.id, OLD.status USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.event_key <> OLD.event_key OR NEW.recipient <> OLD.recipient OR NEW.org_id <> OLD.org_id THEN
    RAISE EXCEPTION 'delivery % identity columns are immutable', OLD.id USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $fn$;
CREATE TRIGGER notification_deliveries_guard BEFORE UPDATE ON notification_deliveries
  FOR EACH ROW EXECUTE FUNCTION notification_deliveries_guard();

REVOKE ALL ON notification_deliveries FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE ON notification_deliveries TO countersign_app;
`.execute(db);
}

export async function down(): Promise<void> {
  throw new Error('migrations are forward-only; restore from backup to go back');
}
