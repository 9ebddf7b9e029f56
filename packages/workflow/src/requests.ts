import { createHash, randomUUID } from 'node:crypto';
import { CsrError, domainAllowed, isValidDnsName, normalizeDnsName, parseCsr } from '@countersign/ca';
import {
  type AuditEntry,
  canonicalJson,
  certificates,
  type Db,
  type Executor,
  idempotency,
  type OutboxEvent,
  type ProfileWithApprovers,
  pgCode,
  pgConstraint,
  profiles,
  type SubmissionRows,
  UNIQUE_VIOLATION,
  writeSubmission,
} from '@countersign/db';
import {
  type Actor,
  canRequest,
  DomainError,
  MAX_CERTIFICATE_NAMES,
  notFound,
  type Principal,
  readsOnlyOwn,
} from '@countersign/domain';
import {
  type ApprovalView,
  approvalView,
  type CertificateView,
  certificateView,
  type JobView,
  jobView,
} from './views.ts';

/**
 * Submitting a certificate request or a renewal: the one use case behind
 * POST /certificates, POST /certificates/{id}/renew, the `renewal-requests`
 * queue and the reaper's renewal scan. Everything it writes (certificate,
 * job, approval request, outbox event, audit records, idempotent answer)
 * commits in one transaction.
 */
export interface WorkflowSettings {
  readonly approvalTimeoutMs: number;
  readonly escalationAfterMs: number;
}

export interface Requester {
  readonly orgId: string;
  readonly actor: Actor;
  /** The principal asking, or null for the system scheduler. */
  readonly principal: Principal | null;
}

export interface NewCertificateInput {
  profile_id: string;
  common_name: string;
  sans?: string[] | undefined;
  csr: string;
  justification?: string | undefined;
}

export interface RenewInput {
  justification?: string | undefined;
  csr?: string | undefined;
}

export interface SubmitResult {
  certificate: CertificateView;
  job: JobView;
  approval: ApprovalView | null;
}

export interface Idempotency {
  readonly key: string;
  /** Identifies the operation and its body; the same key with another body is a conflict. */
  readonly fingerprint: unknown;
  /**
   * The intake queue's replay rule (services/api/src/intake.handler.ts): `origin` is stored with the first
   * answer in the submission's transaction, and `judgeReplay` sees a stored first answer before it is
   * returned and throws to refuse it (a copy of a message under another queue job).
   */
  readonly queue?: {
    readonly origin: idempotency.QueueOrigin;
    readonly judgeReplay: (prior: { queue_job_id: string | null; message_digest: string | null }) => void;
  };
}

export const requesterOf = (p: Principal, actor: Actor): Requester => ({ orgId: p.orgId, actor, principal: p });

function requestHash(fingerprint: unknown): string {
  return createHash('sha256').update(canonicalJson(fingerprint)).digest('hex');
}

/** Runs `work` at most once per (principal, key), replaying the first answer afterwards. */
async function withIdempotency(
  db: Db,
  who: Requester,
  idem: Idempotency | undefined,
  work: (ex: Executor, remember: (body: SubmitResult) => Promise<void>) => Promise<SubmitResult>,
): Promise<SubmitResult> {
  const principalId = who.principal?.id;
  // Without a key there is nothing to remember, and `work` is one statement (createJob) that is its own
  // transaction, so BEGIN and COMMIT would be two round trips for nothing. `work` must therefore read
  // nothing after its write: a failing read would report a committed request as an error.
  if (!idem || !principalId) return work(db, async () => {});
  const hash = requestHash(idem.fingerprint);
  const replay = async (): Promise<SubmitResult | null> => {
    const prior = await idempotency.findIdempotent(db, principalId, idem.key);
    if (!prior) return null;
    idem.queue?.judgeReplay(prior);
    if (prior.request_hash !== hash) {
      throw new DomainError('idempotency_conflict', 'this Idempotency-Key was already used with a different request');
    }
    return prior.response_body as SubmitResult;
  };
  const first = await replay();
  if (first) return first;
  try {
    return await db.transaction().execute((tx) =>
      work(tx, (body) =>
        idempotency.insertIdempotent(tx, {
          principalId,
          key: idem.key,
          orgId: who.orgId,
          requestHash: hash,
          status: 202,
          body,
          queue: idem.queue?.origin,
        }),
      ),
    );
  } catch (err) {
    // A concurrent request with the same key committed first: answer as it did.
    if (pgCode(err) === UNIQUE_VIOLATION && pgConstraint(err) === 'idempotency_keys_pkey') {
      const again = await replay();
      if (again) return again;
    }
    throw err;
  }
}

