import { approvals, type Db, identity } from '@countersign/db';
import type { Logger, metricFactories } from '@countersign/observability';
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
  readonly twoPersonReady: ReturnType<typeof metricFactories.twoPersonReady>;
  readonly log: Logger;
}

export function refreshGaugesTask(deps: GaugeDeps) {
  const seenProfiles = new Set<string>();
  /** Orgs this reaper last saw as ready (true) or not: the WARN line comes once per org and change, not per refresh. */
  const readiness = new Map<string, boolean>();
  return async (): Promise<void> => {
    for (const o of await identity.orgReadiness(deps.db)) {
      deps.twoPersonReady.set({ org_id: o.org_id }, o.ready ? 1 : 0);
      if (readiness.get(o.org_id) !== o.ready && !o.ready) {
        deps.log.warn(
          { org_id: o.org_id, org: o.name, enabled_admins: o.admins },
          'org is not yet two-person ready: one admin can change its configuration alone; add an independent admin with `countersign admin add`',
        );
      }
      readiness.set(o.org_id, o.ready);
    }
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
