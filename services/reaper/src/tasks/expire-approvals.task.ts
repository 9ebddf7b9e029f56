import type { approvals, Db } from '@countersign/db';
import type { Logger } from '@countersign/observability';
import { expireDue } from '@countersign/workflow';

/**
 * Ends pending approval requests past their deadline, in bounded batches (one
 * transaction each) until none are due or the run's batch budget is spent; the
 * next run continues. expireDue claims rows with SKIP LOCKED and decides
 * compare-and-set, and writes the job cancellation ('approval expired') and
 * one audit record per request, and one outbox event per org and batch that
 * the relay turns into each requester's mail, so
 * a late run, a repeated run or two reapers at once expire each request once.
 * When the first batch comes back full there is a backlog, and `concurrency`
 * transactions share the run's budget from then on (their claims never
 * overlap). Should one fail, the others stop after their batch in flight and
 * the run fails once all have ended, so no transaction outlives its run.
 * Metrics count only what this run expired.
 */
export interface ExpireDeps {
  readonly db: Db;
  readonly log: Logger;
  readonly batchSize: number;
  readonly maxBatches: number;
  /** Expiry transactions at once while a backlog lasts. */
  readonly concurrency: number;
  readonly onExpired: (e: { profileId: string; waitedSeconds: number }) => void;
  readonly now?: () => Date;
  /** One expiry transaction (workflow's expireDue); a stand-in in unit tests. */
  readonly expire?: (db: Db, now: Date, limit: number) => Promise<approvals.ExpiredApproval[]>;
}

export function expireApprovalsTask(deps: ExpireDeps) {
  const expire = deps.expire ?? expireDue;
  return async (): Promise<{ expired: number; batches: number }> => {
    let expired = 0;
    let batches = 0;
    let failed = false;
    /** One batch; says whether it came back full (more may be due). */
    const batch = async (): Promise<boolean> => {
      batches++;
      const rows = await expire(deps.db, deps.now?.() ?? new Date(), deps.batchSize);
      for (const a of rows) {
        deps.onExpired({ profileId: a.profile_id, waitedSeconds: a.waited_seconds });
        // Each expiry is in the audit ledger; the log gets one line per batch (a backlog can be large).
        deps.log.debug({ approval_id: a.id, job_id: a.job_id }, 'approval request expired');
      }
      if (rows.length > 0) deps.log.info({ expired: rows.length }, 'approval requests expired');
      expired += rows.length;
      return rows.length === deps.batchSize;
    };
    const drain = async () => {
      try {
        while (!failed && batches < deps.maxBatches && (await batch())) {}
      } catch (err) {
        failed = true;
        throw err;
      }
    };
    if (deps.maxBatches < 1 || !(await batch())) return { expired, batches };
    const ended = await Promise.allSettled(Array.from({ length: deps.concurrency }, drain));
    const errors = ended.flatMap((e) => (e.status === 'rejected' ? [e.reason] : []));
    if (errors.length === 1) throw errors[0];
    if (errors.length > 1) throw new AggregateError(errors, `${errors.length} expiry transactions failed`);
    return { expired, batches };
  };
}
