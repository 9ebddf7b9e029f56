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
  | { status: 'skipped'; reason: string };

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

      const signed = await connector.issue({
        commonName: job.common_name,
        dnsNames: job.sans,
        publicKeySpki: job.public_key,
        validityDays: profile.validityDays,
      });
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
