import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyAndCsr } from '@countersign/ca/csr-generate';
import { pingRedis, type RedisServer, startRedis } from '@countersign/devstack';
import type { Stack } from '@countersign/stack';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startE2eStack } from './e2e-stack.ts';

/**
 * Redis down for a while (REDIS_OUTAGE_SECONDS, 10 by default; 60 in the
 * long profile): the api keeps accepting requests and decisions because the
 * outbox in PostgreSQL holds what would have been published, /readyz says
 * Redis is gone, and once Redis is back the backlog drains: every approved
 * job is issued within 10 s.
 */
const OUTAGE_MS = Number(process.env.REDIS_OUTAGE_SECONDS ?? 10) * 1000;
const DRAIN_LIMIT_MS = 10_000;

let dir: string;
let redis: RedisServer;
let stack: Stack & { dataDir: string; cleanup(): Promise<void> };
let su: pg.Pool;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'countersign-redis-outage-'));
  redis = await startRedis({ dir: join(dir, 'redis'), persistence: 'aof' });
  stack = await startE2eStack({ redisUrl: redis.url });
  // Superuser on the stack's own database: the test reads the outbox and the jobs directly.
  const url = new URL(stack.superuserUrl);
  url.pathname = new URL(stack.appDatabaseUrl).pathname;
  su = new pg.Pool({ connectionString: url.toString(), max: 2 });
});
afterAll(async () => {
  await stack?.cleanup();
  await su?.end();
  await redis?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function api(key: string, method: string, path: string, body?: unknown) {
  const res = await fetch(`${stack.apiUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  return { status: res.status, body: res.headers.get('content-type')?.includes('json') ? JSON.parse(text) : text };
}

describe('Redis outage', () => {
  it(
    `the api accepts requests and decisions through a ${OUTAGE_MS / 1000} s outage and drains within 10 s`,
    { timeout: OUTAGE_MS + 120_000 },
    async () => {
      const demo = stack.demo;
      if (!demo) throw new Error('no demo org');
      const { carol, alice } = demo.principals;
      let n = 0;
      const submit = async (profile: string) => {
        const cn = `outage-${++n}.${demo.domain}`;
        const { csrPem } = await generateKeyAndCsr({ commonName: cn, dnsNames: [cn] });
        return api(carol.key, 'POST', '/api/v1/certificates', {
          profile_id: profile,
          common_name: cn,
          csr: csrPem,
          justification: 'outage',
        });
      };

      const restarting = redis.restart({ downtimeMs: OUTAGE_MS });
      const downAt = Date.now();
      while (await pingRedis(redis.port)) await new Promise((r) => setTimeout(r, 50));

      const approvedJobs: string[] = [];
      const decided: string[] = [];
      const ready: number[] = [];
      // The operator's queue dashboard reads Redis on request: it answers with an error, it does not take the api down.
      const board = await fetch(`${stack.apiUrl}/admin/queues/api/queues`, {
        headers: { authorization: `Bearer ${stack.queueDashboard?.token ?? 'no dashboard'}` },
        signal: AbortSignal.timeout(10_000),
      });
      expect(board.status).toBeGreaterThanOrEqual(500);
      // With Redis down an iteration takes about a second (each rate-limit check waits out its timeout before
      // failing open): stop 3 s before Redis returns, so it is still down when checked below.
      while (Date.now() - downAt < OUTAGE_MS - 3_000) {
        const gated = await submit(demo.profiles.production);
        expect(gated.status, JSON.stringify(gated.body)).toBe(202);
        const ok = await api(alice.key, 'POST', `/api/v1/approvals/${gated.body.approval.id}/approve`, {
          note: 'during outage',
        });
        expect(ok.status, JSON.stringify(ok.body)).toBe(200);
        expect(ok.body.state).toBe('approved');
        approvedJobs.push(gated.body.job.id);
        decided.push(gated.body.approval.id);
        const open = await submit(demo.profiles.development);
        expect(open.status, JSON.stringify(open.body)).toBe(202);
        approvedJobs.push(open.body.job.id);
        const r = await fetch(`${stack.apiUrl}/readyz`);
        ready.push(r.status);
        await new Promise((r) => setTimeout(r, 500));
      }
      expect(await pingRedis(redis.port)).toBe(false);
      console.info(
        `accepted ${approvedJobs.length} released jobs during the outage; readyz ${[...new Set(ready)].join(',')}`,
      );
      expect(ready.every((s) => s === 503)).toBe(true);
      const outbox = await su.query<{ n: string }>('SELECT count(*)::text AS n FROM outbox');
      expect(Number(outbox.rows[0]?.n)).toBeGreaterThanOrEqual(approvedJobs.length);

      await restarting;
      const backAt = Date.now();
      let drainedMs = -1;
      while (Date.now() - backAt < 30_000) {
        const done = await su.query<{ n: string }>(
          `SELECT count(*)::text AS n FROM jobs j JOIN certificate_versions v ON v.job_id = j.id WHERE j.id = ANY($1::uuid[]) AND j.status = 'completed'`,
          [approvedJobs],
        );
        if (Number(done.rows[0]?.n) === approvedJobs.length) {
          drainedMs = Date.now() - backAt;
          break;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      console.info(`backlog of ${approvedJobs.length} jobs drained ${drainedMs} ms after Redis returned`);
      expect(drainedMs).toBeGreaterThanOrEqual(0);
      expect(drainedMs).toBeLessThan(DRAIN_LIMIT_MS);
      for (const s of stack.services) expect(s.running(), `${s.id} survived`).toBe(true);
      const readyAgain = await fetch(`${stack.apiUrl}/readyz`);
      expect(readyAgain.status).toBe(200);
      // The decisions taken during the outage reach the requester too, once each.
      const sink = stack.sink;
      if (!sink) throw new Error('no SMTP sink');
      for (const id of decided)
        await sink.waitFor((m) => m.headers['x-countersign-event'] === `approval_decided-${id}`, 10_000);
      const decidedMails = sink
        .messages()
        .filter((m) => decided.some((id) => m.headers['x-countersign-event'] === `approval_decided-${id}`));
      expect(decidedMails).toHaveLength(decided.length);
    },
  );
});
