import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { notifications as deliveries } from '@countersign/db';
import { startRedis } from '@countersign/devstack';
import { createRedis, jobIds } from '@countersign/queues';
import { approve, expireDue } from '@countersign/workflow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, sleep, startPipeline } from '../../notifier/src/test/pipeline-harness.ts';
import { startTestReaper } from './test/reaper-harness.ts';

/**
 * Found by the chaos harness: a Redis wipe between the relay's publication and
 * the notifier lost the mails of those events for good (the outbox row was
 * already gone). The reaper now publishes them again from PostgreSQL, and the
 * notifier's delivery records keep it to one mail per (event, recipient).
 */
/** Every undelivered event's key, read `limit` at a time from after the last one seen, as the reconciler pages. */
async function pagedKeys(
  p: Awaited<ReturnType<typeof startPipeline>>,
  q: { graceMs: number; windowMs: number },
  limit: number,
): Promise<string[]> {
  const keys: string[] = [];
  let after: deliveries.UndeliveredCursor | null = null;
  for (let page = 0; page < 50; page++) {
    const events = await deliveries.findUndeliveredEvents(p.db, { ...q, limit, after });
    keys.push(...events.map((e) => e.event_key));
    const last = events.at(-1);
    if (!last || events.length < limit) break;
    after = { at: last.at, eventKey: last.event_key };
  }
  return keys;
}

