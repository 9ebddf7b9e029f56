import { randomUUID } from 'node:crypto';
import { OUTBOX_TOPICS, type TakenOutboxRow, takeOutbox } from '@countersign/db';
import { actorOf } from '@countersign/domain';
import { createLogger } from '@countersign/observability';
import {
  createRedis,
  defaultJobOptions,
  ENQUEUE_CHUNK,
  EXPIRY_BATCH,
  enqueueMany,
  InvalidPayloadError,
  jobIds,
  openQueue,
} from '@countersign/queues';
import {
  createTestDatabase,
  csrFor,
  randomQueuePrefix,
  type SeededOrg,
  seedOrg,
  type TestDatabase,
} from '@countersign/testing';
import { approve, bypass, expireDue, requestCertificate, requesterOf } from '@countersign/workflow';
import type { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createRelay } from './outbox-relay.ts';

let tdb: TestDatabase;
let org: SeededOrg;
let redis: Redis;
const settings = { approvalTimeoutMs: 3_600_000, escalationAfterMs: 600_000 };
const log = createLogger('relay-test', 'silent');

beforeAll(async () => {
  tdb = await createTestDatabase();
  org = await seedOrg(tdb.handle.db);
  redis = createRedis(tdb.redisUrl, 'producer');
});
afterAll(async () => {
  redis?.disconnect();
  await tdb?.drop();
});

function relayFor(
  prefix: string,
  withBypass = false,
  maxEventsPerBatch?: number,
  batches?: number[],
  deadLetters?: number[],
) {
  const issuance = openQueue('issuance', { connection: redis, prefix });
  const notifications = openQueue('notifications', { connection: redis, prefix });
  const relay = createRelay({
    db: tdb.handle.db,
    log,
    issuance,
    notifications,
    batchSize: 3,
    bypass: withBypass ? (id) => bypass(tdb.handle.db, id) : null,
    ...(maxEventsPerBatch ? { maxEventsPerBatch } : {}),
    ...(batches ? { onBatch: (published: number) => batches.push(published) } : {}),
    ...(deadLetters ? { onDeadLetters: (count: number) => deadLetters.push(count) } : {}),
  });
  return { relay, issuance, notifications, close: () => Promise.all([issuance.close(), notifications.close()]) };
}

let n = 0;
async function submit(profileId: string) {
  const cn = `relay${++n}.example.test`;
  return requestCertificate(tdb.handle.db, settings, requesterOf(org.requester, actorOf(org.requester)), {
    profile_id: profileId,
    common_name: cn,
    csr: (await csrFor(cn)).csrPem,
    justification: 'relay test',
  });
}

const outboxCount = async () =>
  Number((await tdb.superuser<{ c: string }>('SELECT count(*) c FROM outbox')).rows[0]?.c);

