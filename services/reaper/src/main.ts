import { createCheckpointsForAllOrgs, keyringOf, verifyAllChains } from '@countersign/db';
import { closeSharedClients, openSigningKeyOrExit, startService } from '@countersign/runtime';
import { startReaper } from './reaper.ts';

/**
 * Composition root of the reaper: maintenance job schedulers (expiry,
 * reconciliation, renewal scan, audit verification, idempotency pruning) and
 * the gauges of pending approvals and queue depths. Any number may run.
 */
const rt = await startService('reaper');
const { config, log } = rt;

// The same key file as the api's: checkpoints signed here verify there (one mounted secret in production).
// It must be the key that signed the newest checkpoints, or a rotation the operator asked for.
const signingKey = await openSigningKeyOrExit(rt);
const keyring = keyringOf(signingKey.publicKey);

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
    auditCheckpointEveryMs: config.auditCheckpointIntervalMs,
    idempotencyPruneEveryMs: config.idempotencyPruneIntervalMs,
    gaugeRefreshMs: config.gaugeRefreshMs,
    reconcileGraceMs: config.reconcileGraceMs,
    batchSize: config.reaperBatchSize,
    expiryConcurrency: config.reaperExpiryConcurrency,
    idempotencyTtlMs: config.idempotencyTtlMs,
  },
  // Against the signed checkpoints, so truncation of the newest records is caught too.
  verifyAudit: () => verifyAllChains(rt.database, { mode: 'full', keyring }),
  checkpointAudit: () => createCheckpointsForAllOrgs(rt.database, signingKey),
});
rt.addReadiness('queue', async () => ({
  ok: reaper.worker.isRunning() && (await rt.workerRedis.ping()) === 'PONG',
}));

await rt.startOps();
log.info('reaper running its maintenance schedules');
rt.shutdown.add('reaper', () => reaper.close());
closeSharedClients(rt);
rt.shutdown.installSignalHandlers();
