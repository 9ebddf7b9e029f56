import { approvals, claimOutbox, type Db, deleteOutbox, type OutboxRow } from '@countersign/db';
import type { Logger } from '@countersign/observability';
import { enqueueMany, type JobSpec, jobIds, type TypedQueue } from '@countersign/queues';
import type { DecisionResult } from '@countersign/workflow';

/**
 * Drains the transactional outbox into BullMQ. Rows are claimed with SKIP
 * LOCKED, published, and deleted in one transaction: if Redis refuses, the
 * transaction rolls back and the rows wait for the next drain; if the relay
 * dies after publishing but before commit, the rows are published again and
 * the deterministic job ids (plus idempotent consumers) absorb the repeat.
 */
/** The mail job for a request submitted or decided: one per request and kind (its job id dedupes replays). */
function approvalNotice(
  kind: 'approval_submitted' | 'approval_decided',
  org_id: string,
  approval_id: string,
): JobSpec<'notifications'> {
  return { data: { kind, org_id, approval_id }, opts: { jobId: jobIds.notification(kind, approval_id) } };
}

export interface RelayDeps {
  readonly db: Db;
  readonly log: Logger;
  readonly issuance: TypedQueue<'issuance'>;
  readonly notifications: TypedQueue<'notifications'>;
  readonly batchSize: number;
  /** COUNTERSIGN_APPROVAL_BYPASS: auto-approve non-production requests. */
  readonly bypass: ((approvalId: string) => Promise<DecisionResult | null>) | null;
  readonly onBypassed?: (r: DecisionResult) => void;
  /** Messages one batch may publish (default MAX_MESSAGES_PER_BATCH). */
  readonly maxMessagesPerBatch?: number;
}

/**
 * Messages one relay batch publishes at most. An expiry event fans out into
 * one mail per request (up to the reaper's batch size each), so 200 claimed
 * rows could otherwise mean hundreds of thousands of jobs held in memory at once.
 */
export const MAX_MESSAGES_PER_BATCH = 5_000;

/** How many queue messages a row becomes when published. */
function messagesOf(row: OutboxRow): number {
  if (row.topic === 'approvals.expired') return (row.payload as { approval_ids: string[] }).approval_ids.length;
  // A submission: its mail and its first reminder.
  if (row.topic === 'approval.submitted') return 2;
  return 1;
}

/** The oldest rows whose messages fit `budget`, and always the first (a row is never split). */
export function withinBudget(rows: readonly OutboxRow[], budget: number): OutboxRow[] {
  let used = 0;
  let n = 0;
  for (const row of rows) {
    used += messagesOf(row);
    if (n > 0 && used > budget) break;
    n++;
  }
  return rows.slice(0, n);
}

export function createRelay(deps: RelayDeps) {
  const { db, log } = deps;

  /**
   * Publishes a claimed batch: per queue, one Redis transaction per
   * ENQUEUE_CHUNK messages (addBulk), and one read for the first reminders of
   * the batch's new requests, instead of a round trip per row.
   */
  async function publish(rows: readonly OutboxRow[]): Promise<void> {
    const issuance: JobSpec<'issuance'>[] = [];
    const notifications: JobSpec<'notifications'>[] = [];
    const submitted = rows
      .filter((r) => r.topic === 'approval.submitted')
      .map((r) => (r.payload as { approval_id: string }).approval_id);
    const requests = new Map((await approvals.findEscalationStarts(db, submitted)).map((a) => [a.id, a]));
    for (const row of rows) {
      switch (row.topic) {
        case 'job.released': {
          const { job_id } = row.payload as { job_id: string };
          issuance.push({ data: { job_id }, opts: { jobId: jobIds.issuance(job_id) } });
          break;
        }
        case 'approval.submitted': {
          const { approval_id } = row.payload as { approval_id: string };
          notifications.push(approvalNotice('approval_submitted', row.org_id, approval_id));
          const approval = requests.get(approval_id);
          if (approval?.escalate_at && approval.state === 'pending') {
            notifications.push({
              data: { kind: 'approval_escalation', org_id: row.org_id, approval_id, round: 1 },
              opts: {
                jobId: jobIds.notification('approval_escalation', approval_id, 1),
                delay: Math.max(0, approval.escalate_at.getTime() - Date.now()),
              },
            });
          }
          break;
        }
        case 'approval.decided': {
          const { approval_id } = row.payload as { approval_id: string };
          notifications.push(approvalNotice('approval_decided', row.org_id, approval_id));
          break;
        }
        case 'approvals.expired': {
          const { approval_ids } = row.payload as { approval_ids: string[] };
          for (const id of approval_ids) notifications.push(approvalNotice('approval_decided', row.org_id, id));
          break;
        }
        case 'certificate.issued': {
          const { job_id, version_id } = row.payload as { job_id: string; version_id: string };
          notifications.push({
            data: { kind: 'certificate_issued', org_id: row.org_id, job_id, version_id },
            opts: { jobId: jobIds.notification('certificate_issued', version_id) },
          });
          break;
        }
        default:
          log.error({ topic: row.topic, id: row.id }, 'unknown outbox topic; dropping');
      }
    }
    await enqueueMany(deps.issuance, 'issuance', issuance);
    await enqueueMany(deps.notifications, 'notifications', notifications);
  }

  /**
   * One batch: claims up to batchSize rows and publishes the oldest of them
   * whose messages fit the budget (always at least one); the rest stay in the
   * outbox for the next batch.
   */
  async function drainOnce(): Promise<{ claimed: number; published: number }> {
    const bypassed: string[] = [];
    const counts = await db.transaction().execute(async (tx) => {
      const claimed = await claimOutbox(tx, deps.batchSize);
      const rows = withinBudget(claimed, deps.maxMessagesPerBatch ?? MAX_MESSAGES_PER_BATCH);
      await publish(rows);
      for (const row of rows) {
        if (row.topic === 'approval.submitted' && deps.bypass) {
          bypassed.push((row.payload as { approval_id: string }).approval_id);
        }
      }
      await deleteOutbox(
        tx,
        rows.map((r) => r.id),
      );
      return { claimed: claimed.length, published: rows.length };
    });
    // Bypass decisions run after the batch committed, in their own transactions.
    for (const id of bypassed) {
      const result = await deps.bypass?.(id);
      if (result) {
        log.warn({ approval_id: id }, 'approval bypassed (COUNTERSIGN_APPROVAL_BYPASS)');
        deps.onBypassed?.(result);
      }
    }
    return counts;
  }

  let draining: Promise<void> | null = null;
  let again = false;

  /** Drains until empty. Concurrent calls coalesce into one loop plus one more pass. */
  function drain(): Promise<void> {
    if (draining) {
      again = true;
      return draining;
    }
    draining = (async () => {
      try {
        do {
          again = false;
          for (;;) {
            const { claimed, published } = await drainOnce();
            // A full claim, or one cut short by the budget, means more is waiting.
            if (claimed < deps.batchSize && published === claimed) break;
          }
        } while (again);
      } catch (err) {
        log.warn({ err: err instanceof Error ? err.message : String(err) }, 'outbox drain failed; will retry');
      } finally {
        draining = null;
      }
    })();
    return draining;
  }

  return { drain, drainOnce };
}
