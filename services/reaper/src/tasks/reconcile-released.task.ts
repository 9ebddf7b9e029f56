import { type Db, jobs } from '@countersign/db';
import type { Logger } from '@countersign/observability';
import { enqueue, jobIds, type TypedQueue } from '@countersign/queues';

/**
 * Re-releases work whose queue message is gone. PostgreSQL is the record: a
 * job released (`pending`) longer than the grace period and still not finished
 * must have a live message on the issuance queue. When the message is missing
 * (Redis wiped or restarted without persistence), it is added again under the
 * job's deterministic id; when it failed or completed without the row
 * finishing, it is replaced by a fresh one. Waiting, delayed and active
 * messages are left alone. Safe twice and on several reapers: adding under an
 * existing id is a no-op, and the issuer re-checks the row and signs at most
 * once per job whatever the queue delivers.
 */
export interface ReconcileDeps {
  readonly db: Db;
  readonly log: Logger;
  readonly issuance: TypedQueue<'issuance'>;
  readonly graceMs: number;
  readonly batchSize: number;
  readonly maxBatches: number;
}

export interface ReconcileResult {
  checked: number;
  readded: number;
  replaced: number;
}

export function reconcileReleasedTask(deps: ReconcileDeps) {
  const { issuance, log } = deps;

  async function release(jobId: string): Promise<void> {
    await enqueue(issuance, 'issuance', { job_id: jobId }, { jobId: jobIds.issuance(jobId) });
  }

  return async (): Promise<ReconcileResult> => {
    const result: ReconcileResult = { checked: 0, readded: 0, replaced: 0 };
    let after: { releasedAt: Date; id: string } | null = null;
    for (let batch = 0; batch < deps.maxBatches; batch++) {
      const stale = await jobs.findStaleReleasedJobsPage(deps.db, {
        graceMs: deps.graceMs,
        limit: deps.batchSize,
        after,
      });
      for (const row of stale) {
        result.checked++;
        const message = await issuance.getJob(jobIds.issuance(row.id));
        const state = message ? await message.getState() : 'missing';
        if (state === 'missing' || state === 'unknown') {
          await release(row.id);
          result.readded++;
          log.warn(
            { job_id: row.id, released_at: row.released_at },
            'released job had no queue message; released again',
          );
        } else if (state === 'failed' || state === 'completed') {
          try {
            await message?.remove();
          } catch (err) {
            // Another reaper replaced it first, or the issuer picked it up: nothing to do now.
            log.info(
              { job_id: row.id, err: err instanceof Error ? err.message : String(err) },
              'message busy; left alone',
            );
            continue;
          }
          await release(row.id);
          result.replaced++;
          log.warn(
            { job_id: row.id, queue_state: state },
            'released job unfinished but its message ended; released again',
          );
        }
      }
      const last = stale.at(-1);
      if (!last?.released_at || stale.length < deps.batchSize) break;
      after = { releasedAt: last.released_at, id: last.id };
    }
    return result;
  };
}
