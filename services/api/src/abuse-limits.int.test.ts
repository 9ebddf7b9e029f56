import { once } from 'node:events';
import { createRedis } from '@countersign/queues';
import { csrFor, seedOrg, seedPrincipal } from '@countersign/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { memoryRateLimiter, redisRateLimiter } from './rate-limit.ts';
import { type ApiHarness, startApiHarness } from './test/api-harness.ts';
import { changedTables, type DbFingerprint, fingerprinter, tableNames } from './test/db-fingerprint.ts';

/**
 * Abuse limits: per-principal rate limits on submissions and decisions (429
 * `rate_limited` with Retry-After), the body size limit (413), and the bound
 * on open requests per principal (429 `too_many_open_requests`). A refused
 * request writes nothing. The clock of the in-memory limiter is the test's,
 * so windows end when the test says.
 */
let h: ApiHarness;
let now = Date.now();
let fingerprint: () => Promise<DbFingerprint>;
const LIMITS = { submitPerMinute: 3, decidePerMinute: 2, maxOpenRequests: 5 };

beforeAll(async () => {
  h = await startApiHarness({ limits: LIMITS, rateLimiter: memoryRateLimiter(() => now), bodyLimit: 64 * 1024 });
  fingerprint = fingerprinter(h.tdb, await tableNames(h.tdb));
});
afterAll(async () => h?.close());

let n = 0;
async function requestBody(profileId = h.org.gated.id) {
  const cn = `abuse${++n}.example.test`;
  const { csrPem } = await csrFor(cn);
  return { profile_id: profileId, common_name: cn, csr: csrPem, justification: `abuse-limit test ${n}` };
}

async function submit(key: string, headers: Record<string, string> = {}, profileId = h.org.gated.id, body?: object) {
  const payload = body ?? (await requestBody(profileId));
  return h.call(key, { method: 'POST', url: '/api/v1/certificates', headers, payload });
}

/** A principal of its own per test, so budgets do not leak between tests. */
async function freshPrincipal(role: 'requester' | 'operator' = 'requester') {
  const p = await seedPrincipal(h.tdb.handle.db, h.org.admin, `p${++n}`, role);
  return { id: p.id, key: p.key };
}

/** The producer connection refuses commands until connected (no offline queue), as in the services. */
async function connectedRedis() {
  const redis = createRedis(h.tdb.redisUrl, 'producer');
  if (redis.status !== 'ready') await once(redis, 'ready');
  return redis;
}

function expectProblem(
  r: { status: number; body: any; headers: Record<string, unknown> },
  status: number,
  code: string,
) {
  expect(r.status).toBe(status);
  expect(String(r.headers['content-type'])).toContain('application/problem+json');
  expect(r.body.code).toBe(code);
  expect(r.body.request_id).toBeTruthy();
}

describe('submission rate limit', () => {
  it('answers 429 rate_limited with Retry-After past the budget, writes nothing, and lets the principal in again after the window', async () => {
    now += 3_600_000;
    const p = await freshPrincipal();
    for (let i = 0; i < LIMITS.submitPerMinute; i++) expect((await submit(p.key)).status).toBe(202);

    const before = await fingerprint();
    const limited = await submit(p.key);
    expectProblem(limited, 429, 'rate_limited');
    const retryAfter = Number(limited.headers['retry-after']);
    expect(Number.isInteger(retryAfter)).toBe(true);
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(changedTables(before, await fingerprint())).toEqual([]);

    // The budget is the principal's: another principal is not affected.
    const other = await freshPrincipal();
    expect((await submit(other.key)).status).toBe(202);

    now += retryAfter * 1000;
    expect((await submit(p.key)).status).toBe(202);
  });

  it('counts renewals against the same budget', async () => {
    now += 3_600_000;
    const p = await freshPrincipal();
    const first = await submit(p.key, {}, h.org.open.id);
    expect(first.status).toBe(202);
    // The open profile issues without approval, but nothing issues here: close the job so a renewal may open.
    await h.tdb.superuser(`UPDATE jobs SET status = 'failed', error = 'test' WHERE id = $1`, [first.body.job.id]);
    expect((await submit(p.key)).status).toBe(202);
    expect((await submit(p.key)).status).toBe(202);
    const before = await fingerprint();
    const renew = await h.call(p.key, {
      method: 'POST',
      url: `/api/v1/certificates/${first.body.certificate.id}/renew`,
      payload: {},
    });
    expectProblem(renew, 429, 'rate_limited');
    expect(renew.headers['retry-after']).toBeDefined();
    expect(changedTables(before, await fingerprint())).toEqual([]);
  });
});

