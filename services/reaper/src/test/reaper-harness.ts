import { createCheckpointsForAllOrgs, generateSigningKey, verifyAllChains } from '@countersign/db';
import { createLogger, createRegistry, type Registry } from '@countersign/observability';
import { createRedis } from '@countersign/queues';
import type { Pipeline } from '../../../notifier/src/test/pipeline-harness.ts';
import { type Reaper, type ReaperDeps, type ReaperSettings, startReaper } from '../reaper.ts';

/** A reaper against a test pipeline, with its own Redis connections and registry, as a separate process would have. */
export interface TestReaper extends Reaper {
  readonly registry: Registry;
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  /** Sum and count of a histogram's series matching the labels. */
  histogram(name: string, labels?: Record<string, string>): Promise<{ count: number; sum: number }>;
}

export const FAST: ReaperSettings = {
  workflow: { approvalTimeoutMs: 168 * 3_600_000, escalationAfterMs: 24 * 3_600_000 },
  expireEveryMs: 1_000,
  reconcileEveryMs: 1_000,
  renewalScanEveryMs: 3_600_000,
  auditVerifyEveryMs: 3_600_000,
  auditCheckpointEveryMs: 3_600_000,
  idempotencyPruneEveryMs: 3_600_000,
  gaugeRefreshMs: 200,
  reconcileGraceMs: 1_000,
  batchSize: 100,
  expiryConcurrency: 2,
  idempotencyTtlMs: 24 * 3_600_000,
};

const signingKey = generateSigningKey();

export async function startTestReaper(
  p: Pipeline,
  settings: Partial<ReaperSettings> = {},
  /** Stand-ins for the ledger's work (a run the test holds open, say). */
  ledger: Partial<Pick<ReaperDeps, 'verifyAudit' | 'checkpointAudit'>> = {},
): Promise<TestReaper> {
  const producer = createRedis(p.redisUrl, 'producer');
  const blocking = createRedis(p.redisUrl, 'worker');
  const registry = createRegistry('reaper-test');
  const reaper = await startReaper({
    db: p.db,
    log: createLogger('reaper-test', process.env.TEST_LOG_LEVEL ?? 'silent'),
    registry,
    queues: { connection: producer, prefix: p.prefix },
    workerQueues: { connection: blocking, prefix: p.prefix },
    settings: { ...FAST, ...settings },
    verifyAudit: () => verifyAllChains(p.tdb.handle, { mode: 'full' }),
    checkpointAudit: () => createCheckpointsForAllOrgs(p.tdb.handle, signingKey),
    ...ledger,
  });
  const values = async (name: string, labels: Record<string, string>) => {
    const m = await registry.getSingleMetric(name)?.get();
    return (m?.values ?? []).filter((x) => Object.entries(labels).every(([k, v]) => x.labels[k] === v));
  };
  return {
    ...reaper,
    registry,
    metric: async (name, labels = {}) => (await values(name, labels)).reduce((a, v) => a + v.value, 0),
    histogram: async (name, labels = {}) => {
      const vs = await values(name, labels);
      const pick = (suffix: string) =>
        vs
          .filter((v) => (v as { metricName?: string }).metricName === `${name}_${suffix}`)
          .reduce((a, v) => a + v.value, 0);
      return { count: pick('count'), sum: pick('sum') };
    },
    close: async () => {
      await reaper.close();
      await Promise.allSettled([producer.quit(), blocking.quit()]);
    },
  };
}
