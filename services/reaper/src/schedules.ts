import type { Logger } from '@countersign/observability';
import type { MaintenanceTask, TypedQueue } from '@countersign/queues';

/**
 * Every schedule of the reaper, in one place. The queue-driven ones are BullMQ
 * job schedulers on the `maintenance` queue: any number of reapers declare the
 * same scheduler ids and BullMQ keeps one of each, so a task fires once per
 * interval however many replicas run (and each task is safe to run twice
 * anyway). Ids carry a version: changing what a schedule means is a new id,
 * and the ids no longer declared are removed when a reaper starts.
 */
export interface ScheduleSettings {
  readonly expireEveryMs: number;
  readonly reconcileEveryMs: number;
  readonly renewalScanEveryMs: number;
  readonly auditVerifyEveryMs: number;
  readonly auditCheckpointEveryMs: number;
  readonly idempotencyPruneEveryMs: number;
  /** Refresh of the gauges this reaper exports (see LOCAL_SCHEDULES). */
  readonly gaugeRefreshMs: number;
}

export interface ScheduleSpec {
  /** The job scheduler id: the task name plus a version. */
  readonly id: string;
  readonly task: MaintenanceTask;
  readonly everyMs: number;
}

export const SCHEDULE_TIMEZONE = 'UTC';

export function scheduleSpecs(s: ScheduleSettings): ScheduleSpec[] {
  return [
    { id: 'expire-approvals-v1', task: 'expire-approvals', everyMs: s.expireEveryMs },
    { id: 'reconcile-released-v1', task: 'reconcile-released', everyMs: s.reconcileEveryMs },
    { id: 'reconcile-notifications-v1', task: 'reconcile-notifications', everyMs: s.reconcileEveryMs },
    { id: 'renewal-scan-v1', task: 'renewal-scan', everyMs: s.renewalScanEveryMs },
    { id: 'verify-audit-v1', task: 'verify-audit', everyMs: s.auditVerifyEveryMs },
    { id: 'checkpoint-audit-v1', task: 'checkpoint-audit', everyMs: s.auditCheckpointEveryMs },
    { id: 'prune-idempotency-v1', task: 'prune-idempotency', everyMs: s.idempotencyPruneEveryMs },
    { id: 'expire-config-requests-v1', task: 'expire-config-requests', everyMs: s.expireEveryMs },
  ];
}

/**
 * Timers that deliberately run on every reaper rather than once per cluster:
 * a gauge must be fresh in each process that exports it, and the scheduler
 * check re-creates schedulers that vanished (a Redis wipe or failover loses
 * them, and nothing else would bring them back until the next restart).
 */
export function localSchedules(s: ScheduleSettings, specs: readonly ScheduleSpec[]) {
  return {
    gaugeRefreshMs: s.gaugeRefreshMs,
    schedulerCheckMs: Math.min(30_000, ...specs.map((x) => x.everyMs)),
  };
}

/** Creates each declared scheduler that is missing or whose interval changed; returns the ids written. */
export async function ensureSchedules(
  queue: TypedQueue<'maintenance'>,
  specs: readonly ScheduleSpec[],
): Promise<string[]> {
  const written: string[] = [];
  for (const spec of specs) {
    const existing = await queue.getJobScheduler(spec.id);
    if (existing && existing.every === spec.everyMs && existing.name === spec.task) continue;
    await queue.upsertJobScheduler(
      spec.id,
      { every: spec.everyMs, tz: SCHEDULE_TIMEZONE },
      {
        name: spec.task,
        data: { scheduler: spec.id },
        // A run either finishes or is superseded by the next one; keep a short history for the dashboard.
        opts: { attempts: 1, removeOnComplete: { count: 50 }, removeOnFail: { count: 200 } },
      },
    );
    written.push(spec.id);
  }
  return written;
}

/** Schedulers of tasks that no longer exist at all; their ids are removed wherever found. */
export const RETIRED_SCHEDULER_IDS: readonly string[] = [];

const VERSIONED = /^(.+)-v(\d+)$/;

/**
 * Is this scheduler id superseded by a declared one? Only older versions of
 * declared tasks (and the explicit list) count: during a rolling deploy an
 * old reaper must not remove the schedules a newer one added.
 */
export function isRetired(id: string, specs: readonly ScheduleSpec[]): boolean {
  if (RETIRED_SCHEDULER_IDS.includes(id)) return true;
  const m = VERSIONED.exec(id);
  if (!m) return false;
  const [, task, version] = m;
  return specs.some((s) => {
    const d = VERSIONED.exec(s.id);
    return d !== null && d[1] === task && Number(d[2]) > Number(version);
  });
}

/**
 * Brings the queue's schedulers in line with the declarations: removes retired
 * ids and writes missing or changed ones. Runs at start and on every reaper's
 * scheduler check; idempotent, so replicas doing it at once agree.
 */
export async function declareSchedules(
  queue: TypedQueue<'maintenance'>,
  specs: readonly ScheduleSpec[],
  log: Logger,
): Promise<{ written: string[]; removed: string[] }> {
  const removed: string[] = [];
  for (const s of await queue.getJobSchedulers(0, -1)) {
    const id = s.id ?? s.key;
    if (isRetired(id, specs)) {
      await queue.removeJobScheduler(id);
      removed.push(id);
    }
  }
  const written = await ensureSchedules(queue, specs);
  if (written.length || removed.length) {
    log.info(
      { written, removed, schedules: specs.map((s) => `${s.id} every ${s.everyMs}ms`), tz: SCHEDULE_TIMEZONE },
      'maintenance schedules declared',
    );
  }
  return { written, removed };
}
