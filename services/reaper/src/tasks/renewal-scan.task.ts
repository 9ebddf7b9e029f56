import { certificates, type Db } from '@countersign/db';
import { isDomainError, SYSTEM_ACTORS } from '@countersign/domain';
import type { Logger } from '@countersign/observability';
import { renewCertificate, type WorkflowSettings } from '@countersign/workflow';

/**
 * Asks for the renewal of certificates about to expire, as `system-scheduler`,
 * through the same use case as any renewal: a gated profile still needs an
 * approval (which any eligible approver may give, the scheduler being the
 * requester), and the partial unique index on open jobs turns a second
 * renewal, by a concurrent reaper or a person, into `renewal_in_progress`.
 */
export interface RenewalScanDeps {
  readonly db: Db;
  readonly log: Logger;
  readonly settings: WorkflowSettings;
  readonly batchSize: number;
  readonly maxBatches: number;
  readonly now?: () => Date;
}

export interface RenewalScanResult {
  due: number;
  renewed: number;
  already_open: number;
  refused: number;
}

export function renewalScanTask(deps: RenewalScanDeps) {
  const { db, log } = deps;
  return async (): Promise<RenewalScanResult> => {
    const result: RenewalScanResult = { due: 0, renewed: 0, already_open: 0, refused: 0 };
    const now = deps.now?.() ?? new Date();
    let after: { notAfter: Date; id: string } | null = null;
    for (let batch = 0; batch < deps.maxBatches; batch++) {
      const due = await certificates.findRenewalDue(db, { now, limit: deps.batchSize, after });
      for (const c of due) {
        result.due++;
        try {
          const r = await renewCertificate(
            db,
            deps.settings,
            { orgId: c.org_id, actor: SYSTEM_ACTORS.scheduler, principal: null },
            c.id,
            {
              justification: `automatic renewal: the certificate expires at ${c.not_after.toISOString()}, within the profile's renew_before_days (${c.renew_before_days})`,
            },
          );
          result.renewed++;
          log.info(
            { certificate_id: c.id, job_id: r.job.id, approval_id: r.approval?.id ?? null, not_after: c.not_after },
            'renewal requested',
          );
        } catch (err) {
          if (isDomainError(err) && err.code === 'renewal_in_progress') {
            result.already_open++;
          } else if (isDomainError(err)) {
            // The profile no longer allows these names, or similar: a person must look; the scan goes on.
            result.refused++;
            log.warn({ certificate_id: c.id, code: err.code, err: err.message }, 'automatic renewal refused');
          } else {
            throw err;
          }
        }
      }
      const last = due.at(-1);
      if (!last || due.length < deps.batchSize) break;
      after = { notAfter: last.not_after, id: last.id };
    }
    return result;
  };
}
