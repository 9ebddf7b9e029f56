import type { ColumnType, Generated, Selectable } from 'kysely';

/** Kysely view of the tables created by the migrations. */
type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type NullableTimestamp = ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;

export interface OrgsTable {
  id: Generated<string>;
  name: string;
  created_at: Timestamp;
}

export interface PrincipalsTable {
  id: Generated<string>;
  org_id: string;
  name: string;
  email: string | null;
  role: string;
  kind: Generated<string>;
  /** A principal id or a system actor; never changes (migration 0015). */
  created_by: string;
  created_at: Timestamp;
  disabled_at: NullableTimestamp;
}

export interface ApiKeysTable {
  id: Generated<string>;
  org_id: string;
  principal_id: string;
  name: string | null;
  secret_hash: Buffer;
  /** The principal itself (an own key) or whoever minted it for the principal (an enrollment key). */
  created_by: string;
  /** For an own key: the credential of the same principal it was minted with. */
  enrolled_via_kind: string | null;
  enrolled_via: string | null;
  /** For an enrollment key: when it minted the principal's own credential (once). */
  enrollment_used_at: NullableTimestamp;
  created_at: Timestamp;
  expires_at: NullableTimestamp;
  revoked_at: NullableTimestamp;
}

export interface ProfilesTable {
  id: Generated<string>;
  org_id: string;
  name: string;
  environment: string;
  requires_approval: boolean;
  approvals_required: Generated<number>;
  allowed_domains: string[];
  issuer: Generated<string>;
  validity_days: number;
  approval_timeout_seconds: number | null;
  escalation_after_seconds: number | null;
  renew_before_days: Generated<number>;
  escalation_contacts: Generated<string[]>;
  /** The approval bypass may decide this profile's requests (never a production environment). */
  allow_bypass: Generated<boolean>;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface ProfileApproversTable {
  profile_id: string;
  org_id: string;
  principal_id: string;
}

export interface CertificatesTable {
  id: Generated<string>;
  org_id: string;
  profile_id: string;
  owner_id: string;
  common_name: string;
  sans: string[];
  public_key: Buffer;
  current_version_id: string | null;
  not_after: NullableTimestamp;
  created_at: Timestamp;
  updated_at: Timestamp;
}

export interface JobsTable {
  id: Generated<string>;
  org_id: string;
  certificate_id: string;
  profile_id: string;
  kind: string;
  status: string;
  requires_approval: boolean;
  requested_by: string;
  requester_type: string;
  common_name: string;
  sans: string[];
  public_key: Buffer;
  error: string | null;
  attempts: Generated<number>;
  created_at: Timestamp;
  updated_at: Timestamp;
  released_at: NullableTimestamp;
  completed_at: NullableTimestamp;
}

export interface ApprovalRequestsTable {
  id: Generated<string>;
  org_id: string;
  job_id: string;
  certificate_id: string;
  profile_id: string;
  requested_by: string;
  requester_type: string;
  justification: string;
  domains: string[];
  environment: string;
  approvals_required: number;
  requested_at: Timestamp;
  expires_at: Timestamp;
  escalate_at: NullableTimestamp;
  state: Generated<string>;
  decided_by: string | null;
  decided_by_type: string | null;
  decided_at: NullableTimestamp;
  decision_note: string | null;
  /** The decider's own credential (null for system deciders and rows from before migration 0015). */
  decided_credential_kind: string | null;
  decided_credential_id: string | null;
}

export interface ApprovalVotesTable {
  approval_id: string;
  org_id: string;
  voter_id: string;
  voter_type: string;
  requested_by: string;
  note: string | null;
  voted_at: Timestamp;
  /** The voter's own credential the vote was cast with (null only for votes from before migration 0015). */
  credential_kind: string | null;
  credential_id: string | null;
}

export interface CertificateVersionsTable {
  id: Generated<string>;
  org_id: string;
  certificate_id: string;
  job_id: string;
  issuer: string;
  serial: string;
  fingerprint_sha256: string;
  not_before: Timestamp;
  not_after: Timestamp;
  /** The DNS names of the signed leaf; the database requires them to equal the approved names. */
  sans: string[];
  leaf_pem: string;
  chain_pem: string;
  created_at: Timestamp;
}

export interface IdempotencyKeysTable {
  principal_id: string;
  key: string;
  org_id: string;
  request_hash: string;
  response_status: number;
  response_body: unknown;
  created_at: Timestamp;
  /** Intake queue answers: the BullMQ job that carried the message and the SHA-256 of what was signed (0018). */
  queue_job_id: ColumnType<string | null, string | null | undefined, never>;
  message_digest: ColumnType<string | null, string | null | undefined, never>;
}

/** A registered public key of a service principal for signed intake messages (migration 0018). */
export interface IntakeKeysTable {
  id: Generated<string>;
  org_id: string;
  principal_id: string;
  alg: string;
  /** SubjectPublicKeyInfo, DER. */
  public_key: Buffer;
  /** RFC 7638 JWK thumbprint, base64url. */
  thumbprint: string;
  name: string | null;
  created_by: string;
  created_at: Timestamp;
  revoked_at: NullableTimestamp;
}

export interface OutboxTable {
  id: Generated<string>;
  org_id: string;
  topic: string;
  payload: unknown;
  created_at: Timestamp;
}

/** An outbox row whose payload broke its queue contract (migration 0014). */
export interface OutboxDeadLettersTable {
  id: string;
  org_id: string;
  topic: string;
  payload: unknown;
  created_at: Timestamp;
  failed_at: Generated<Timestamp>;
  reason: string;
}

/** A change that could weaken the gate, waiting for another admin (migration 0016). */
export interface ConfigRequestsTable {
  id: string;
  org_id: string;
  kind: string;
  target_id: string;
  change: unknown;
  summary: string;
  justification: string;
  requested_by: string;
  requested_at: Timestamp;
  expires_at: Timestamp;
  state: Generated<string>;
  decided_by: string | null;
  decided_by_type: string | null;
  decided_at: NullableTimestamp;
  decision_note: string | null;
  decided_credential_kind: string | null;
  decided_credential_id: string | null;
}

export interface AuditHeadsTable {
  org_id: string;
  seq: string;
  hash: Buffer;
}

/** The hashed columns of an audit record, shared by the ledger and its staging table. */
interface AuditRecordColumns {
  org_id: string;
  at: Timestamp;
  actor_id: string;
  actor_type: string;
  action: string;
  resource_type: string;
  resource_id: string;
  details: unknown;
}

export interface AuditRecordsTable extends AuditRecordColumns {
  seq: string;
  prev_hash: Buffer;
  hash: Buffer;
}

/** One org's records staged in a transaction, as arrays in chain order; sealed by audit_append_batch at COMMIT. */
export interface AuditStagingBatchesTable {
  id: Generated<string>;
  org_id: string;
  at: Date;
  actor_ids: string[];
  actor_types: string[];
  actions: string[];
  resource_types: string[];
  resource_ids: string[];
  details: string[];
  bodies: Buffer[];
}

export interface Database {
  orgs: OrgsTable;
  principals: PrincipalsTable;
  api_keys: ApiKeysTable;
  profiles: ProfilesTable;
  profile_approvers: ProfileApproversTable;
  certificates: CertificatesTable;
  jobs: JobsTable;
  approval_requests: ApprovalRequestsTable;
  approval_votes: ApprovalVotesTable;
  certificate_versions: CertificateVersionsTable;
  idempotency_keys: IdempotencyKeysTable;
  intake_keys: IntakeKeysTable;
  outbox: OutboxTable;
  outbox_dead_letters: OutboxDeadLettersTable;
  config_requests: ConfigRequestsTable;
  audit_heads: AuditHeadsTable;
  audit_records: AuditRecordsTable;
  audit_staging_batches: AuditStagingBatchesTable;
}

export type ProfileRow = Selectable<ProfilesTable>;
export type PrincipalRow = Selectable<PrincipalsTable>;
export type CertificateRow = Selectable<CertificatesTable>;
export type CertificateVersionRow = Selectable<CertificateVersionsTable>;
export type JobRow = Selectable<JobsTable>;
export type ApprovalRow = Selectable<ApprovalRequestsTable>;
export type VoteRow = Selectable<ApprovalVotesTable>;
export type AuditRow = Selectable<AuditRecordsTable>;
export type ConfigRequestRow = Selectable<ConfigRequestsTable>;
