import type { Db } from '@countersign/db';
import { type Logger, metricFactories, type Registry } from '@countersign/observability';
import {
  createWorker,
  MAINTENANCE_TASKS,
  type MaintenanceTask,
  openQueue,
  type QueueContext,
  UnrecoverableError,
  type Worker,
} from '@countersign/queues';
import { expireConfigRequests, type WorkflowSettings } from '@countersign/workflow';
import { declareSchedules, localSchedules, type ScheduleSettings, scheduleSpecs } from './schedules.ts';
import { SKIPPED, skipWhileRunning } from './skip-while-running.ts';
import { expireApprovalsTask } from './tasks/expire-approvals.task.ts';
import { refreshGaugesTask } from './tasks/gauges.task.ts';
import { pruneIdempotencyTask } from './tasks/prune-idempotency.task.ts';
import { reconcileNotificationsTask } from './tasks/reconcile-notifications.task.ts';
import { reconcileReleasedTask } from './tasks/reconcile-released.task.ts';
import { renewalScanTask } from './tasks/renewal-scan.task.ts';
import { type ChainsReport, verifyAuditTask } from './tasks/verify-audit.task.ts';

/**
 * The reaper, assembled from injected clients: its tasks, the job schedulers
 * that fire them on the `maintenance` queue, the worker that runs them, and
 * its local timers (gauges, scheduler check). main.ts passes the process's
 * clients; tests start several of these against one Redis to play replicas.
 */
export interface ReaperSettings extends ScheduleSettings {
  readonly workflow: WorkflowSettings;
  readonly reconcileGraceMs: number;
  readonly batchSize: number;
  readonly idempotencyTtlMs: number;
  /** Batches one task run may take before leaving the rest to the next run. */
  readonly maxBatchesPerRun?: number;
  /** Expiry transactions one run keeps going at once while clearing a backlog (COUNTERSIGN_REAPER_EXPIRY_CONCURRENCY). */
  readonly expiryConcurrency: number;
}

export interface ReaperDeps {
  readonly db: Db;
  readonly log: Logger;
  readonly registry: Registry;
  /** Producer connection (queues, schedulers). */
  readonly queues: QueueContext;
  /** Blocking connection for the worker. */
  readonly workerQueues: QueueContext;
  readonly settings: ReaperSettings;
  /** Verifies every org's audit chain (the ledger's verifyAllChains). */
  readonly verifyAudit: () => Promise<ChainsReport>;
  /** Signs a checkpoint of every org's chain head (the ledger's createCheckpointsForAllOrgs). */
  readonly checkpointAudit: () => Promise<{
    created: number;
    unchanged: number;
    failures: { org_id: string; error: string }[];
  }>;
}

export type TaskTable = Record<MaintenanceTask, () => Promise<unknown>>;

/**
 * The scheduled verification runs on one reaper; its result is kept in Redis
 * so every reaper exports the same countersign_audit_chain_ok. A reaper that
 * has seen no result yet exports no value rather than a misleading 0.
 */
function chainStatus(deps: ReaperDeps) {
  const key = `${deps.queues.prefix}:audit-chain-status`;
  let gauge: ReturnType<typeof metricFactories.auditChainOk> | null = null;
  const show = (ok: boolean) => {
    gauge ??= metricFactories.auditChainOk(deps.registry);
    gauge.set(ok ? 1 : 0);
  };
  return {
    publish: async (ok: boolean) => {
      show(ok);
      await deps.queues.connection.set(key, JSON.stringify({ ok, at: new Date().toISOString() }));
    },
    refresh: async () => {
      const raw = await deps.queues.connection.get(key);
      if (raw) show((JSON.parse(raw) as { ok: boolean }).ok);
    },
  };
}

export function buildTasks(
  deps: ReaperDeps,
  queues: ReturnType<typeof openQueues>,
  chain: ReturnType<typeof chainStatus>,
): TaskTable {
  const { db, log, registry, settings } = deps;
  const decisions = metricFactories.decisions(registry);
  const pendingAge = metricFactories.pendingAge(registry);
  const maxBatches = settings.maxBatchesPerRun ?? 50;
  const batchSize = settings.batchSize;
  return {
    'expire-approvals': expireApprovalsTask({
      db,
      log,
      batchSize,
      maxBatches,
      concurrency: settings.expiryConcurrency,
      onExpired: ({ profileId, waitedSeconds }) => {
        decisions.inc({ outcome: 'expired', profile_id: profileId });
        pendingAge.observe({ profile_id: profileId }, waitedSeconds);
      },
    }),
    'reconcile-released': reconcileReleasedTask({
      db,
      log,
      issuance: queues.issuance,
      graceMs: settings.reconcileGraceMs,
      batchSize,
      maxBatches,
    }),
    'reconcile-notifications': reconcileNotificationsTask({
      db,
      log,
      notifications: queues.notifications,
      graceMs: settings.reconcileGraceMs,
      batchSize,
      maxBatches,
    }),
    'renewal-scan': renewalScanTask({ db, log, settings: settings.workflow, batchSize, maxBatches }),
    'verify-audit': verifyAuditTask({ log, verify: deps.verifyAudit, publish: chain.publish }),
    'checkpoint-audit': async () => {
      const r = await deps.checkpointAudit();
      for (const f of r.failures) log.error({ org_id: f.org_id, reason: f.error }, 'audit checkpoint refused');
      if (r.created > 0) log.info({ created: r.created, unchanged: r.unchanged }, 'audit checkpoints signed');
      return r;
    },
    'prune-idempotency': pruneIdempotencyTask({ db, ttlMs: settings.idempotencyTtlMs, batchSize, maxBatches }),
    'expire-config-requests': async () => {
      // Configuration requests are few: one bounded batch per run, the rest next run.
      const expired = await expireConfigRequests(db, new Date(), batchSize);
      for (const r of expired) {
        log.info({ config_request_id: r.id, org_id: r.org_id, kind: r.kind }, 'configuration request expired');
      }
      return { expired: expired.length };
    },
  };
}

