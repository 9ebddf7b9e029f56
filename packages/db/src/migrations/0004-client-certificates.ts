import { type Kysely, sql } from 'kysely';

/**
 * Client certificates over mTLS (SPEC §2): a binding maps a verified client
 * certificate to one principal, either by the SHA-256 fingerprint of the
 * certificate (pinning one certificate) or by one subjectAltName entry
 * (`DNS:<name>` or `URI:<uri>`, surviving re-issuance by the trusted client
 * CA). A fingerprint or SAN names exactly one principal across all orgs, so a
 * certificate can never be ambiguous. Bindings are deleted, not disabled; the
 * audit ledger keeps their history.
 *
 * Also: a partial index for the per-principal bound on open requests, which
 * the api checks before each submission (COUNTERSIGN_MAX_OPEN_REQUESTS).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`
CREATE TABLE client_certificates (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id uuid NOT NULL,
  principal_id uuid NOT NULL,
  match_kind text NOT NULL CHECK (match_kind IN ('fingerprint', 'san')),
  -- fingerprint: 64 lower-case hex digits; san: DNS:<name> or URI:<uri>, no spaces, commas or quotes.
  match_value text NOT NULL,
  name text CHECK (name IS NULL OR length(name) BETWEEN 1 AND 200),
  created_by text NOT NULL,
  -- Millisecond precision, like the JavaScript Date in a list cursor, so keyset pages neither skip nor repeat a row.
  created_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
  FOREIGN KEY (principal_id, org_id) REFERENCES principals(id, org_id),
  CONSTRAINT client_certificates_match_unique UNIQUE (match_kind, match_value),
  CONSTRAINT client_certificates_value_shape CHECK (
    (match_kind = 'fingerprint' AND match_value ~ '^[0-9a-f]{64}$')
    OR (match_kind = 'san' AND length(match_value) <= 504 AND match_value ~ '^(DNS|URI):[^\\s,"]+$')
  )
);
CREATE INDEX client_certificates_org_created ON client_certificates(org_id, created_at, id);
CREATE INDEX client_certificates_principal ON client_certificates(principal_id);

CREATE INDEX jobs_open_by_requester ON jobs(requested_by)
  WHERE status IN ('awaiting_approval', 'pending', 'running');

REVOKE ALL ON client_certificates FROM PUBLIC;
GRANT SELECT, INSERT, DELETE ON client_certificates TO countersign_app;
`.execute(db);
}

export async function down(): Promise<void> {
  throw new Error('migrations are forward-only; restore from backup to go back');
}