function checkNames(profile: ProfileWithApprovers, names: readonly string[]): void {
  for (const name of names) {
    if (!isValidDnsName(name)) throw new DomainError('validation_failed', `"${name}" is not a valid DNS name`);
    if (!domainAllowed(name, profile.allowed_domains)) {
      throw new DomainError('domain_not_allowed', `"${name}" is not allowed by profile ${profile.name}`, {
        name,
        allowed_domains: profile.allowed_domains,
      });
    }
  }
}

/** Refuses more names than one certificate may carry, before any work per name. */
function capNames(names: readonly string[], whose: string): void {
  if (names.length > MAX_CERTIFICATE_NAMES) {
    throw new DomainError(
      'validation_failed',
      `${whose} ${names.length} DNS names; a certificate carries at most ${MAX_CERTIFICATE_NAMES} (its common name counted)`,
    );
  }
}

/**
 * The CSR and the names it carries: its common name (else its first dNSName
 * SAN) and every distinct name, the common name first. A CSR naming nothing is
 * refused: it would match whatever names a request brings, and a renewal
 * would keep the old names under a new key.
 */
function parseCsrOrThrow(pem: string) {
  let csr: ReturnType<typeof parseCsr>;
  try {
    csr = parseCsr(pem);
  } catch (err) {
    if (err instanceof CsrError) throw new DomainError('invalid_csr', `invalid CSR: ${err.message}`);
    throw err;
  }
  const commonName = csr.commonName ?? csr.dnsNames[0];
  if (commonName === undefined) {
    throw new DomainError(
      'invalid_csr',
      'invalid CSR: it carries no DNS name (neither a subject common name nor a dNSName subject alternative name)',
    );
  }
  const names = [...new Set([commonName, ...csr.dnsNames])];
  capNames(names, 'the CSR carries');
  return { csr, commonName, names };
}

const sameNames = (a: readonly string[], b: readonly string[]): boolean => {
  const sa = new Set(a);
  const sb = new Set(b);
  return sa.size === sb.size && [...sa].every((n) => sb.has(n));
};

/**
 * The CSR must name exactly what the request names (CN included among the
 * SANs): every name of either is a name of the other, so a CSR cannot lend
 * its key to a name it does not carry.
 */
function matchCsr(csrPem: string, commonName: string, sans: readonly string[]) {
  const wanted = sans.includes(commonName) ? sans : [commonName, ...sans];
  capNames(wanted, 'the request names');
  const { csr, names: got } = parseCsrOrThrow(csrPem);
  if (csr.commonName !== null && csr.commonName !== commonName) {
    throw new DomainError(
      'validation_failed',
      `CSR common name "${csr.commonName}" does not match the requested common name "${commonName}"`,
    );
  }
  if (!sameNames(wanted, got)) {
    throw new DomainError(
      'validation_failed',
      `CSR names [${got.join(', ')}] do not match the requested names [${wanted.join(', ')}]`,
    );
  }
  return csr;
}

function requireJustification(profile: ProfileWithApprovers, justification: string | undefined): string {
  const j = justification?.trim() ?? '';
  if (profile.requires_approval && j === '') {
    throw new DomainError(
      'validation_failed',
      `profile ${profile.name} requires approval: a justification is required`,
    );
  }
  return j === '' ? '(none)' : j;
}

