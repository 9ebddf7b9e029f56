/**
 * The JSON shapes of the Countersign API (SPEC §3). Hand-written so they read
 * well in an editor, and held to the served OpenAPI document by
 * client-openapi.int.test.ts: a field added or renamed on either side fails it.
 */

export type ApprovalState = 'pending' | 'approved' | 'rejected' | 'expired' | 'voided';
export type JobStatus = 'awaiting_approval' | 'pending' | 'running' | 'completed' | 'failed' | 'cancelled';
export type Role = 'admin' | 'operator' | 'requester' | 'auditor';

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export interface PageQuery {
  limit?: number;
  cursor?: string;
}

export interface Principal {
  id: string;
  name: string;
  email: string | null;
  role: Role | string;
  kind: 'user' | 'service' | string;
  /** The principal or system actor that created it. */
  created_by: string;
  disabled: boolean;
  created_at: string;
}

/** A change that could weaken the gate, waiting for a second admin (the org is two-person ready). */
export interface ConfigRequest {
  id: string;
  kind:
    | 'principal_create'
    | 'principal_update'
    | 'profile_create'
    | 'profile_update'
    | 'api_key_create'
    | 'client_certificate_create';
  target_id: string;
  summary: string;
  change: unknown;
  justification: string;
  state: 'pending' | 'approved' | 'rejected' | 'expired' | 'cancelled';
  requested_by: string;
  requested_at: string;
  expires_at: string;
  decided_by: string | null;
  decided_at: string | null;
  decision_note: string | null;
}

/** The 202 answer of a change that now waits for another admin. */
export interface PendingConfiguration {
  configuration_request: ConfigRequest;
  /** For a key made for someone else: shown only now, works once approved. */
  key?: string;
}

export interface OrgStatus {
  id: string;
  name: string;
  two_person_ready: boolean;
  enabled_admins: number;
  warning: string | null;
}

/** How the caller authenticated: only an own credential may vote or decide. */
export interface CallerCredential {
  kind: 'api_key' | 'client_certificate';
  id: string;
  /** false: an enrollment credential (made for the principal by someone else); mint an own key with it. */
  own: boolean;
  created_by: string;
}

export interface Me extends Principal {
  org_id: string;
  credential: CallerCredential;
}

export interface CreatedApiKey {
  id: string;
  principal_id: string;
  /** Shown only in this answer. */
  key: string;
  name: string | null;
  expires_at: string | null;
  created_at: string;
  created_by: string;
  /** own: the principal minted it for itself and may decide with it; enrollment: made for it by someone else. */
  purpose: 'own' | 'enrollment';
}

/** A key as listed (never its secret). */
export interface ApiKeyInfo {
  id: string;
  principal_id: string;
  name: string | null;
  created_by: string;
  purpose: 'own' | 'enrollment';
  created_at: string;
  expires_at: string | null;
  revoked_at: string | null;
  enrollment_used_at: string | null;
}

export interface PrincipalChange {
  role?: Role | string;
  email?: string | null;
  disabled?: boolean;
  /** Why, for the second admin when the org is two-person ready. */
  justification?: string;
}

/** A client certificate bound to a (service) principal for mTLS. */
export interface ClientCertificateBinding {
  id: string;
  principal_id: string;
  match_kind: 'fingerprint' | 'san';
  match_value: string;
  name: string | null;
  created_by: string;
  created_at: string;
}

/** Exactly one of fingerprint, san (`DNS:` or `URI:`) or certificate (PEM, its fingerprint is bound). */
export interface ClientCertificateInput {
  fingerprint?: string;
  san?: string;
  certificate?: string;
  name?: string;
}

/** A public key a service principal signs its `renewal-requests` messages with; `id` is the JWS `kid`. */
export interface IntakeKey {
  id: string;
  org_id: string;
  principal_id: string;
  alg: 'ES256' | 'EdDSA' | 'RS256';
  /** The public key as a JWK, with kid, alg and use. */
  public_key: Record<string, string>;
  /** RFC 7638 JWK thumbprint (SHA-256, base64url). */
  thumbprint: string;
  name: string | null;
  created_by: string;
  created_at: string;
  revoked_at: string | null;
}

export interface IntakeKeyInput {
  /** A public JWK or an SPKI PEM (`-----BEGIN PUBLIC KEY-----`); a private key is refused. */
  public_key: Record<string, unknown> | string;
  name?: string;
}

export interface Profile {
  id: string;
  name: string;
  environment: string;
  requires_approval: boolean;
  approvals_required: number;
  approvers: string[];
  allowed_domains: string[];
  issuer: string;
  validity_days: number;
  approval_timeout: string | null;
  escalation_after: string | null;
  renew_before_days: number;
  escalation_contacts: string[];
  /** COUNTERSIGN_APPROVAL_BYPASS may auto-approve it (never a production environment). */
  allow_bypass: boolean;
  created_at: string;
  updated_at: string;
}