describe('decision rate limit', () => {
  it('refuses decisions past the budget with 429 and leaves the request pending, without a vote', async () => {
    now += 3_600_000;
    const requester = await freshPrincipal();
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await submit(requester.key);
      expect(r.status).toBe(202);
      ids.push(r.body.approval.id);
    }
    const [a, b, c] = ids as [string, string, string];
    const approve = (id: string) =>
      h.call(h.org.operator1.key, { method: 'POST', url: `/api/v1/approvals/${id}/approve`, payload: {} });
    expect((await approve(a)).status).toBe(200);
    const rejected = await h.call(h.org.operator1.key, {
      method: 'POST',
      url: `/api/v1/approvals/${b}/reject`,
      payload: { note: 'no' },
    });
    expect(rejected.status).toBe(200);

    const before = await fingerprint();
    const limited = await approve(c);
    expectProblem(limited, 429, 'rate_limited');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(changedTables(before, await fingerprint())).toEqual([]);
    const state = await h.tdb.superuser<{ state: string }>('SELECT state FROM approval_requests WHERE id = $1', [c]);
    expect(state.rows[0]?.state).toBe('pending');

    // Another approver still decides.
    expect(
      (await h.call(h.org.operator2.key, { method: 'POST', url: `/api/v1/approvals/${c}/approve`, payload: {} }))
        .status,
    ).toBe(200);
  });

  it('does not limit reads', async () => {
    for (let i = 0; i < 20; i++) {
      expect((await h.call(h.org.operator1.key, { method: 'GET', url: '/api/v1/approvals?limit=1' })).status).toBe(200);
    }
  });
});

describe('open requests per principal', () => {
  it('refuses a submission past the bound with 429 too_many_open_requests, still replays an Idempotency-Key, and admits again once one is decided', async () => {
    const p = await freshPrincipal();
    const approvals: string[] = [];
    const firstBody = await requestBody();
    let firstAnswer: unknown;
    for (let i = 0; i < LIMITS.maxOpenRequests; i++) {
      now += 61_000; // a fresh rate-limit window each time; only the open bound is under test
      const r = await submit(
        p.key,
        { 'idempotency-key': `open-${p.id}-${i}` },
        undefined,
        i === 0 ? firstBody : undefined,
      );
      expect(r.status).toBe(202);
      if (i === 0) firstAnswer = r.body;
      approvals.push(r.body.approval.id);
    }
    now += 61_000;
    const before = await fingerprint();
    const refused = await submit(p.key);
    expectProblem(refused, 429, 'too_many_open_requests');
    expect(refused.body.detail).toContain(`${LIMITS.maxOpenRequests} open requests`);
    expect(refused.headers['retry-after']).toBe('60');
    expect(changedTables(before, await fingerprint())).toEqual([]);

    // A retry of an answered request is not a new request: it gets its first answer.
    now += 61_000;
    const replayed = await submit(p.key, { 'idempotency-key': `open-${p.id}-0` }, undefined, firstBody);
    expect(replayed.status).toBe(202);
    expect(replayed.body).toEqual(firstAnswer);
    expect(changedTables(before, await fingerprint())).toEqual([]);

    const decided = await h.call(h.org.operator1.key, {
      method: 'POST',
      url: `/api/v1/approvals/${approvals[0]}/reject`,
      payload: { note: 'not now' },
    });
    expect(decided.status).toBe(200);
    now += 61_000;
    expect((await submit(p.key)).status).toBe(202);
  });
});

describe('body size limit', () => {
  it('answers 413 payload_too_large as problem+json and writes nothing', async () => {
    const before = await fingerprint();
    const r = await h.call(h.org.requester.key, {
      method: 'POST',
      url: '/api/v1/certificates',
      headers: { 'content-type': 'application/json' },
      payload: JSON.stringify({ justification: 'x'.repeat(70 * 1024) }),
    });
    expectProblem(r, 413, 'payload_too_large');
    expect(changedTables(before, await fingerprint())).toEqual([]);
  });
});

