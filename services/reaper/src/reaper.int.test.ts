import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDatabase } from '@countersign/db';
import { startRedis } from '@countersign/devstack';
import { createLogger } from '@countersign/observability';
import { createRedis, createWorker, enqueue, jobIds, MAINTENANCE_TASKS, openQueue } from '@countersign/queues';
import { randomQueuePrefix, seedOrg } from '@countersign/testing';
import { approve, reject } from '@countersign/workflow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startApiHarness } from '../../api/src/test/api-harness.ts';
import { eventually, type Pipeline, sleep, startPipeline } from '../../notifier/src/test/pipeline-harness.ts';
import { declareSchedules, scheduleSpecs } from './schedules.ts';
import { SKIPPED } from './skip-while-running.ts';
import { pruneIdempotencyTask } from './tasks/prune-idempotency.task.ts';
import { reconcileReleasedTask } from './tasks/reconcile-released.task.ts';
import { FAST, startTestReaper, type TestReaper } from './test/reaper-harness.ts';

const count = async (p: Pipeline, sql: string, values: unknown[] = []) =>
  Number((await p.tdb.superuser<{ n: string }>(sql, values)).rows[0]?.n);

describe('expiry', () => {
  it('ends a request past its timeout through the BullMQ schedule: expired, job cancelled, 409 on approve, no certificate', async () => {
    const api = await startApiHarness();
    const p = await startPipeline({ existing: { tdb: api.tdb, org: api.org } });
    try {
      p.startNotifier();
      const profileId = await p.gatedProfile({ approval_timeout_seconds: 2 });
      const r = await p.submit(p.org.requester, profileId, 'stale.example.test');
      await p.drain();
      const reaper = await startTestReaper(p, { expireEveryMs: 1_000 });
      try {
        const expired = await eventually(
          'the request expires',
          async () => {
            const row = await p.db
              .selectFrom('approval_requests')
              .selectAll()
              .where('id', '=', r.approvalId)
              .executeTakeFirstOrThrow();
            return row.state === 'expired' && row;
          },
          10_000,
        );
        expect(expired.decided_by).toBe('system-reaper');
        expect(expired.decided_by_type).toBe('system');
        expect(expired.decided_at!.getTime()).toBeGreaterThanOrEqual(expired.expires_at.getTime());
        const job = await p.db.selectFrom('jobs').selectAll().where('id', '=', r.job.id).executeTakeFirstOrThrow();
        expect([job.status, job.error]).toEqual(['cancelled', 'approval expired']);

        // Exactly one audit record per expiry, naming the job it cancelled.
        const audit = await p.db
          .selectFrom('audit_records')
          .select(['action', 'actor_id', 'actor_type', 'resource_id', 'details'])
          .where('resource_id', 'in', [r.approvalId, r.job.id])
          .where('action', 'in', ['approval_expired', 'job_cancelled'])
          .orderBy('seq')
          .execute();
        expect(audit).toEqual([
          {
            action: 'approval_expired',
            actor_id: 'system-reaper',
            actor_type: 'system',
            resource_id: r.approvalId,
            details: expect.objectContaining({ job_id: r.job.id, job_status: 'cancelled', error: 'approval expired' }),
          },
        ]);

        const late = await api.call(api.org.operator1.key, {
          method: 'POST',
          url: `/api/v1/approvals/${r.approvalId}/approve`,
          payload: { note: 'too late' },
        });
        expect(late.status).toBe(409);
        expect(late.body.code).toBe('already_decided');
        await expect(p.issue(r.job.id)).rejects.toThrow(/not issued: job is cancelled/);
        expect(await count(p, 'SELECT count(*) n FROM certificate_versions WHERE job_id = $1', [r.job.id])).toBe(0);

        expect(
          await reaper.metric('countersign_approval_decisions_total', { outcome: 'expired', profile_id: profileId }),
        ).toBe(1);
        const age = await reaper.histogram('countersign_approval_pending_age_seconds', { profile_id: profileId });
        expect(age.count).toBe(1);
        expect(age.sum).toBeGreaterThanOrEqual(2);

        await p.drain();
        const mail = await p.sink.waitFor((m) => m.subject.includes('Request expired: stale.example.test'));
        expect(mail.to).toEqual(['requester@example.test']);
      } finally {
        await reaper.close();
      }
    } finally {
      await p.close();
      await api.close();
    }
  });

  it('expires each request once when the task runs twice at once and on two reapers (one audit record, one count, one mail)', async () => {
    const p = await startPipeline();
    try {
      const profileId = await p.gatedProfile({ approval_timeout_seconds: 1 });
      const requests = [];
      for (let i = 0; i < 12; i++) requests.push(await p.submit(p.org.requester, profileId, `many${i}.example.test`));
      await p.drain();
      await sleep(1_200);
      // Small batches make the two reapers interleave; each run also fires from its own scheduler.
      const a = await startTestReaper(p, { batchSize: 3 });
      const b = await startTestReaper(p, { batchSize: 3 });
      try {
        await Promise.all([
          a.run('expire-approvals'),
          b.run('expire-approvals'),
          a.run('expire-approvals'),
          b.run('expire-approvals'),
        ]);
        await sleep(1_500); // scheduled runs on both reapers, too
        const ids = requests.map((r) => r.approvalId);
        expect(await count(p, `SELECT count(*) n FROM approval_requests WHERE state = 'expired'`)).toBe(12);
        const perRequest = await p.tdb.superuser<{ resource_id: string; n: string }>(
          `SELECT resource_id, count(*) n FROM audit_records WHERE action = 'approval_expired' GROUP BY resource_id`,
        );
        expect(perRequest.rows.map((x) => x.resource_id).sort()).toEqual([...ids].sort());
        expect(perRequest.rows.every((x) => x.n === '1')).toBe(true);
        const labels = { outcome: 'expired', profile_id: profileId };
        const counted =
          (await a.metric('countersign_approval_decisions_total', labels)) +
          (await b.metric('countersign_approval_decisions_total', labels));
        expect(counted).toBe(12);

        p.startNotifier();
        await p.drain();
        await eventually(
          'twelve expiry mails',
          async () => p.sink.messages().filter((m) => m.subject.includes('Request expired')).length >= 12,
        );
        await sleep(500);
        const mails = p.sink.messages().filter((m) => m.subject.includes('Request expired'));
        expect(mails).toHaveLength(12);
        for (const r of requests) expect(mails.filter((m) => m.text.includes(r.approvalId))).toHaveLength(1);
      } finally {
        await Promise.all([a.close(), b.close()]);
      }
    } finally {
      await p.close();
    }
  });
});

