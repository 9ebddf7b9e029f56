import { X509Certificate } from 'node:crypto';
import { IssuingCaError, loadIssuingCa, localConnector } from '@countersign/ca';
import { metricFactories } from '@countersign/observability';
import { createWorker } from '@countersign/queues';
import { closeSharedClients, startService } from '@countersign/runtime';
import { issueJobHandler, recordIssuanceFailure } from './issue-job.handler.ts';

/** Composition root of the issuer: consumes only the pending (issuance) queue. */
const rt = await startService('issuer');
const { config, log, registry } = rt;
const db = rt.database.db;

// Only the intermediate, made offline (countersign ca init): the issuer never creates a CA, and
// refuses to start beside a root key, like any other bad configuration (one line, exit 78).
const ca = await loadIssuingCa({
  dir: config.caDir,
  certFile: config.caCertFile,
  keyFile: config.caKeyFile,
  chainFile: config.caChainFile,
}).catch((err: unknown) => {
  if (!(err instanceof IssuingCaError)) throw err;
  log.fatal({ variable: err.variable, err: err.message }, 'refusing to start: issuing CA');
  process.stderr.write(`countersign-issuer: invalid configuration: ${err.message}\n`);
  process.exit(78);
});
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
log.info(
  { concurrency: config.issuerConcurrency, issuing_ca: new X509Certificate(ca.chainPems[0] ?? '').subject },
  'issuer consuming the issuance queue',
);
rt.shutdown.add('worker', () => worker.close());
closeSharedClients(rt);
rt.shutdown.installSignalHandlers();