describe('Redis limiter', () => {
  it('shares one budget between api replicas, expires it with the window, and fails open when Redis is gone', async () => {
    const redis = await connectedRedis();
    try {
      const prefix = `{cs-test-rl-${Math.random().toString(36).slice(2, 8)}}`;
      const replicaA = redisRateLimiter(redis, { keyPrefix: prefix });
      const replicaB = redisRateLimiter(redis, { keyPrefix: prefix });
      const results = [];
      for (let i = 0; i < 3; i++) results.push(await replicaA.hit('submit:p1', 4, 60_000));
      for (let i = 0; i < 2; i++) results.push(await replicaB.hit('submit:p1', 4, 60_000));
      expect(results.map((r) => r.allowed)).toEqual([true, true, true, true, false]);
      expect(results.map((r) => r.count)).toEqual([1, 2, 3, 4, 5]);
      const last = results[4];
      expect(last?.resetMs).toBeGreaterThan(0);
      expect(last?.resetMs).toBeLessThanOrEqual(60_000);
      expect(await redis.pttl(`${prefix}:rate-limit:submit:p1`)).toBeGreaterThan(0);
      // Another principal's counter is its own.
      expect((await replicaB.hit('submit:p2', 4, 60_000)).count).toBe(1);

      // A short window really ends.
      expect((await replicaA.hit('decide:p1', 1, 200)).allowed).toBe(true);
      expect((await replicaA.hit('decide:p1', 1, 200)).allowed).toBe(false);
      await new Promise((r) => setTimeout(r, 300));
      expect((await replicaA.hit('decide:p1', 1, 200)).allowed).toBe(true);
    } finally {
      redis.disconnect();
    }

    const gone = createRedis('redis://127.0.0.1:1', 'producer');
    gone.on('error', () => {});
    const failures: Error[] = [];
    try {
      const limiter = redisRateLimiter(gone, {
        keyPrefix: '{x}',
        timeoutMs: 200,
        onUnavailable: (e) => failures.push(e),
      });
      const started = Date.now();
      expect((await limiter.hit('submit:p1', 1, 60_000)).allowed).toBe(true);
      expect((await limiter.hit('submit:p1', 1, 60_000)).allowed).toBe(true);
      expect(Date.now() - started).toBeLessThan(1_000);
      expect(failures.length).toBe(1); // reported once, not per request
    } finally {
      gone.disconnect();
    }
  });

  it('the api counts in Redis, so another replica sees and spends the same budget', async () => {
    const redis = await connectedRedis();
    const prefix = `{cs-test-rl-${Math.random().toString(36).slice(2, 8)}}`;
    const replicaA = await startApiHarness({
      limits: { ...LIMITS, submitPerMinute: 2 },
      rateLimiter: redisRateLimiter(redis, { keyPrefix: prefix }),
    });
    try {
      const requester = replicaA.org.requester;
      const post = async (cn: string) =>
        replicaA.call(requester.key, {
          method: 'POST',
          url: '/api/v1/certificates',
          payload: {
            profile_id: replicaA.org.gated.id,
            common_name: cn,
            csr: (await csrFor(cn)).csrPem,
            justification: 'x',
          },
        });
      expect((await post('r1.example.test')).status).toBe(202);
      // A second replica, its own limiter on the same Redis, counts this principal's next submission as the second.
      const replicaB = redisRateLimiter(redis, { keyPrefix: prefix });
      expect(await replicaB.hit(`submit:${requester.id}`, 2, 60_000)).toMatchObject({ allowed: true, count: 2 });
      const third = await post('r3.example.test');
      expectProblem(third, 429, 'rate_limited');
      expect(Number(third.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    } finally {
      await replicaA.close();
      redis.disconnect();
    }
  });
});

describe('limits are per principal, not per org', () => {
  it('a principal of another org has its own budget', async () => {
    const orgB = await seedOrg(h.tdb.handle.db);
    expect((await submit(orgB.requester.key, {}, orgB.gated.id)).status).toBe(202);
  });
});
