import { readFileSync } from 'node:fs';
import { keyringOf } from '@countersign/db';
import { metricFactories } from '@countersign/observability';
import { openQueue, QUEUE_NAMES } from '@countersign/queues';
import { closeSharedClients, openSigningKeyOrExit, startService } from '@countersign/runtime';
import { buildApi } from './app.ts';
import { auditStartupCheck } from './audit-startup.ts';
import { createIntakeWorker } from './intake.handler.ts';
import { redisRateLimiter } from './rate-limit.ts';
import { operatorTokenSha256Of } from './routes/queues-dashboard.routes.ts';
import { listenMtls, type MtlsListener } from './tls.ts';

/** Composition root of the api service: HTTP API and the `renewal-requests` intake worker. */
const rt = await startService('api');
const { config, log, registry, database } = rt;
const db = database.db;
const settings = { approvalTimeoutMs: config.approvalTimeoutMs, escalationAfterMs: config.escalationAfterMs };

const decisions = metricFactories.decisions(registry);
const pendingAge = metricFactories.pendingAge(registry);
const httpDuration = metricFactories.httpDuration(registry);
const chainOk = metricFactories.auditChainOk(registry);

// The audit chain is verified before the api calls itself ready (SPEC §1.6);
// checkpoints are signed with a key kept outside the database, which must be
// the key that signed the newest checkpoints (or a rotation the operator asked for).
const signingKey = await openSigningKeyOrExit(rt);
const chainCheck = auditStartupCheck({
  database,
  mode: config.auditVerifyOnStart,
  keyring: keyringOf(signingKey.publicKey),
  log,
  onResult: (ok) => chainOk.set(ok ? 1 : 0),
});
rt.addReadiness('audit_chain', chainCheck.status);

// The queue dashboard is the installation's: mounted only when an operator token is configured (never
// an org's key). Its queues ride the producer connection; they only read, and act when writes are on.
const dashboard = config.queueDashboard;
let dashboardTokenSha256 = '';
if (dashboard) {
  try {
    dashboardTokenSha256 = operatorTokenSha256Of(dashboard.token);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    log.fatal({ err: message }, 'queue dashboard token');
    process.stderr.write(`countersign-api: ${message}\n`);
    process.exit(78);
  }
  const mode = dashboard.writes ? 'writes enabled (COUNTERSIGN_QUEUE_DASHBOARD_WRITES)' : 'read-only';
  log[dashboard.writes ? 'warn' : 'info'](
    { path: '/admin/queues' },
    `queue dashboard mounted for the operator token, ${mode}`,
  );
}
const dashboardQueues = dashboard ? Object.values(QUEUE_NAMES).map((name) => openQueue(name, rt.queues)) : [];

// One limiter and one set of limits for HTTP and the intake queue: a principal has one budget however it submits.
const rateLimiter = redisRateLimiter(rt.redis, {
  keyPrefix: config.queuePrefix,
  onUnavailable: (err) => log.warn({ err: err.message }, 'rate limiter cannot reach Redis; letting requests through'),
});
const limits = {
  submitPerMinute: config.rateLimitSubmitPerMinute,
  decidePerMinute: config.rateLimitDecidePerMinute,
  maxOpenRequests: config.maxOpenRequests,
};

const api = await buildApi({
  db,
  log,
  settings,
  audit: { database, signingKey },
  readiness: async () => {
    const { readiness } = await import('@countersign/observability');
    return readiness({
      database: async () => ({ ok: (await database.pool.query('SELECT 1')).rowCount === 1 }),
      redis: async () => ({ ok: (await rt.redis.ping()) === 'PONG' }),
      audit_chain: chainCheck.status,
    });
  },
  onDecision: ({ approval, outcome }) => {
    if (!outcome) return;
    decisions.inc({ outcome, profile_id: approval.profile_id });
    const waited = ((approval.decided_at ?? new Date()).getTime() - approval.requested_at.getTime()) / 1000;
    pendingAge.observe({ profile_id: approval.profile_id }, waited);
  },
  observeRequest: (method, route, status, seconds) =>
    httpDuration.observe({ method, route, status: String(status) }, seconds),
  bodyLimit: config.httpBodyLimitBytes,
  rateLimiter,
  limits,
  queueDashboard: dashboard
    ? {
        queues: dashboardQueues,
        redis: rt.redis,
        keyPrefix: config.queuePrefix,
        secureCookie: config.publicUrl.startsWith('https:'),
        publicUrl: config.publicUrl,
        tokenSha256: dashboardTokenSha256,
        writes: dashboard.writes,
      }
    : undefined,
});

const intakeRejected = metricFactories.intakeRejected(registry);
const intake = createIntakeWorker(
  rt.workerQueues,
  {
    db,
    settings,
    log,
    maxAgeMs: config.intakeMaxAgeMs,
    limiter: rateLimiter,
    limits,
    onRejected: (reason) => intakeRejected.inc({ reason }),
  },
  { concurrency: 8 },
);
intake.on('failed', (job, err) => log.warn({ jobId: job?.id, err: err.message }, 'renewal-requests job failed'));

await rt.startOps();
await api.listen({ host: config.httpHost, port: config.httpPort });
log.info({ url: `http://${config.httpHost}:${config.httpPort}` }, 'api listening');
let mtls: MtlsListener | null = null;
if (config.tls) {
  const tls = config.tls;
  const read = (variable: string, path: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (err) {
      log.fatal({ err: err instanceof Error ? err.message : String(err) }, `cannot read ${variable} (${path})`);
      process.stderr.write(`countersign-api: cannot read COUNTERSIGN_${variable} (${path})\n`);
      process.exit(78);
    }
  };
  mtls = await listenMtls(api, {
    cert: read('TLS_CERT_FILE', tls.certFile),
    key: read('TLS_KEY_FILE', tls.keyFile),
    clientCa: read('TLS_CLIENT_CA_FILE', tls.clientCaFile),
    host: tls.host,
    port: tls.port,
    onRefused: (reason) => log.info({ reason }, 'mTLS connection refused'),
  });
  log.info({ url: `https://${tls.host}:${mtls.port}` }, 'api listening with mTLS (client certificates required)');
}
void chainCheck.run();

rt.shutdown.add('mtls', async () => mtls?.close());
rt.shutdown.add('http', () => api.close());
rt.shutdown.add('intake worker', () => intake.close());
rt.shutdown.add('dashboard queues', () => Promise.all(dashboardQueues.map((q) => q.close())));
closeSharedClients(rt);
rt.shutdown.installSignalHandlers();