describe('outbox relay', () => {
  it('publishes released jobs and events with deterministic ids, then empties the outbox; publishing twice is harmless', async () => {
    const q = relayFor(randomQueuePrefix());
    try {
      const gated = await submit(org.gated.id);
      const open = await submit(org.open.id);
      await q.relay.drain();
      await approve(tdb.handle.db, org.operator1, gated.approval?.id ?? '', 'ok');
      await q.relay.drain();
      expect(await outboxCount()).toBe(0);
      const issue = await q.issuance.getJobs(['waiting', 'delayed', 'active']);
      expect(issue.map((j) => j.id).sort()).toEqual(
        [jobIds.issuance(gated.job.id), jobIds.issuance(open.job.id)].sort(),
      );
      const notes = await q.notifications.getJobs(['waiting', 'delayed']);
      expect(notes.map((j) => j.id).sort()).toEqual(
        [
          jobIds.notification('approval_submitted', gated.approval?.id ?? ''),
          jobIds.notification('approval_escalation', gated.approval?.id ?? '', 1),
          jobIds.notification('approval_decided', gated.approval?.id ?? ''),
        ].sort(),
      );
      const escalation = notes.find((j) => j.id?.startsWith('approval_escalation'));
      expect(escalation?.opts.delay).toBeGreaterThan(590_000);
      // Published in bulk, with each queue's default retry policy.
      for (const j of [...issue, ...notes]) {
        const queue = j.queueName as 'issuance' | 'notifications';
        expect(j.opts.attempts, `${j.id} attempts`).toBe(defaultJobOptions(queue).attempts);
        expect(j.opts.backoff, `${j.id} backoff`).toEqual(defaultJobOptions(queue).backoff);
      }
      // A relay that died after publishing re-publishes the same rows: the ids dedupe them.
      await tdb.superuser(`INSERT INTO outbox (org_id, topic, payload) VALUES ($1, 'job.released', $2)`, [
        org.orgId,
        JSON.stringify({ job_id: open.job.id }),
      ]);
      await q.relay.drain();
      expect(await q.issuance.count()).toBe(2);
    } finally {
      await q.close();
    }
  });

  it('schedules no first reminder for a request decided before its submission was relayed', async () => {
    const q = relayFor(randomQueuePrefix());
    try {
      const decided = await submit(org.gated.id);
      const waiting = await submit(org.gated.id);
      await approve(tdb.handle.db, org.operator1, decided.approval?.id ?? '', 'quick');
      await q.relay.drain();
      const ids = (await q.notifications.getJobs(['waiting', 'delayed'])).map((j) => j.id);
      expect(ids).toContain(jobIds.notification('approval_escalation', waiting.approval?.id ?? '', 1));
      expect(ids).not.toContain(jobIds.notification('approval_escalation', decided.approval?.id ?? '', 1));
      expect(ids).toContain(jobIds.notification('approval_decided', decided.approval?.id ?? ''));
    } finally {
      await q.close();
    }
  });

  it('publishes an expiry batch as one message naming its requests, within a budget of events per batch', async () => {
    // One event per batch: the expiry row (two events) still goes, alone; the release waits for the next batch.
    const q = relayFor(randomQueuePrefix(), false, 1);
    try {
      const stale = [await submit(org.gated.id), await submit(org.gated.id)];
      const ids = stale.map((r) => r.approval?.id ?? '');
      await q.relay.drain();
      await tdb.superuser(`UPDATE approval_requests SET expires_at = now() - interval '1 minute' WHERE id = ANY($1)`, [
        ids,
      ]);
      expect((await expireDue(tdb.handle.db, new Date(), 100)).map((e) => e.id).sort()).toEqual([...ids].sort());
      const open = await submit(org.open.id);
      const topics = await tdb.superuser<{ topic: string }>('SELECT topic FROM outbox ORDER BY id');
      expect(topics.rows.map((r) => r.topic)).toEqual(['approvals.expired', 'job.released']);
      // One drain empties it: a batch cut short by the budget means more is waiting.
      await q.relay.drain();
      expect(await outboxCount()).toBe(0);
      expect(await q.issuance.getJob(jobIds.issuance(open.job.id))).toBeTruthy();
      // The notifier adds each request's decision mail (notifier.int.test.ts); the relay adds none itself.
      const waiting = await q.notifications.getJobs(['waiting']);
      expect(waiting.filter((j) => j.data.kind === 'approval_decided')).toEqual([]);
      const batches = waiting.filter((j) => j.data.kind === EXPIRY_BATCH);
      expect(batches.map((j) => j.id)).toEqual([jobIds.expiryBatch(ids)]);
      // Ahead of any queued mail, so each request's message exists before the reconciler looks.
      expect(batches[0]?.opts.lifo).toBe(true);
      expect(batches[0]?.data).toEqual({ kind: EXPIRY_BATCH, org_id: org.orgId, approval_ids: [...ids].sort() });
    } finally {
      await q.close();
    }
  });

  it('claims within a budget of events counted in PostgreSQL, always the oldest row, and says what it left behind', async () => {
    expect(await outboxCount()).toBe(0);
    const ids = Array.from({ length: 3 }, () => randomUUID());
    await tdb.superuser(
      `INSERT INTO outbox (org_id, topic, payload) VALUES
         ($1, 'approvals.expired', $2), ($1, 'job.released', $3), ($1, 'job.released', $4)`,
      [
        org.orgId,
        JSON.stringify({ approval_ids: ids }),
        JSON.stringify({ job_id: randomUUID() }),
        JSON.stringify({ job_id: randomUUID() }),
      ],
    );
    try {
      // Each take is rolled back, so the next one sees the same three rows.
      const claim = async (limit: number, maxEvents?: number) => {
        let seen: { topics: string[]; more: boolean } | null = null;
        const rollBack = new Error('roll back');
        await tdb.handle.db
          .transaction()
          .execute(async (tx) => {
            const c = await takeOutbox(tx, { limit, maxEvents, topics: OUTBOX_TOPICS });
            seen = { topics: c.rows.map((r) => r.topic), more: c.more };
            throw rollBack;
          })
          .catch((err) => {
            if (err !== rollBack) throw err;
          });
        return seen;
      };
      // The oldest row carries three events: it goes alone under a budget of two.
      expect(await claim(10, 2)).toEqual({ topics: ['approvals.expired'], more: true });
      expect(await claim(10, 4)).toEqual({ topics: ['approvals.expired', 'job.released'], more: true });
      expect(await claim(10, 5)).toEqual({
        topics: ['approvals.expired', 'job.released', 'job.released'],
        more: false,
      });
      expect(await claim(2)).toEqual({ topics: ['approvals.expired', 'job.released'], more: true });
      expect(await claim(3)).toEqual({ topics: ['approvals.expired', 'job.released', 'job.released'], more: false });
    } finally {
      await tdb.superuser('DELETE FROM outbox');
    }
  });

  it('takes a new request with its state and first reminder time, read in the same statement', async () => {
    expect(await outboxCount()).toBe(0);
    const gated = await submit(org.gated.id);
    const open = await submit(org.open.id);
    try {
      const taken = await tdb.handle.db
        .transaction()
        .execute((tx) => takeOutbox(tx, { limit: 10, topics: OUTBOX_TOPICS }));
      const submitted = taken.rows.find((r): r is TakenOutboxRow => r.taken && r.topic === 'approval.submitted');
      const stored = await tdb.superuser<{ escalate_at: Date }>(
        'SELECT escalate_at FROM approval_requests WHERE id = $1',
        [gated.approval?.id],
      );
      expect(stored.rows[0]?.escalate_at).toBeInstanceOf(Date);
      expect(submitted?.escalation).toEqual({ state: 'pending', escalate_at: stored.rows[0]?.escalate_at });
      const released = taken.rows.find((r): r is TakenOutboxRow => r.taken && r.topic === 'job.released');
      expect(released?.payload).toEqual({ job_id: open.job.id });
      expect(released?.escalation).toBeNull();
      expect(taken.rows.every((r) => r.taken)).toBe(true);
      // Taken means deleted, with the commit of the taking transaction.
      expect(await outboxCount()).toBe(0);
    } finally {
      await tdb.superuser('DELETE FROM outbox');
    }
  });

  it('is woken with the newest row a statement wrote, and runs no batch for a row it already published', async () => {
    expect(await outboxCount()).toBe(0);
    const listener = new pg.Client({ connectionString: tdb.appUrl });
    const payloads: string[] = [];
    listener.on('notification', (msg) => payloads.push(msg.payload ?? ''));
    await listener.connect();
    await listener.query('LISTEN countersign_outbox');
    const batches: number[] = [];
    const q = relayFor(randomQueuePrefix(), false, undefined, batches);
    const insert = async (n: number) =>
      (
        await tdb.superuser<{ id: string }>(
          `INSERT INTO outbox (org_id, topic, payload)
           SELECT $1, 'job.released', jsonb_build_object('job_id', gen_random_uuid()) FROM generate_series(1, $2)
           RETURNING id`,
          [org.orgId, n],
        )
      ).rows.map((r) => r.id);
    const nextPayload = async () => {
      for (let i = 0; i < 100 && payloads.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
      return payloads.shift();
    };
    try {
      const two = await insert(2);
      const newest = String(Math.max(...two.map(Number)));
      expect(await nextPayload()).toBe(newest);
      await q.relay.wake(newest);
      expect(batches).toEqual([2]);
      // The notification raced the batch that took its row: nothing more to do.
      await q.relay.wake(newest);
      expect(batches).toEqual([2]);
      // No name (a trigger from before migration 0013): a batch, as before.
      await q.relay.wake('');
      expect(batches).toEqual([2, 0]);
      // A statement that wrote no row wakes nobody: the next wake-up names the next row.
      expect(await insert(0)).toEqual([]);
      // Named during a batch that takes the row: that batch is enough.
      const [one] = await insert(1);
      expect(await nextPayload()).toBe(one);
      await Promise.all([q.relay.drain(), q.relay.wake(one ?? '')]);
      expect(batches).toEqual([2, 0, 1]);
      // Named during a batch that does not publish it: one more batch.
      await Promise.all([q.relay.drain(), q.relay.wake('9999999999')]);
      expect(batches).toEqual([2, 0, 1, 0, 0]);
      expect(await q.issuance.count()).toBe(3);
    } finally {
      await listener.end();
      await tdb.superuser('DELETE FROM outbox');
      await q.close();
    }
  });

  it('keeps a row whose payload breaks the queue contract in outbox_dead_letters, with the reason, and publishes the rest', async () => {
    expect(await outboxCount()).toBe(0);
    const deadLetters: number[] = [];
    const q = relayFor(randomQueuePrefix(), false, undefined, undefined, deadLetters);
    try {
      // The oldest row: it used to fail every batch, and so hold up every row behind it.
      const poison = await tdb.superuser<{ id: string }>(
        `INSERT INTO outbox (org_id, topic, payload) VALUES ($1, 'job.released', '{"job_id":"not-a-uuid"}') RETURNING id`,
        [org.orgId],
      );
      const open = await submit(org.open.id);
      await q.relay.drain();
      expect(await outboxCount()).toBe(0);
      expect(await q.issuance.getJob(jobIds.issuance(open.job.id))).toBeTruthy();
      expect(await q.issuance.count()).toBe(1);
      const dead = await tdb.superuser<{ id: string; topic: string; payload: unknown; reason: string }>(
        'SELECT id, topic, payload, reason FROM outbox_dead_letters',
      );
      expect(dead.rows).toHaveLength(1);
      expect(dead.rows[0]).toMatchObject({
        id: poison.rows[0]?.id,
        topic: 'job.released',
        payload: { job_id: 'not-a-uuid' },
      });
      expect(dead.rows[0]?.reason).toMatch(/job_id/);
      expect(deadLetters).toEqual([1]);
    } finally {
      await tdb.superuser('DELETE FROM outbox');
      await q.close();
    }
  });

  it('leaves a row of a topic it does not know in the outbox, and publishes the rest', async () => {
    const q = relayFor(randomQueuePrefix());
    try {
      // Written by a newer version mid-upgrade, say: a relay that knows the topic publishes it later.
      await tdb.superuser(`INSERT INTO outbox (org_id, topic, payload) VALUES ($1, 'certificate.revoked', '{}')`, [
        org.orgId,
      ]);
      const open = await submit(org.open.id);
      await q.relay.drain();
      const left = await tdb.superuser<{ topic: string }>('SELECT topic FROM outbox');
      expect(left.rows).toEqual([{ topic: 'certificate.revoked' }]);
      expect(await q.issuance.getJob(jobIds.issuance(open.job.id))).toBeTruthy();
    } finally {
      await tdb.superuser('DELETE FROM outbox');
      await q.close();
    }
  });

  it('validates a whole batch before adding any of it: one payload breaking the contract adds none', async () => {
    const q = relayFor(randomQueuePrefix());
    try {
      await expect(
        enqueueMany(q.issuance, 'issuance', [
          { data: { job_id: randomUUID() }, opts: { jobId: 'good' } },
          { data: { job_id: 'not-a-uuid' }, opts: { jobId: 'bad' } },
        ]),
      ).rejects.toThrow(InvalidPayloadError);
      expect(await q.issuance.count()).toBe(0);
      await enqueueMany(q.issuance, 'issuance', []);
      expect(await q.issuance.count()).toBe(0);
      // Past one Redis transaction's worth (ENQUEUE_CHUNK): a bad payload near the end still adds none...
      const many = Array.from({ length: ENQUEUE_CHUNK * 2 + 1 }, (_, i) => ({
        data: { job_id: randomUUID() },
        opts: { jobId: `many-${i}` },
      }));
      await expect(
        enqueueMany(q.issuance, 'issuance', [...many.slice(0, -1), { data: { job_id: 'bad' }, opts: { jobId: 'x' } }]),
      ).rejects.toThrow(InvalidPayloadError);
      expect(await q.issuance.count()).toBe(0);
      // ...and a good batch arrives whole, across three transactions.
      await enqueueMany(q.issuance, 'issuance', many);
      expect(await q.issuance.count()).toBe(many.length);
    } finally {
      await q.close();
    }
  });

  it('keeps the rows when Redis refuses, and publishes them once Redis is back', async () => {
    const prefix = randomQueuePrefix();
    const dead = createRedis('redis://127.0.0.1:1', 'producer', { retryStrategy: () => null });
    dead.on('error', () => {});
    const issuance = openQueue('issuance', { connection: dead, prefix });
    const notifications = openQueue('notifications', { connection: dead, prefix });
    const broken = createRelay({ db: tdb.handle.db, log, issuance, notifications, batchSize: 10, bypass: null });
    const r = await submit(org.open.id);
    await broken.drain();
    expect(await outboxCount()).toBeGreaterThan(0);
    dead.disconnect();
    const q = relayFor(prefix);
    try {
      await q.relay.drain();
      expect(await outboxCount()).toBe(0);
      expect((await q.issuance.getJob(jobIds.issuance(r.job.id)))?.data).toEqual({ job_id: r.job.id });
    } finally {
      await q.close();
    }
  });

  it('with bypass on, auto-approves requests of profiles that allow it as system-bypass, and no others', async () => {
    const { saveProfile } = await import('@countersign/workflow');
    const { profileFields } = await import('@countersign/testing');
    const staging = await saveProfile(
      tdb.handle.db,
      org.admin,
      null,
      profileFields({ name: 'staging-web', environment: 'staging', allow_bypass: true }),
      [org.operator1.id],
    );
    // A non-production profile that does not allow the bypass: an explicit permission, not an environment name.
    const qa = await saveProfile(tdb.handle.db, org.admin, null, profileFields({ name: 'qa-web', environment: 'qa' }), [
      org.operator1.id,
    ]);
    const q = relayFor(randomQueuePrefix(), true);
    try {
      const stagingReq = await submit(staging.id);
      const prodReq = await submit(org.gated.id);
      const qaReq = await submit(qa.id);
      await q.relay.drain();
      await q.relay.drain();
      const rows = await tdb.superuser<{ id: string; state: string; decided_by: string | null }>(
        'SELECT id, state, decided_by FROM approval_requests WHERE id = ANY($1)',
        [[stagingReq.approval?.id, prodReq.approval?.id, qaReq.approval?.id]],
      );
      const byId = Object.fromEntries(rows.rows.map((r) => [r.id, r]));
      expect(byId[stagingReq.approval?.id ?? '']).toMatchObject({ state: 'approved', decided_by: 'system-bypass' });
      expect(byId[prodReq.approval?.id ?? '']).toMatchObject({ state: 'pending', decided_by: null });
      expect(byId[qaReq.approval?.id ?? '']).toMatchObject({ state: 'pending', decided_by: null });
      const audit = await tdb.superuser<{ action: string; actor_id: string }>(
        `SELECT action, actor_id FROM audit_records WHERE resource_id = $1 AND action = 'approval_bypassed'`,
        [stagingReq.approval?.id],
      );
      expect(audit.rows).toEqual([{ action: 'approval_bypassed', actor_id: 'system-bypass' }]);
      expect(await q.issuance.getJob(jobIds.issuance(stagingReq.job.id))).toBeTruthy();
      expect(await q.issuance.getJob(jobIds.issuance(prodReq.job.id))).toBeUndefined();
    } finally {
      await q.close();
    }
  });
});
