import type {
  ApprovalRow,
  CertificateRow,
  CertificateVersionRow,
  ConfigRequestRow,
  JobRow,
  ProfileWithApprovers,
  VoteRow,
} from '@countersign/db';
import { formatDuration } from '@countersign/domain';

/**
 * The JSON shapes the API and the intake queue answer with. Built in one place
 * so an HTTP answer, a stored idempotent answer and a queue return value agree.
 */
const iso = (d: Date | null): string | null => (d ? d.toISOString() : null);

export interface CertificateView {
  id: string;
  profile_id: string;
  owner_id: string;
  common_name: string;
  sans: string[];
  current_version: VersionView | null;
  not_after: string | null;
  created_at: string;
}

export interface VersionView {
  id: string;
  job_id: string;
  serial: string;
  fingerprint_sha256: string;
  not_before: string;
  not_after: string;
  issuer: string;
  created_at: string;
}

export interface JobView {
  id: string;
  certificate_id: string;
  profile_id: string;
  kind: string;
  status: string;
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

export interface VoteView {
  voter_id: string;
  note: string | null;
  voted_at: string;
}

export interface ApprovalView {
  id: string;
  job_id: string;
  certificate_id: string;
  profile_id: string;
  state: string;
  requested_by: string;
  requester_type: string;
  justification: string;
  domains: string[];
  environment: string;
  approvals_required: number;
  votes: VoteView[];
  requested_at: string;
  expires_at: string;
  decided_by: string | null;
  decided_at: string | null;
  decision_note: string | null;
}

export interface ProfileView {
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
  allow_bypass: boolean;
  created_at: string;
  updated_at: string;
}

export const versionView = (v: CertificateVersionRow): VersionView => ({
  id: v.id,
  job_id: v.job_id,
  serial: v.serial,
  fingerprint_sha256: v.fingerprint_sha256,
  not_before: v.not_before.toISOString(),
  not_after: v.not_after.toISOString(),
  issuer: v.issuer,
  created_at: v.created_at.toISOString(),
});

export const certificateView = (
  c: CertificateRow,
  current: CertificateVersionRow | null | undefined,
): CertificateView => ({
  id: c.id,
  profile_id: c.profile_id,
  owner_id: c.owner_id,
  common_name: c.common_name,
  sans: c.sans,
  current_version: current ? versionView(current) : null,
  not_after: iso(c.not_after),
  created_at: c.created_at.toISOString(),
});

export const jobView = (j: JobRow): JobView => ({
  id: j.id,
  certificate_id: j.certificate_id,
  profile_id: j.profile_id,
  kind: j.kind,
  status: j.status,
  requires_approval: j.requires_approval,
  requested_by: j.requested_by,
  common_name: j.common_name,
  sans: j.sans,
  error: j.error,
  attempts: j.attempts,
  created_at: j.created_at.toISOString(),
  released_at: iso(j.released_at),
  completed_at: iso(j.completed_at),
});

export const approvalView = (
  a: ApprovalRow,
  votes: readonly Pick<VoteRow, 'approval_id' | 'voter_id' | 'note' | 'voted_at'>[],
): ApprovalView => ({
  id: a.id,
  job_id: a.job_id,
  certificate_id: a.certificate_id,
  profile_id: a.profile_id,
  state: a.state,
  requested_by: a.requested_by,
  requester_type: a.requester_type,
  justification: a.justification,
  domains: a.domains,
  environment: a.environment,
  approvals_required: a.approvals_required,
  votes: votes
    .filter((v) => v.approval_id === a.id)
    .map((v) => ({ voter_id: v.voter_id, note: v.note, voted_at: v.voted_at.toISOString() })),
  requested_at: a.requested_at.toISOString(),
  expires_at: a.expires_at.toISOString(),
  decided_by: a.decided_by,
  decided_at: iso(a.decided_at),
  decision_note: a.decision_note,
});

export const profileView = (p: ProfileWithApprovers): ProfileView => ({
  id: p.id,
  name: p.name,
  environment: p.environment,
  requires_approval: p.requires_approval,
  approvals_required: p.approvals_required,
  approvers: p.approvers,
  allowed_domains: p.allowed_domains,
  issuer: p.issuer,
  validity_days: p.validity_days,
  approval_timeout: p.approval_timeout_seconds === null ? null : formatDuration(p.approval_timeout_seconds * 1000),
  escalation_after: p.escalation_after_seconds === null ? null : formatDuration(p.escalation_after_seconds * 1000),
  renew_before_days: p.renew_before_days,
  escalation_contacts: p.escalation_contacts,
  allow_bypass: p.allow_bypass,
  created_at: p.created_at.toISOString(),
  updated_at: p.updated_at.toISOString(),
});

export interface ConfigRequestView {
  id: string;
  kind: string;
  target_id: string;
  summary: string;
  /** The change as it will be applied; a key's secret appears only as its hash. */
  change: unknown;
  justification: string;
  state: string;
  requested_by: string;
  requested_at: string;
  expires_at: string;
  decided_by: string | null;
  decided_at: string | null;
  decision_note: string | null;
}

export const configRequestView = (r: ConfigRequestRow): ConfigRequestView => ({
  id: r.id,
  kind: r.kind,
  target_id: r.target_id,
  summary: r.summary,
  change: r.change,
  justification: r.justification,
  state: r.state,
  requested_by: r.requested_by,
  requested_at: r.requested_at.toISOString(),
  expires_at: r.expires_at.toISOString(),
  decided_by: r.decided_by,
  decided_at: r.decided_at?.toISOString() ?? null,
  decision_note: r.decision_note,
});
