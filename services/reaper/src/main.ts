import { verifyAllChains } from '@countersign/db';
import { closeSharedClients, startService } from '@countersign/runtime';
import { startReaper } from './reaper.ts';

/**
 * Composition root of the reaper: maintenance job schedulers (expiry,
 * reconciliation, renewal scan, audit verification, idempotency pruning) and
 * the gauges of pending approvals and queue depths. Any number may run.
 */
const rt = await startService('reaper');
const { config, log } = rt;

const reaper = await startReaper({
  db: rt.database.db,
  log,
  registry: rt.registry,
  queues: rt.queues,
  workerQueues: rt.workerQueues,
  settings: {
    workflow: { approvalTimeoutMs: config.approvalTimeoutMs, escalationAfterMs: config.escalationAfterMs },
    expireEveryMs: config.reaperExpireIntervalMs,
    reconcileEveryMs: config.reaperReconcileIntervalMs,
    renewalScanEveryMs: config.renewalScanIntervalMs,
    auditVerifyEveryMs: config.auditVerifyIntervalMs,
    idempotencyPruneEveryMs: config.idempotencyPruneIntervalMs,
    gaugeRefreshMs: config.gaugeRefreshMs,
    reconcileGraceMs: config.reconcileGraceMs,
    batchSize: config.reaperBatchSize,
    idempotencyTtlMs: config.idempotencyTtlMs,
  },
  verifyAudit: () => verifyAllChains(rt.database, { mode: 'full' }),
});
rt.addReadiness('queue', async () => ({
  ok: reaper.worker.isRunning() && (await rt.workerRedis.ping()) === 'PONG',
}));

await rt.startOps();
log.info('reaper running its maintenance schedules');
rt.shutdown.add('reaper', () => reaper.close());
closeSharedClients(rt);
rt.shutdown.installSignalHandlers();
