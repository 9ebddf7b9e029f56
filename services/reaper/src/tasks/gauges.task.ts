import { approvals, type Db } from '@countersign/db';
import type { metricFactories } from '@countersign/observability';
import type { Queue } from '@countersign/queues';

/**
 * The gauges the reaper owns: pending approval requests per profile, and
 * BullMQ jobs per queue and state. Every reaper replica reports the same
 * values (aggregate them with max, not sum). A profile whose last request was
 * decided reports 0 rather than vanishing from the series.
 */
export const QUEUE_STATES = [
  'waiting',
  'active',
  'delayed',
  'prioritized',
  'waiting-children',
  'failed',
  'completed',
] as const;

export interface GaugeDeps {
  readonly db: Db;
  readonly queues: readonly Queue[];
  readonly pending: ReturnType<typeof metricFactories.pendingGauge>;
  readonly queueJobs: ReturnType<typeof metricFactories.queueJobs>;
}

export function refreshGaugesTask(deps: GaugeDeps) {
  const seenProfiles = new Set<string>();
  return async (): Promise<void> => {
    const rows = await approvals.countPendingByProfile(deps.db);
    const now = new Set(rows.map((r) => r.profile_id));
    for (const r of rows) deps.pending.set({ profile_id: r.profile_id }, r.pending);
    for (const id of seenProfiles) if (!now.has(id)) deps.pending.set({ profile_id: id }, 0);
    for (const id of now) seenProfiles.add(id);
    for (const q of deps.queues) {
      const counts = await q.getJobCounts(...QUEUE_STATES);
      for (const state of QUEUE_STATES) deps.queueJobs.set({ queue: q.name, state }, counts[state] ?? 0);
    }
  };
}
