import { outboxLagSeconds } from '@countersign/db';
import { metricFactories } from '@countersign/observability';
import { openQueue } from '@countersign/queues';
import { closeSharedClients, startService } from '@countersign/runtime';
import { bypass } from '@countersign/workflow';
import { startOutboxListener } from './outbox-listener.ts';
import { createRelay } from './outbox-relay.ts';

/**
 * Composition root of the approval service: the outbox relay (woken by
 * LISTEN/NOTIFY, with polling as the safety net) and the bypass auto-decisions.
 */
const rt = await startService('approval');
const { config, log, registry } = rt;
const db = rt.database.db;

if (config.approvalBypass) {
  log.warn(
    'COUNTERSIGN_APPROVAL_BYPASS is on: non-production approval requests are auto-approved as system-bypass. Never use this outside development or CI.',
  );
}

const decisions = metricFactories.decisions(registry);
const pendingAge = metricFactories.pendingAge(registry);
const outboxLag = metricFactories.outboxLag(registry);
const outboxBatches = metricFactories.outboxBatches(registry);
const outboxDeadLetters = metricFactories.outboxDeadLetters(registry);
const issuance = openQueue('issuance', rt.queues);
const notifications = openQueue('notifications', rt.queues);

const relay = createRelay({
  db,
  log,
  issuance,
  notifications,
  batchSize: 200,
  bypass: config.approvalBypass ? (id) => bypass(db, id) : null,
  onBypassed: ({ approval }) => {
    decisions.inc({ outcome: 'bypassed', profile_id: approval.profile_id });
    const waited = ((approval.decided_at ?? new Date()).getTime() - approval.requested_at.getTime()) / 1000;
    pendingAge.observe({ profile_id: approval.profile_id }, waited);
  },
  onBatch: (published) => outboxBatches.inc({ result: published > 0 ? 'published' : 'empty' }),
  onDeadLetters: (count) => outboxDeadLetters.inc(count),
});

const listener = await startOutboxListener({
  url: config.databaseUrl,
  log,
  onNotify: (payload) => void relay.wake(payload),
  onListening: () => void relay.drain(),
});
const poll = setInterval(() => void relay.drain(), config.outboxPollMs);
const lag = setInterval(() => {
  void outboxLagSeconds(db)
    .then((s) => outboxLag.set(s))
    .catch(() => {});
}, 5_000);

rt.addReadiness('outbox_listener', async () => ({ ok: listener.listening() }));
await rt.startOps();
log.info({ bypass: config.approvalBypass }, 'approval relay running');

rt.shutdown.add('relay', async () => {
  clearInterval(poll);
  clearInterval(lag);
  await relay.drain();
  await listener.close();
});
rt.shutdown.add('queues', () => Promise.all([issuance.close(), notifications.close()]));
closeSharedClients(rt);
rt.shutdown.installSignalHandlers();
