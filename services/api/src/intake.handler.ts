import { type Db, identity } from '@countersign/db';
import { actorOf, DomainError, type Principal, type PrincipalKind, type Role } from '@countersign/domain';
import { type PayloadOf, type RenewalRequestResult, UnrecoverableError } from '@countersign/queues';
import { renewCertificate, requestCertificate, requesterOf, type WorkflowSettings } from '@countersign/workflow';

/**
 * The `renewal-requests` intake queue (SPEC §4): each message is handled exactly
 * as the same principal's HTTP request would be, through the same use cases,
 * with the message's idempotency_key playing the Idempotency-Key header (so a
 * re-delivered message returns the first answer instead of a second job).
 * Domain refusals are permanent: the job fails with the reason and nothing is written.
 */
export function intakeHandler(db: Db, settings: WorkflowSettings) {
  return async (data: PayloadOf<'renewal-requests'>): Promise<RenewalRequestResult> => {
    const row = await identity.findPrincipalById(db, data.principal_id);
    if (!row || row.disabled_at !== null) {
      throw new UnrecoverableError(`principal ${data.principal_id} does not exist or is disabled`);
    }
    const principal: Principal = {
      id: row.id,
      orgId: row.org_id,
      role: row.role as Role,
      kind: row.kind as PrincipalKind,
      name: row.name,
    };
    const who = requesterOf(principal, actorOf(principal));
    try {
      if ('certificate_id' in data) {
        const body = { justification: data.justification, csr: data.csr };
        const r = await renewCertificate(db, settings, who, data.certificate_id, body, {
          key: data.idempotency_key,
          fingerprint: { operation: `renew:${data.certificate_id}`, body },
        });
        return { job_id: r.job.id, approval_id: r.approval?.id ?? null, certificate_id: r.certificate.id };
      }
      const body = {
        profile_id: data.profile_id,
        common_name: data.common_name,
        sans: data.sans,
        csr: data.csr,
        justification: data.justification,
      };
      const r = await requestCertificate(db, settings, who, body, {
        key: data.idempotency_key,
        fingerprint: { operation: 'request', body },
      });
      return { job_id: r.job.id, approval_id: r.approval?.id ?? null, certificate_id: r.certificate.id };
    } catch (err) {
      if (err instanceof DomainError) {
        throw new UnrecoverableError(`${err.code}: ${err.message}`);
      }
      throw err;
    }
  };
}