describe('notification reconciliation', () => {
  let dir: string;
  let redis: Awaited<ReturnType<typeof startRedis>>;
  beforeAll(async () => {
    // A Redis of its own: FLUSHALL must not touch the other test files' queues.
    dir = await mkdtemp(join(tmpdir(), 'countersign-reaper-mail-redis-'));
    redis = await startRedis({ dir, persistence: 'none' });
  });
  afterAll(async () => {
    await redis?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('publishes again the mail events a FLUSHALL lost, and each mail goes out once', async () => {
    const p = await startPipeline({ redisUrl: redis.url });
    const reaper = await startTestReaper(p, { reconcileEveryMs: 3_600_000, reconcileGraceMs: 1_000 });
    const admin = createRedis(redis.url, 'producer');
    try {
      const { requester, operator1 } = p.org;
      // One request approved and issued, one still waiting for its approvers.
      const done = await p.submit(requester, p.org.gated.id, 'lost-mail.example.test');
      await approve(p.db, operator1, done.approvalId, null);
      await p.drain();
      await p.issue(done.job.id);
      await p.drain();
      const waiting = await p.submit(requester, p.org.gated.id, 'lost-mail-2.example.test');
      await p.drain();
      // A delivery a notifier claimed and then died with, before the wipe.
      const third = await p.submit(requester, p.org.gated.id, 'lost-mail-3.example.test');
      await p.drain();
      const eventKey = jobIds.notification('approval_submitted', third.approvalId);
      const { rows } = await deliveries.recordDeliveries(
        p.db,
        { orgId: p.org.orgId, eventKey, kind: 'approval_submitted', subject: 'x' },
        [{ recipient: 'operator1@example.test' }],
      );
      await deliveries.claimDelivery(p.db, rows[0]?.id ?? '', 100);
      // ...and its request decided meanwhile: the stuck delivery still goes out, the others are skipped.
      await approve(p.db, p.org.operator2, third.approvalId, null);
      await p.drain();

      await admin.flushall();
      expect(await p.notifications.getJobCounts('waiting', 'delayed', 'active')).toEqual({
        waiting: 0,
        delayed: 0,
        active: 0,
      });
      await sleep(1_200);
      const [a, b] = await Promise.all([reaper.run('reconcile-notifications'), reaper.run('reconcile-notifications')]);
      // submitted (decided since: its mails end up skipped), decided and issued of the first, submitted of the
      // second, the stuck submission and the decision of the third. Both runs may publish an event; under its
      // deterministic id it is queued once.
      expect(a).toMatchObject({ checked: 6 });
      expect(b).toMatchObject({ checked: 6 });
      expect(await p.notifications.getJobCounts('waiting')).toEqual({ waiting: 6 });

      p.startNotifier();
      const owed = [
        `approval_decided-${done.approvalId} requester@example.test`,
        `certificate_issued-`,
        // The operators; not the admin, which created the requester (SPEC §1.6).
        ...['operator1', 'operator2'].map((w) => `approval_submitted-${waiting.approvalId} ${w}@example.test`),
        `approval_submitted-${third.approvalId} operator1@example.test`,
        `approval_decided-${third.approvalId} requester@example.test`,
      ];
      const key = (m: { headers: Record<string, string>; to: string[] }) =>
        `${m.headers['x-countersign-event']} ${m.to.join(',')}`;
      await eventually(
        'every owed mail arrives',
        async () => owed.every((o) => p.sink.messages().some((m) => key(m).startsWith(o))),
        15_000,
      );
      // Nothing more comes, and another reconciliation finds nothing to do.
      await sleep(1_500);
      expect(await reaper.run('reconcile-notifications')).toEqual({ checked: 0, readded: 0, replaced: 0 });
      const keys = p.sink.messages().map(key);
      expect(keys).toHaveLength(owed.length);
      expect(new Set(keys).size).toBe(keys.length);
      // The first request's submission was decided before its mails could go: recorded as skipped, not sent.
      const skipped = await p.tdb.superuser<{ status: string; last_error: string }>(
        'SELECT status, last_error FROM notification_deliveries WHERE event_key = $1',
        [jobIds.notification('approval_submitted', done.approvalId)],
      );
      expect(skipped.rows.length).toBe(2);
      expect(skipped.rows.every((r) => r.status === 'skipped' && r.last_error === 'request is already approved')).toBe(
        true,
      );
    } finally {
      await reaper.close();
      await admin.quit();
      await p.close();
    }
  });
  it('pages through a backlog: events decided at one instant are each seen once, a run stops at its batch cap', async () => {
    const p = await startPipeline({ redisUrl: redis.url });
    // Scheduled runs hourly, so the lost-schedule check comes every 30 s: BullMQ starts an `every` schedule
    // at once when it is declared again after the FLUSHALL below, and that run would race the test's own.
    const reaper = await startTestReaper(p, {
      expireEveryMs: 3_600_000,
      reconcileEveryMs: 3_600_000,
      reconcileGraceMs: 0,
      batchSize: 3,
      maxBatchesPerRun: 2,
    });
    const admin = createRedis(redis.url, 'producer');
    try {
      // No notifier runs. Five submissions, then one expiry batch decides all five at a single now().
      const ids: string[] = [];
      for (let i = 0; i < 5; i++)
        ids.push((await p.submit(p.org.requester, p.org.gated.id, `page${i}.example.test`)).approvalId);
      const expired = await expireDue(p.db, new Date(Date.now() + 30 * 86_400_000), 100);
      expect(expired.map((e) => e.id).sort()).toEqual([...ids].sort());
      await p.drain();
      const owed = ids.flatMap((id) => [`approval_submitted-${id}`, `approval_decided-${id}`]).sort();

      const q = { graceMs: 0, windowMs: 7 * 86_400_000 };
      const whole = await deliveries.findUndeliveredEvents(p.db, { ...q, limit: 100 });
      expect(whole.map((e) => e.event_key).sort()).toEqual(owed);
      // Three at a time after the last one seen: the same ten, in the same order, none twice.
      expect(await pagedKeys(p, q, 3)).toEqual(whole.map((e) => e.event_key));

      // The messages are gone: a run of two batches of three puts back the six oldest. They come first
      // again on the next run (their mail is still owed), now with live messages: nothing to do.
      await admin.flushall();
      expect(await reaper.run('reconcile-notifications')).toEqual({ checked: 6, readded: 6, replaced: 0 });
      expect(await reaper.run('reconcile-notifications')).toEqual({ checked: 6, readded: 0, replaced: 0 });
      const queued = await p.notifications.getJobs(['waiting']);
      const keyOf = (d: { kind: string; approval_id?: string }) => `${d.kind}-${d.approval_id}`;
      expect(queued.map((j) => keyOf(j.data as { kind: string; approval_id?: string })).sort()).toEqual(
        whole
          .slice(0, 6)
          .map((e) => e.event_key)
          .sort(),
      );
    } finally {
      await reaper.close();
      await admin.quit();
      await p.close();
    }
  });
  it('orders events of different kinds at one instant by their keys, and pages through the tie', async () => {
    const p = await startPipeline({ redisUrl: redis.url });
    try {
      // No notifier runs. Three requests expired in one batch, then dated as submitted at that very
      // instant: six events (two kinds) share one timestamp to the microsecond.
      const ids: string[] = [];
      for (let i = 0; i < 3; i++)
        ids.push((await p.submit(p.org.requester, p.org.gated.id, `tie${i}.example.test`)).approvalId);
      await expireDue(p.db, new Date(Date.now() + 30 * 86_400_000), 100);
      await p.drain();
      await p.tdb.superuser('ALTER TABLE approval_requests DISABLE TRIGGER approval_requests_guard');
      try {
        await p.tdb.superuser(`UPDATE approval_requests SET requested_at = decided_at WHERE id = ANY($1)`, [ids]);
      } finally {
        await p.tdb.superuser('ALTER TABLE approval_requests ENABLE ALWAYS TRIGGER approval_requests_guard');
      }
      const mine = (events: deliveries.NotificationEvent[]) =>
        events.map((e) => e.event_key).filter((k) => ids.some((id) => k.endsWith(id)));
      const q = { graceMs: 0, windowMs: 7 * 86_400_000 };
      const whole = await deliveries.findUndeliveredEvents(p.db, { ...q, limit: 100 });
      // One instant, so byte order of the keys: every decision (sorted by id) before every submission.
      const expected = [
        ...[...ids].sort().map((id) => `approval_decided-${id}`),
        ...[...ids].sort().map((id) => `approval_submitted-${id}`),
      ];
      expect(mine(whole)).toEqual(expected);
      expect(new Set(whole.filter((e) => ids.some((id) => e.event_key.endsWith(id))).map((e) => e.at)).size).toBe(1);
      expect(await pagedKeys(p, q, 2)).toEqual(whole.map((e) => e.event_key));
    } finally {
      await p.close();
    }
  });
  it('looks one window back: a request older than that is not taken for lost mail', async () => {
    const p = await startPipeline({ redisUrl: redis.url });
    try {
      // No notifier runs: neither request has a delivery record.
      const old = await p.submit(p.org.requester, p.org.gated.id, 'old-pending.example.test');
      const fresh = await p.submit(p.org.requester, p.org.gated.id, 'fresh-pending.example.test');
      await p.drain();
      // Backdated as a superuser with the facts guard paused (requested_at is immutable otherwise).
      await p.tdb.superuser('ALTER TABLE approval_requests DISABLE TRIGGER approval_requests_guard');
      try {
        await p.tdb.superuser(
          `UPDATE approval_requests SET requested_at = requested_at - interval '8 days' WHERE id = $1`,
          [old.approvalId],
        );
      } finally {
        await p.tdb.superuser('ALTER TABLE approval_requests ENABLE ALWAYS TRIGGER approval_requests_guard');
      }
      const events = await deliveries.findUndeliveredEvents(p.db, { graceMs: 0, windowMs: 7 * 86_400_000, limit: 100 });
      const keys = events.map((e) => e.event_key);
      expect(keys).toContain(`approval_submitted-${fresh.approvalId}`);
      expect(keys).not.toContain(`approval_submitted-${old.approvalId}`);
    } finally {
      await p.close();
    }
  });
});