export interface ProfileInput {
  name: string;
  environment: string;
  requires_approval: boolean;
  approvals_required?: number;
  approvers?: string[];
  allowed_domains: string[];
  issuer?: 'local';
  validity_days?: number;
  approval_timeout?: string | null;
  escalation_after?: string | null;
  renew_before_days?: number;
  escalation_contacts?: string[];
  allow_bypass?: boolean;
  justification?: string;
}

export interface CertificateVersion {
  id: string;
  job_id: string;
  serial: string;
  fingerprint_sha256: string;
  not_before: string;
  not_after: string;
  issuer: string;
  created_at: string;
}

export interface Certificate {
  id: string;
  profile_id: string;
  owner_id: string;
  common_name: string;
  sans: string[];
  current_version: CertificateVersion | null;
  not_after: string | null;
  created_at: string;
  /** Present on GET /certificates/{id}: every version, oldest first. */
  versions?: CertificateVersion[];
}

export interface Job {
  id: string;
  certificate_id: string;
  profile_id: string;
  kind: 'issuance' | 'renewal' | string;
  status: JobStatus | string;
  requires_approval: boolean;
  requested_by: string;
  common_name: string;
  sans: string[];
  error: string | null;
  attempts: number;
  created_at: string;
  released_at: string | null;
  completed_at: string | null;
}

export interface Vote {
  voter_id: string;
  note: string | null;
  voted_at: string;
}

export interface Approval {
  id: string;
  job_id: string;
  certificate_id: string;
  profile_id: string;
  state: ApprovalState | string;
  requested_by: string;
  requester_type: string;
  justification: string;
  domains: string[];
  environment: string;
  approvals_required: number;
  votes: Vote[];
  requested_at: string;
  expires_at: string;
  decided_by: string | null;
  decided_at: string | null;
  decision_note: string | null;
}

export interface CertificateRequest {
  profile_id: string;
  common_name: string;
  sans?: string[];
  /** PKCS#10 PEM; the private key never leaves the requester. */
  csr: string;
  justification?: string;
}

export interface RenewalInput {
  justification?: string;
  /** Without a CSR the previous public key is reused. */
  csr?: string;
}

export interface RequestResult {
  certificate: Certificate;
  job: Job;
  approval: Approval | null;
}

export interface RenewResult {
  job: Job;
  approval: Approval | null;
}

export interface ApprovalQuery extends PageQuery {
  state?: ApprovalState;
  profile_id?: string;
  requested_by?: string;
  certificate_id?: string;
}

/** Key facts of one side of a renewal diff. */
export interface DiffKey {
  algorithm: string;
  /** SHA-256 of the DER SubjectPublicKeyInfo, hex. */
  spki_sha256: string;
}

export interface DiffSide {
  common_name: string;
  names: string[];
  key: DiffKey;
}

export interface ApprovalDiff {
  approval_id: string;
  job_id: string;
  certificate_id: string;
  kind: 'issuance' | 'renewal' | string;
  /** The certificate being renewed; null for a new certificate or one never issued. */
  current: (DiffSide & { version_id: string; serial: string; not_before: string; not_after: string }) | null;
  proposed: DiffSide & { validity_days: number };
  names_added: string[];
  names_removed: string[];
  names_kept: string[];
  common_name_changed: boolean;
  /** `reused`: same public key as the certificate it renews; `changed`: a new key; `new`: nothing to compare. */
  key_change: 'reused' | 'changed' | 'new';
  /** Validity of the certificate being renewed, in days (null when there is none). */
  current_validity_days: number | null;
}

/** GET /api/v1/audit/verify (SPEC §3). */
export interface AuditVerification {
  ok: boolean;
  checked: number;
  head: { seq: number | string; hash: string };
  first_bad_seq: number | string | null;
  reason?: string | null;
  /** The newest signed checkpoint the verified chain was held against, when the server reports it. */
  checkpoint?: { id: string; seq: number | string } | null;
}

/** A signed audit checkpoint (Ed25519 over the chain head of one org). */
export interface AuditCheckpoint {
  org_id: string;
  seq: number | string;
  head_hash: string;
  at: string;
  signature: string;
  key_id: string;
  id?: string;
  type?: string;
  algorithm?: string;
}

export interface AuditPublicKey {
  key_id: string;
  algorithm: string;
  public_key_pem: string;
}

export interface AuditRecord {
  seq: number | string;
  at: string;
  actor_id: string;
  actor_type: string;
  action: string;
  resource_type: string;
  resource_id: string;
  details: unknown;
  prev_hash: string;
  hash: string;
}

export interface AuditQuery extends PageQuery {
  action?: string;
  resource_id?: string;
  actor?: string;
  from?: string;
  to?: string;
}
