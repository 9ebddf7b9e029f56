import { X509Certificate } from 'node:crypto';
import type { IssuerConnector } from '@countersign/ca';
import { appendAudit, certificates, completeIssuance, type Db, jobs } from '@countersign/db';
import { SYSTEM_ACTORS } from '@countersign/domain';
import type { Logger } from '@countersign/observability';

/**
 * Signs the certificate of one released job. The queue message is only a hint:
 * the job row is locked and re-checked (status `pending`, and for a gated job
 * an `approved` request) before anything is signed, and the version, the job's
 * completion, the outbox event and the audit record commit in that same
 * transaction. A message for a job that is cancelled, already completed or
 * not approved is skipped and logged, never signed; the database trigger on
 * certificate_versions would refuse it anyway.
 */
export type IssueOutcome =
  | { status: 'issued'; versionId: string; profileId: string; issuer: string; releasedAt: Date | null }
  | { status: 'skipped'; reason: string }
  /** Signed, but the leaf's names or key differ from what was approved: the job failed, nothing delivered. */
  | { status: 'refused'; reason: string };

export function issueJobHandler(db: Db, connectors: ReadonlyMap<string, IssuerConnector>, log: Logger) {
  return async (jobId: string): Promise<IssueOutcome> =>
    db.transaction().execute(async (tx) => {
      const locked = await jobs.lockJobForIssuance(tx, jobId);
      if (!locked) return skip(log, jobId, 'job does not exist');
      const { job, profile } = locked;
      if (job.status !== 'pending' && job.status !== 'running') {
        return skip(log, jobId, `job is ${job.status}`);
      }
      if (job.requires_approval && locked.approvalState !== 'approved') {
        return skip(log, jobId, `approval is ${locked.approvalState ?? 'missing'}`);
      }
      if (!profile) return skip(log, jobId, 'profile is gone');
      const connector = connectors.get(profile.issuer);
      if (!connector) throw new Error(`no issuer connector "${profile.issuer}" is configured`);
      // What the approvers were shown is what is signed: a gated job signs its request's names.
      const approved = job.requires_approval ? locked.approvedNames : job.sans;
      if (!approved || approved.length === 0) return skip(log, jobId, 'no approved names');

      const signed = await connector.issue({
        commonName: job.common_name,
        dnsNames: approved,
        publicKeySpki: job.public_key,
        validityDays: profile.validityDays,
      });
      const leaf = parseLeaf(signed.leafPem);
      const mismatch = leaf
        ? issuedMismatch(leaf, approved, job.public_key)
        : 'the connector returned no parsable certificate';
      if (mismatch) {
        // Never delivered: the job fails for good with the difference named, in this transaction.
        log.error({ job_id: job.id, mismatch }, 'issued certificate differs from what was approved; not recorded');
        const failed = await jobs.failJob(tx, job.id, `issued certificate differs from the approval: ${mismatch}`);
        if (failed) {
          await appendAudit(tx, {
            orgId: job.org_id,
            actor: SYSTEM_ACTORS.issuer,
            action: 'issuance_failed',
            resourceType: 'job',
            resourceId: job.id,
            details: { status: 'failed', error: 'issued_mismatch', mismatch, serial: signed.serialHex },
          });
        }
        return { status: 'refused', reason: mismatch };
      }
      const version = await certificates.insertVersion(tx, {
        orgId: job.org_id,
        certificateId: job.certificate_id,
        jobId: job.id,
        issuer: connector.id,
        serial: signed.serialHex,
        fingerprint: signed.fingerprintSha256,
        notBefore: signed.notBefore,
        notAfter: signed.notAfter,
        leafPem: signed.leafPem,
        chainPem: signed.chainPem,
        sans: leaf ? leafDnsNames(leaf) : [],
      });
      await completeIssuance(tx, {
        job,
        version,
        at: new Date(),
        audit: {
          orgId: job.org_id,
          actor: SYSTEM_ACTORS.issuer,
          action: 'certificate_issued',
          resourceType: 'certificate',
          resourceId: job.certificate_id,
          details: {
            job_id: job.id,
            version_id: version.id,
            serial: signed.serialHex,
            fingerprint_sha256: signed.fingerprintSha256,
            not_after: signed.notAfter.toISOString(),
            issuer: connector.id,
            status: 'completed',
          },
        },
      });
      return {
        status: 'issued',
        versionId: version.id,
        profileId: profile.id,
        issuer: connector.id,
        releasedAt: job.released_at,
      };
    });
}

function parseLeaf(pem: string): X509Certificate | null {
  try {
    return new X509Certificate(pem);
  } catch {
    return null;
  }
}

/** The leaf's own DNS subjectAltNames, lower-cased, as X509Certificate lists them. */
export function leafDnsNames(leaf: X509Certificate): string[] {
  return (leaf.subjectAltName ?? '')
    .split(', ')
    .filter((s) => s.startsWith('DNS:'))
    .map((s) => s.slice(4).toLowerCase());
}

/**
 * Compares a signed leaf with the approval: exactly the approved DNS names
 * (no more, no fewer) and the requested public key. Returns the difference,
 * or null when they agree. The database compares the names once more when the
 * version is recorded.
 */
export function issuedMismatch(
  leaf: X509Certificate,
  approved: readonly string[],
  publicKeySpki: Buffer,
): string | null {
  const got = new Set(leafDnsNames(leaf));
  const want = new Set(approved.map((n) => n.toLowerCase()));
  const extra = [...got].filter((n) => !want.has(n));
  const missing = [...want].filter((n) => !got.has(n));
  if (extra.length > 0 || missing.length > 0) {
    return `names differ (extra: [${extra.join(', ')}], missing: [${missing.join(', ')}])`;
  }
  const key = leaf.publicKey.export({ type: 'spki', format: 'der' });
  if (!key.equals(publicKeySpki)) return 'the public key is not the requested one';
  return null;
}

function skip(log: Logger, jobId: string, reason: string): IssueOutcome {
  log.warn({ job_id: jobId, reason }, 'issuance skipped: nothing signed');
  return { status: 'skipped', reason };
}

/**
 * Records a permanent failure (the last retry was spent) on the job with an
 * audit record, so the failure is visible in the API and the ledger.
 */
export async function recordIssuanceFailure(db: Db, jobId: string, error: string): Promise<void> {
  await db.transaction().execute(async (tx) => {
    const job = await jobs.failJob(tx, jobId, error);
    if (!job) return;
    await appendAudit(tx, {
      orgId: job.org_id,
      actor: SYSTEM_ACTORS.issuer,
      action: 'issuance_failed',
      resourceType: 'job',
      resourceId: job.id,
      details: { status: 'failed', error },
    });
  });
}