function openQueues(ctx: QueueContext) {
  return {
    maintenance: openQueue('maintenance', ctx),
    issuance: openQueue('issuance', ctx),
    notifications: openQueue('notifications', ctx),
    renewalRequests: openQueue('renewal-requests', ctx),
  };
}

export interface Reaper {
  readonly worker: Worker;
  readonly tasks: TaskTable;
  readonly queues: ReturnType<typeof openQueues>;
  /** Runs one task now, outside the schedule (tests, operators). */
  run(task: MaintenanceTask): Promise<unknown>;
  refreshGauges(): Promise<void>;
  checkSchedules(): Promise<{ written: string[]; removed: string[] }>;
  close(): Promise<void>;
}

export async function startReaper(deps: ReaperDeps): Promise<Reaper> {
  const { log, settings } = deps;
  const queues = openQueues(deps.queues);
  const chain = chainStatus(deps);
  const tasks = buildTasks(deps, queues, chain);
  const specs = scheduleSpecs(settings);
  const local = localSchedules(settings, specs);

  const run = async (task: MaintenanceTask): Promise<unknown> => {
    const started = Date.now();
    const result = await tasks[task]();
    log.info({ task, ms: Date.now() - started, result }, 'maintenance task done');
    return result;
  };
  // BullMQ starts a scheduled run while the last one still goes. A second run of a task would read the
  // same rows and repeat the first's work (expiry's own concurrency is inside its run), so a scheduled run
  // is skipped while one of its task is going here.
  const scheduled = skipWhileRunning(run);

  const refreshQueueGauges = refreshGaugesTask({
    db: deps.db,
    queues: Object.values(queues),
    pending: metricFactories.pendingGauge(deps.registry),
    queueJobs: metricFactories.queueJobs(deps.registry),
    twoPersonReady: metricFactories.twoPersonReady(deps.registry),
    log: deps.log,
  });
  const refreshGauges = async () => {
    await refreshQueueGauges();
    await chain.refresh();
  };
  const checkSchedules = () => declareSchedules(queues.maintenance, specs, log);

  await checkSchedules();
  const worker = createWorker(
    'maintenance',
    deps.workerQueues,
    async (_data, job) => {
      const task = MAINTENANCE_TASKS.find((t) => t === job.name);
      if (!task) throw new UnrecoverableError(`no handler for maintenance task "${job.name}"`);
      const outcome = await scheduled.run(task);
      if (outcome === SKIPPED) {
        // Warned, not merely noted: a run that never ends keeps every later one of its task from starting.
        log.warn(
          { task, running_for_ms: scheduled.runningForMs(task) },
          'maintenance task skipped: its previous run is still going',
        );
      }
      return outcome;
    },
    // A slot per task, so a long audit verification never delays an expiry run. A skipped run holds
    // its slot only for a moment.
    { concurrency: MAINTENANCE_TASKS.length },
  );
  worker.on('failed', (job, err) => log.error({ task: job?.name, err: err.message }, 'maintenance task failed'));
  worker.on('error', (err) => log.warn({ err: err.message }, 'maintenance worker error'));

  const guard = (what: string, fn: () => Promise<unknown>) => () =>
    void fn().catch((err: unknown) => log.warn({ err: err instanceof Error ? err.message : String(err) }, what));
  const gaugeTimer = setInterval(guard('gauge refresh failed', refreshGauges), local.gaugeRefreshMs);
  const scheduleTimer = setInterval(guard('scheduler check failed', checkSchedules), local.schedulerCheckMs);
  void guard('gauge refresh failed', refreshGauges)();

  return {
    worker,
    tasks,
    queues,
    run,
    refreshGauges,
    checkSchedules,
    close: async () => {
      clearInterval(gaugeTimer);
      clearInterval(scheduleTimer);
      await worker.close();
      await Promise.all(Object.values(queues).map((q) => q.close()));
    },
  };
}