interface JobPlan {
  /** A first request's new certificate, or the existing certificate a renewal renews. */
  readonly certificate: { readonly id: string; readonly ownerId: string } & (
    | { readonly isNew: true }
    | { readonly isNew: false }
  );
  readonly kind: 'issuance' | 'renewal';
  readonly commonName: string;
  readonly sans: string[];
  readonly publicKey: Buffer;
  readonly justification: string;
}

/**
 * Writes the certificate (when new), job, approval (when gated), outbox event and audit records in one
 * statement (writeSubmission). Ids are chosen here so the audit records can name them.
 */
async function createJob(
  ex: Executor,
  who: Requester,
  profile: ProfileWithApprovers,
  plan: JobPlan,
  settings: WorkflowSettings,
) {
  const now = new Date();
  const certificateId = plan.certificate.id;
  const jobId = randomUUID();
  const status = profile.requires_approval ? 'awaiting_approval' : 'pending';
  const audit: AuditEntry[] = [
    {
      orgId: who.orgId,
      actor: who.actor,
      action: plan.kind === 'issuance' ? 'certificate_requested' : 'renewal_requested',
      resourceType: 'job',
      resourceId: jobId,
      details: {
        certificate_id: certificateId,
        profile_id: profile.id,
        common_name: plan.commonName,
        sans: plan.sans,
        status,
        requires_approval: profile.requires_approval,
      },
    },
  ];
  let approval: SubmissionRows['approval'];
  let outbox: OutboxEvent;
  if (profile.requires_approval) {
    const timeoutMs = profile.approval_timeout_seconds
      ? profile.approval_timeout_seconds * 1000
      : settings.approvalTimeoutMs;
    const escalateMs = profile.escalation_after_seconds
      ? profile.escalation_after_seconds * 1000
      : settings.escalationAfterMs;
    const expiresAt = new Date(now.getTime() + timeoutMs);
    approval = {
      id: randomUUID(),
      org_id: who.orgId,
      job_id: jobId,
      certificate_id: certificateId,
      profile_id: profile.id,
      requested_by: who.actor.id,
      requester_type: who.actor.type,
      justification: plan.justification,
      domains: plan.sans,
      environment: profile.environment,
      approvals_required: profile.approvals_required,
      requested_at: now,
      expires_at: expiresAt,
      escalate_at: escalateMs < timeoutMs ? new Date(now.getTime() + escalateMs) : null,
    };
    outbox = { topic: 'approval.submitted', payload: { approval_id: approval.id } };
    audit.push({
      orgId: who.orgId,
      actor: who.actor,
      action: 'approval_requested',
      resourceType: 'approval',
      resourceId: approval.id,
      details: {
        job_id: jobId,
        state: 'pending',
        domains: plan.sans,
        environment: profile.environment,
        approvals_required: profile.approvals_required,
        justification: plan.justification,
        expires_at: expiresAt.toISOString(),
      },
    });
  } else {
    outbox = { topic: 'job.released', payload: { job_id: jobId } };
    audit.push({
      orgId: who.orgId,
      actor: who.actor,
      action: 'job_released',
      resourceType: 'job',
      resourceId: jobId,
      details: { status: 'pending', reason: 'profile does not require approval' },
    });
  }
  try {
    return await writeSubmission(ex, {
      ...(plan.certificate.isNew
        ? {
            certificate: {
              id: certificateId,
              org_id: who.orgId,
              profile_id: profile.id,
              owner_id: plan.certificate.ownerId,
              common_name: plan.commonName,
              sans: plan.sans,
              public_key: plan.publicKey,
            },
          }
        : {}),
      job: {
        id: jobId,
        org_id: who.orgId,
        certificate_id: certificateId,
        profile_id: profile.id,
        kind: plan.kind,
        status,
        requires_approval: profile.requires_approval,
        requested_by: who.actor.id,
        requester_type: who.actor.type,
        common_name: plan.commonName,
        sans: plan.sans,
        public_key: plan.publicKey,
        released_at: profile.requires_approval ? null : now,
      },
      ...(approval ? { approval } : {}),
      outbox: [outbox],
      audit,
      at: now,
    });
  } catch (err) {
    if (pgCode(err) === UNIQUE_VIOLATION && pgConstraint(err) === 'jobs_one_open_per_certificate') {
      throw new DomainError('renewal_in_progress', 'another job of this certificate is still open', {
        certificate_id: certificateId,
      });
    }
    throw err;
  }
}

