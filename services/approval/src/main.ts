import { outboxLagSeconds } from '@countersign/db';
import { metricFactories } from '@countersign/observability';
import { openQueue } from '@countersign/queues';
import { closeSharedClients, startService } from '@countersign/runtime';
import { bypass } from '@countersign/workflow';
import pg from 'pg';
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

// LISTEN needs a direct session (it does not survive transaction pooling), so it gets its own client.
let listener: pg.Client | null = null;
let stopping = false;
async function listen(): Promise<void> {
  const client = new pg.Client({
    connectionString: config.databaseUrl,
    application_name: 'countersign-approval-listen',
  });
  // The payload names the newest row the committing statement wrote (migration 0013).
  client.on('notification', (msg) => void relay.wake(msg.payload ?? ''));
  client.on('error', (err) => {
    log.warn({ err: err.message }, 'outbox listener lost its connection; reconnecting');
    listener = null;
    if (!stopping) setTimeout(() => void listen().catch(() => {}), 1_000);
  });
  try {
    await client.connect();
    await client.query('LISTEN countersign_outbox');
    listener = client;
    void relay.drain();
  } catch (err) {
    log.warn({ err: err instanceof Error ? err.message : String(err) }, 'outbox listener could not connect; retrying');
    await client.end().catch(() => {});
    if (!stopping) setTimeout(() => void listen().catch(() => {}), 1_000);
  }
}
await listen();
const poll = setInterval(() => void relay.drain(), config.outboxPollMs);
const lag = setInterval(() => {
  void outboxLagSeconds(db)
    .then((s) => outboxLag.set(s))
    .catch(() => {});
}, 5_000);

rt.addReadiness('outbox_listener', async () => ({ ok: listener !== null }));
await rt.startOps();
log.info({ bypass: config.approvalBypass }, 'approval relay running');

rt.shutdown.add('relay', async () => {
  stopping = true;
  clearInterval(poll);
  clearInterval(lag);
  await relay.drain();
  await listener?.end();
});
rt.shutdown.add('queues', () => Promise.all([issuance.close(), notifications.close()]));
closeSharedClients(rt);
rt.shutdown.installSignalHandlers();
