import { readFile } from 'node:fs/promises';
import { loadLocalCaFromFiles, loadOrCreateLocalCa, localConnector } from '@countersign/ca';
import { metricFactories } from '@countersign/observability';
import { createWorker } from '@countersign/queues';
import { closeSharedClients, startService } from '@countersign/runtime';
import { issueJobHandler, recordIssuanceFailure } from './issue-job.handler.ts';

/** Composition root of the issuer: consumes only the pending (issuance) queue. */
const rt = await startService('issuer');
const { config, log, registry } = rt;
const db = rt.database.db;

async function loadCa() {
  if (config.caCertFile && config.caKeyFile) {
    const chain = config.caChainFile ? await readFile(config.caChainFile, 'utf8') : '';
    return loadLocalCaFromFiles({
      certPem: await readFile(config.caCertFile, 'utf8'),
      keyPem: await readFile(config.caKeyFile, 'utf8'),
      chainPems: chain.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [],
    });
  }
  return loadOrCreateLocalCa({ dir: config.caDir });
}

const ca = await loadCa();
const connectors = new Map([['local', localConnector(ca)]]);
const issued = metricFactories.issued(registry);
const issuanceSeconds = metricFactories.issuanceSeconds(registry);
const issue = issueJobHandler(db, connectors, log);

const worker = createWorker(
  'issuance',
  rt.workerQueues,
  async (data) => {
    const outcome = await issue(data.job_id);
    if (outcome.status === 'issued') {
      issued.inc({ profile_id: outcome.profileId, issuer: outcome.issuer });
      if (outcome.releasedAt) issuanceSeconds.observe((Date.now() - outcome.releasedAt.getTime()) / 1000);
    }
    return outcome;
  },
  { concurrency: config.issuerConcurrency },
);
worker.on('failed', (job, err) => {
  log.warn({ jobId: job?.id, err: err.message, attempts: job?.attemptsMade }, 'issuance attempt failed');
  if (job && job.attemptsMade >= (job.opts.attempts ?? 1)) {
    const jobId = (job.data as { job_id?: string }).job_id;
    if (jobId)
      void recordIssuanceFailure(db, jobId, err.message).catch((e: unknown) =>
        log.error({ err: e }, 'could not record failure'),
      );
  }
});
worker.on('error', (err) => log.warn({ err: err.message }, 'issuer worker error'));
rt.addReadiness('queue', async () => ({ ok: worker.isRunning() && (await rt.workerRedis.ping()) === 'PONG' }));

await rt.startOps();
log.info({ concurrency: config.issuerConcurrency, root: ca.rootPem.length > 0 }, 'issuer consuming the issuance queue');
rt.shutdown.add('worker', () => worker.close());
closeSharedClients(rt);
rt.shutdown.installSignalHandlers();