async function loadProfile(db: Executor, orgId: string, profileId: string) {
  const profile = await profiles.findProfile(db, orgId, profileId);
  if (!profile) throw notFound('profile');
  return profile;
}

function assertMayRequest(who: Requester): void {
  if (who.principal && !canRequest(who.principal)) {
    throw new DomainError('forbidden', `role ${who.principal.role} may not request certificates`);
  }
}

export async function requestCertificate(
  db: Db,
  settings: WorkflowSettings,
  who: Requester,
  input: NewCertificateInput,
  idem?: Idempotency,
): Promise<SubmitResult> {
  assertMayRequest(who);
  if (!who.principal) throw new DomainError('forbidden', 'new certificates are requested by a principal');
  const owner = who.principal;
  const profile = await loadProfile(db, who.orgId, input.profile_id);
  const commonName = normalizeDnsName(input.common_name);
  const sansIn = (input.sans ?? []).map(normalizeDnsName);
  const sans = [...new Set(sansIn.includes(commonName) ? sansIn : [commonName, ...sansIn])];
  checkNames(profile, sans);
  const justification = requireJustification(profile, input.justification);
  const csr = matchCsr(input.csr, commonName, sans);

  return withIdempotency(db, who, idem, async (ex, remember) => {
    const { certificate, job, approval } = await createJob(
      ex,
      who,
      profile,
      {
        certificate: { id: randomUUID(), ownerId: owner.id, isNew: true },
        kind: 'issuance',
        commonName,
        sans,
        publicKey: csr.publicKeySpki,
        justification,
      },
      settings,
    );
    if (!certificate) throw new Error('the new certificate was not written');
    const result: SubmitResult = {
      certificate: certificateView(certificate, null),
      job: jobView(job),
      approval: approval ? approvalView(approval, []) : null,
    };
    await remember(result);
    return result;
  });
}

export async function renewCertificate(
  db: Db,
  settings: WorkflowSettings,
  who: Requester,
  certificateId: string,
  input: RenewInput,
  idem?: Idempotency,
): Promise<SubmitResult> {
  assertMayRequest(who);
  const cert = await certificates.findCertificate(db, who.orgId, certificateId);
  if (!cert || (who.principal && readsOnlyOwn(who.principal) && cert.owner_id !== who.principal.id)) {
    throw notFound('certificate');
  }
  const profile = await loadProfile(db, who.orgId, cert.profile_id);
  const justification = requireJustification(profile, input.justification);
  let commonName = cert.common_name;
  let sans = cert.sans;
  let publicKey = cert.public_key;
  if (input.csr !== undefined) {
    // A renewal CSR may change the names (the approver sees the difference); they must still be allowed.
    const { csr, commonName: csrCommonName, names } = parseCsrOrThrow(input.csr);
    commonName = csrCommonName;
    sans = names;
    publicKey = csr.publicKeySpki;
  }
  checkNames(profile, sans);
  // Read before the write: without an Idempotency-Key the write commits on its own, and a read failing
  // after it would report an accepted renewal as an error.
  const current = cert.current_version_id
    ? await certificates.findVersion(db, who.orgId, cert.current_version_id)
    : null;

  return withIdempotency(db, who, idem, async (ex, remember) => {
    const { job, approval } = await createJob(
      ex,
      who,
      profile,
      {
        certificate: { id: cert.id, ownerId: cert.owner_id, isNew: false },
        kind: 'renewal',
        commonName,
        sans,
        publicKey,
        justification,
      },
      settings,
    );
    const result: SubmitResult = {
      certificate: certificateView(cert, current),
      job: jobView(job),
      approval: approval ? approvalView(approval, []) : null,
    };
    await remember(result);
    return result;
  });
}
