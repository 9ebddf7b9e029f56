import { metricFactories } from '@countersign/observability';
import { openQueue } from '@countersign/queues';
import { closeSharedClients, startService } from '@countersign/runtime';
import { mailDomain } from './deliveries.ts';
import { createSmtpMailer } from './mailer.ts';
import { createNotifierWorker, deliveryLeaseMs } from './worker.ts';

/** Composition root of the notifier: consumes `notifications` (incl. delayed reminders) and mails over SMTP. */
const rt = await startService('notifier');
const { config, log, registry } = rt;

const mailer = config.smtpUrl
  ? createSmtpMailer({
      url: config.smtpUrl,
      from: config.mailFrom,
      timeoutMs: config.smtpTimeoutMs,
      maxConnections: Math.min(config.notifierConcurrency, 10),
    })
  : null;
if (!mailer) log.warn('COUNTERSIGN_SMTP_URL is unset: notifications are recorded as skipped, not sent');

const counter = metricFactories.notifications(registry);
const notifications = openQueue('notifications', rt.queues);
const leaseMs = deliveryLeaseMs(config.smtpTimeoutMs);
const worker = createNotifierWorker(
  rt.workerQueues,
  {
    db: rt.database.db,
    log,
    mailer,
    leaseMs,
    messageIdDomain: mailDomain(config.mailFrom),
    settings: { publicUrl: config.publicUrl },
    notifications,
    count: (kind, outcome, n = 1) => counter.inc({ kind, outcome }, n),
  },
  { concurrency: config.notifierConcurrency, leaseMs },
);
rt.addReadiness('queue', async () => ({ ok: worker.isRunning() && (await rt.workerRedis.ping()) === 'PONG' }));

await rt.startOps();
log.info(
  { smtp: mailer?.describe ?? null, from: config.mailFrom, concurrency: config.notifierConcurrency },
  'notifier consuming the notifications queue',
);
rt.shutdown.add('worker', () => worker.close());
rt.shutdown.add('queues', () => notifications.close());
rt.shutdown.add('smtp', async () => mailer?.close());
closeSharedClients(rt);
rt.shutdown.installSignalHandlers();