describe('reconciliation', () => {
  let dir: string;
  let redis: Awaited<ReturnType<typeof startRedis>>;
  beforeAll(async () => {
    // A Redis of its own: FLUSHALL must not touch the other test files' queues.
    dir = await mkdtemp(join(tmpdir(), 'countersign-reaper-redis-'));
    redis = await startRedis({ dir, persistence: 'none' });
  });
  afterAll(async () => {
    await redis?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('re-releases approved jobs after FLUSHALL and every one is issued once', async () => {
    const p = await startPipeline({ redisUrl: redis.url });
    const reaper = await startTestReaper(p, { reconcileEveryMs: 1_000, reconcileGraceMs: 1_000 });
    const admin = createRedis(redis.url, 'producer');
    try {
      const requests = [];
      for (let i = 0; i < 8; i++) {
        const r = await p.submit(p.org.requester, p.org.gated.id, `wiped${i}.example.test`);
        await approve(p.db, p.org.operator1, r.approvalId, null);
        requests.push(r);
      }
      await p.drain();
      expect(await p.issuance.getJobCounts('waiting')).toEqual({ waiting: 8 });
      // Past the grace period with their messages in place: the reconciler leaves them alone.
      await sleep(1_200);
      expect(await reaper.run('reconcile-released')).toEqual({ checked: 8, readded: 0, replaced: 0 });

      // Redis loses everything, the reaper's own schedules included. It notices they vanished, declares
      // them again, and the reconciler re-releases the approved jobs from PostgreSQL.
      await admin.flushall();
      await eventually(
        'schedules back',
        async () => (await reaper.queues.maintenance.getJobSchedulersCount()) === scheduleSpecs(FAST).length,
      );
      await eventually('all re-released', async () => (await p.issuance.getJobCounts('waiting')).waiting === 8, 10_000);
      p.startIssuer();
      await eventually(
        'all issued',
        async () => (await count(p, `SELECT count(*) n FROM jobs WHERE status = 'completed'`)) === 8,
        15_000,
      );
      // Running on, and forcing more runs, changes nothing: one certificate per approved job.
      await Promise.all([reaper.run('reconcile-released'), reaper.run('reconcile-released')]);
      await sleep(1_500);
      const versions = await p.tdb.superuser<{ job_id: string; n: string }>(
        'SELECT job_id, count(*) n FROM certificate_versions GROUP BY job_id',
      );
      expect(versions.rows.map((v) => v.job_id).sort()).toEqual(requests.map((r) => r.job.id).sort());
      expect(versions.rows.every((v) => v.n === '1')).toBe(true);
    } finally {
      await reaper.close();
      await admin.quit();
      await p.close();
    }
  });

  it('replaces a message that failed while its job was never finished', async () => {
    const p = await startPipeline();
    // The task alone, so no scheduled run races the one under test.
    const reconcile = reconcileReleasedTask({
      db: p.db,
      log: createLogger('reaper-test', 'silent'),
      issuance: p.issuance,
      graceMs: 500,
      batchSize: 100,
      maxBatches: 10,
    });
    try {
      const r = await p.submit(p.org.requester, p.org.open.id, 'failed-msg.example.test');
      // The message ended failed (its attempts spent while the database was down); the row is still pending.
      const job = await enqueue(
        p.issuance,
        'issuance',
        { job_id: r.job.id },
        { jobId: jobIds.issuance(r.job.id), attempts: 1 },
      );
      const failing = createWorker('issuance', p.workerCtx, async () => {
        throw new Error('database was down');
      });
      await eventually('message failed', async () => (await job.getState()) === 'failed');
      await failing.close();
      await sleep(600);
      expect(await reconcile()).toEqual({ checked: 1, readded: 0, replaced: 1 });
      p.startIssuer();
      await eventually(
        'issued',
        async () =>
          (await count(p, `SELECT count(*) n FROM jobs WHERE id = $1 AND status = 'completed'`, [r.job.id])) === 1,
      );
      expect(await count(p, 'SELECT count(*) n FROM certificate_versions WHERE job_id = $1', [r.job.id])).toBe(1);
      expect(await reconcile()).toEqual({ checked: 0, readded: 0, replaced: 0 });
    } finally {
      await p.close();
    }
  });
});

describe('renewal scan', () => {
  it('asks once, as system-scheduler, for certificates inside renew_before_days, and never twice', async () => {
    const reapers: TestReaper[] = [];
    const p = await startPipeline();
    try {
      const issue = async (profileId: string, cn: string) => {
        const r = await p.submit(p.org.requester, profileId, cn);
        if (r.approvalId) await approve(p.db, p.org.operator1, r.approvalId, null);
        await p.issue(r.job.id);
        return r.certificate.id;
      };
      const due = await issue(p.org.gated.id, 'due.example.test');
      const dueToo = await issue(p.org.gated.id, 'due2.example.test');
      const fresh = await issue(p.org.gated.id, 'fresh.example.test');
      const off = await issue(await p.gatedProfile({ renew_before_days: 0 }), 'off.example.test');
      const short = await issue(
        await p.gatedProfile({ validity_days: 10, renew_before_days: 30 }),
        'short.example.test',
      );
      // Two certificates (and one with renewal turned off) were issued 85 days ago and expire in five days.
      for (const id of [due, dueToo, off]) {
        await p.tdb.superuser(
          `UPDATE certificate_versions SET not_before = now() - interval '85 days', not_after = now() + interval '5 days'
           WHERE certificate_id = $1`,
          [id],
        );
        await p.tdb.superuser(`UPDATE certificates SET not_after = now() + interval '5 days' WHERE id = $1`, [id]);
      }

      // Two reapers start (each scheduler fires a scan at once) while the task also runs four times by hand.
      const a = await startTestReaper(p);
      const b = await startTestReaper(p);
      reapers.push(a, b);
      await Promise.all([a.run('renewal-scan'), b.run('renewal-scan'), a.run('renewal-scan'), b.run('renewal-scan')]);
      const renewals = await p.db
        .selectFrom('jobs')
        .selectAll()
        .where('kind', '=', 'renewal')
        .orderBy('common_name')
        .execute();
      expect(renewals.map((j) => [j.certificate_id, j.requested_by, j.requester_type, j.status])).toEqual([
        [due, 'system-scheduler', 'system', 'awaiting_approval'],
        [dueToo, 'system-scheduler', 'system', 'awaiting_approval'],
      ]);
      expect(renewals.map((j) => j.certificate_id)).not.toContain(fresh);
      expect(renewals.map((j) => j.certificate_id)).not.toContain(off);
      expect(renewals.map((j) => j.certificate_id)).not.toContain(short);
      const audit = await count(
        p,
        `SELECT count(*) n FROM audit_records WHERE action = 'renewal_requested' AND actor_id = 'system-scheduler'`,
      );
      expect(audit).toBe(2);

      // A gated renewal still needs its approval; any eligible approver may give it (the scheduler asked).
      const [approvalDue, approvalDueToo] = await Promise.all(
        [due, dueToo].map((id) =>
          p.db
            .selectFrom('approval_requests')
            .selectAll()
            .where('certificate_id', '=', id)
            .where('state', '=', 'pending')
            .executeTakeFirstOrThrow(),
        ),
      );
      expect(approvalDue!.requested_by).toBe('system-scheduler');
      await approve(p.db, p.org.operator2, approvalDue!.id, 'renew');
      await p.issue(renewals.find((j) => j.certificate_id === due)!.id);
      await reject(p.db, p.org.operator1, approvalDueToo!.id, 'decommission this host instead');

      // Renewed: no longer due. Rejected: not asked again automatically for this version.
      expect(await a.run('renewal-scan')).toMatchObject({ due: 0, renewed: 0 });
      expect(await count(p, `SELECT count(*) n FROM jobs WHERE kind = 'renewal'`)).toBe(2);
    } finally {
      await Promise.all(reapers.map((r) => r.close()));
      await p.close();
    }
  });
});

describe('housekeeping, gauges and schedules', () => {
  let p: Pipeline;
  beforeAll(async () => {
    p = await startPipeline();
  });
  afterAll(async () => p?.close());

  it('prunes idempotency keys past their window, in bounded batches, and keeps the recent ones', async () => {
    // The task alone (no scheduler of a running reaper racing it), so the counts are exact.
    const task = (maxBatches: number) => pruneIdempotencyTask({ db: p.db, ttlMs: 3_600_000, batchSize: 2, maxBatches });
    for (let i = 0; i < 5; i++) {
      await p.tdb.superuser(
        `INSERT INTO idempotency_keys (principal_id, key, org_id, request_hash, response_status, response_body, created_at)
         VALUES ($1, $2, $3, 'h', 202, '{}', now() - ($4 || ' hours')::interval)`,
        [p.org.requester.id, `k${i}`, p.org.orgId, i < 3 ? '2' : '0'],
      );
    }
    expect(await task(1)()).toEqual({ deleted: 2 });
    const [x, y] = await Promise.all([task(10)(), task(10)()]);
    expect(x.deleted + y.deleted).toBe(1);
    const left = await p.tdb.superuser<{ key: string }>('SELECT key FROM idempotency_keys ORDER BY key');
    expect(left.rows.map((r) => r.key)).toEqual(['k3', 'k4']);
  });

  it('exports pending approvals per profile and queue depths, and verifies the audit chain', async () => {
    // Expiry hourly, so the run below is the only one: a scheduled run could take the due rows first
    // (SKIP LOCKED) and not yet have committed when the gauges are read.
    const reaper = await startTestReaper(p, { expireEveryMs: 3_600_000 });
    try {
      const profileId = await p.gatedProfile({});
      await p.submit(p.org.requester, profileId, 'g1.example.test');
      await p.submit(p.org.requester, profileId, 'g2.example.test');
      await p.submit(p.org.requester, p.org.open.id, 'g3.example.test');
      await p.drain();
      await reaper.refreshGauges();
      expect(await reaper.metric('countersign_approvals_pending', { profile_id: profileId })).toBe(2);
      expect(await reaper.metric('countersign_queue_jobs', { queue: 'issuance', state: 'waiting' })).toBe(1);
      expect(await reaper.metric('countersign_queue_jobs', { queue: 'notifications', state: 'delayed' })).toBe(2);
      await p.tdb.superuser(
        `UPDATE approval_requests SET expires_at = now() - interval '1 second' WHERE profile_id = $1`,
        [profileId],
      );
      expect(await reaper.run('expire-approvals')).toMatchObject({ expired: 2 });
      await reaper.refreshGauges();
      expect(await reaper.metric('countersign_approvals_pending', { profile_id: profileId })).toBe(0);

      expect(await reaper.run('verify-audit')).toMatchObject({ ok: true });
      expect(await reaper.metric('countersign_audit_chain_ok')).toBe(1);
    } finally {
      await reaper.close();
    }
  });

  it('declares every schedule once with versioned ids in UTC, retires old versions and restores lost ones', async () => {
    // The queue alone: a running reaper's own scheduler check would race the calls under test.
    const maintenance = openQueue('maintenance', { connection: p.ctx.connection, prefix: randomQueuePrefix() });
    const specs = scheduleSpecs(FAST);
    await maintenance.upsertJobScheduler('expire-approvals-v0', { every: 60_000 }, { name: 'expire-approvals' });
    await maintenance.upsertJobScheduler('future-task-v1', { every: 60_000 }, { name: 'future-task' });
    const log = (await import('@countersign/observability')).createLogger('t', 'silent');
    const first = await declareSchedules(maintenance, specs, log);
    expect(first.removed).toEqual(['expire-approvals-v0']);
    const again = await declareSchedules(maintenance, specs, log);
    expect(again).toEqual({ written: [], removed: [] });
    const all = await maintenance.getJobSchedulers(0, -1);
    const ours = all.filter((s) => s.key !== 'future-task-v1');
    expect(ours.map((s) => s.key).sort()).toEqual(specs.map((s) => s.id).sort());
    for (const s of ours) {
      expect(s.key).toMatch(/-v\d+$/);
      expect(s.tz).toBe('UTC');
      expect(MAINTENANCE_TASKS).toContain(s.name);
    }
    // A newer reaper's schedule is left to it.
    expect(all.some((s) => s.key === 'future-task-v1')).toBe(true);
    await maintenance.removeJobScheduler('reconcile-released-v1');
    expect((await declareSchedules(maintenance, specs, log)).written).toEqual(['reconcile-released-v1']);
    await maintenance.close();
  });
});

describe('audit checkpoints', () => {
  it('signs one checkpoint per org head, and none again while the head has not moved', async () => {
    const p = await startPipeline();
    const heads = () => count(p, 'SELECT count(DISTINCT org_id) n FROM audit_records');
    const checkpoints = () => count(p, 'SELECT count(*) n FROM audit_checkpoints');
    const reaper = await startTestReaper(p);
    try {
      // BullMQ runs an `every` schedule once at start: wait for that run, so the runs below race nothing.
      const orgs = await heads();
      expect(orgs).toBeGreaterThanOrEqual(1);
      await eventually('the scheduled run signs each head', async () => (await checkpoints()) === orgs, 10_000);
      const unmoved = (await reaper.run('checkpoint-audit')) as {
        created: number;
        unchanged: number;
        failures: unknown[];
      };
      expect(unmoved).toMatchObject({ created: 0, unchanged: orgs, failures: [] });
      // One org's head moves (a submission is audited): that org alone gets a new checkpoint.
      await p.submit(p.org.requester, p.org.gated.id, 'checkpointed.example.test');
      const moved = (await reaper.run('checkpoint-audit')) as { created: number; failures: unknown[] };
      expect(moved).toMatchObject({ created: 1, failures: [] });
      expect((await reaper.run('checkpoint-audit')) as { created: number }).toMatchObject({ created: 0 });
      expect(await checkpoints()).toBe(orgs + 1);
    } finally {
      await reaper.close();
      await p.close();
    }
  });
});

describe('overlapping scheduled runs', () => {
  it('skip a run of a task while its last one is still going in this reaper, and run it again after', async () => {
    const p = await startPipeline();
    let calls = 0;
    let open = () => {};
    const held = new Promise<void>((r) => {
      open = r;
    });
    const checkpointAudit = async () => {
      calls++;
      if (calls === 1) await held;
      return { created: 0, unchanged: 0, failures: [] };
    };
    // The run BullMQ starts when the schedule is declared is the one held open.
    const reaper = await startTestReaper(p, {}, { checkpointAudit });
    try {
      await eventually('the scheduled run is going', async () => calls === 1, 10_000);
      const again = await reaper.queues.maintenance.add('checkpoint-audit', {}, { jobId: 'overlapping-run' });
      await eventually(
        'the overlapping run is done',
        async () => (await reaper.queues.maintenance.getJobState(again.id ?? '')) === 'completed',
        10_000,
      );
      expect((await reaper.queues.maintenance.getJob(again.id ?? ''))?.returnvalue).toEqual(SKIPPED);
      expect(calls).toBe(1);
      open();
      // Once the held run ended, the next one runs.
      const later = await reaper.queues.maintenance.add('checkpoint-audit', {}, { jobId: 'later-run' });
      await eventually(
        'the later run is done',
        async () => (await reaper.queues.maintenance.getJobState(later.id ?? '')) === 'completed',
        10_000,
      );
      expect((await reaper.queues.maintenance.getJob(later.id ?? ''))?.returnvalue).toEqual({
        created: 0,
        unchanged: 0,
        failures: [],
      });
      expect(calls).toBe(2);
    } finally {
      open();
      await reaper.close();
      await p.close();
    }
  });
  it('clears a backlog with the configured number of expiry transactions at once, and skips a second run meanwhile', async () => {
    const p = await startPipeline();
    const other = await seedOrg(p.db);
    // The services' role may not touch the chain heads; the superuser holds one.
    const superuser = createDatabase({ url: p.tdb.superuserUrl, poolSize: 1, applicationName: 'head-holder' });
    const holder = await superuser.pool.connect();
    let reaper: TestReaper | undefined;
    try {
      await p.submit(p.org.requester, p.org.gated.id, 'first.example.test');
      for (let i = 0; i < 4; i++) await p.submit(other.requester, other.gated.id, `backlog${i}.example.test`);
      await p.drain();
      // This org's request fell due first, the other org's four after it.
      await p.tdb.superuser(
        `UPDATE approval_requests
            SET expires_at = now() - CASE WHEN org_id = $1 THEN interval '1 hour' ELSE interval '1 minute' END`,
        [p.org.orgId],
      );
      // Holding the other org's chain head holds each of its expiry batches at COMMIT (the audit seal takes
      // the head), so every transaction the run starts for its backlog stays in flight.
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM audit_heads WHERE org_id = $1 FOR UPDATE', [other.orgId]);
      const waiting = () =>
        count(
          p,
          `SELECT count(*) n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`,
        );
      // The run BullMQ starts when the schedule is declared: its first batch (one row, this org's) comes back
      // full, so from then on two transactions go at once, each with one of the other org's requests.
      reaper = await startTestReaper(p, { batchSize: 1, expiryConcurrency: 2, expireEveryMs: 3_600_000 });
      await eventually('two expiry transactions wait at their commit', async () => (await waiting()) === 2, 10_000);
      await sleep(300);
      expect(await waiting()).toBe(2);
      const maintenance = reaper.queues.maintenance;
      const again = await maintenance.add('expire-approvals', {}, { jobId: 'overlapping-expiry' });
      await eventually(
        'the overlapping run is done',
        async () => (await maintenance.getJobState(again.id ?? '')) === 'completed',
        10_000,
      );
      expect((await maintenance.getJob(again.id ?? ''))?.returnvalue).toEqual(SKIPPED);
      await holder.query('ROLLBACK');
      await eventually(
        'all five expired',
        async () => (await count(p, `SELECT count(*) n FROM approval_requests WHERE state = 'expired'`)) === 5,
        10_000,
      );
      // All by the one scheduled run.
      const runs = await eventually(
        'the scheduled run is done',
        async () => {
          const done = (await maintenance.getJobs(['completed'])).filter((j) => j.name === 'expire-approvals');
          return done.length === 2 && done;
        },
        10_000,
      );
      expect(runs.map((j) => j.returnvalue)).toEqual(
        expect.arrayContaining([SKIPPED, expect.objectContaining({ expired: 5 })]),
      );
    } finally {
      holder.release();
      await superuser.close();
      await reaper?.close();
      await p.close();
    }
  });
});
