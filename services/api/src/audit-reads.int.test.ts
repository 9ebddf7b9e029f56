import type { AuditDatabase } from '@countersign/db';
import { createLogger } from '@countersign/observability';
import { csrFor, seedOrg } from '@countersign/testing';
import type { FastifyInstance } from 'fastify';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApi } from './app.ts';
import { AUDIT_VERIFY_CACHE_MS } from './audit-verify-throttle.ts';
import { memoryRateLimiter } from './rate-limit.ts';
import { type ApiHarness, AUDIT_TEST_KEY, startApiHarness, TEST_SETTINGS } from './test/api-harness.ts';

/**
 * The audit ledger's expensive reads (issue 20): a time range is listed from
 * its own index in time order, and on-demand verification is shared and
 * remembered per org instead of walking the chain on every call.
 */
let h: ApiHarness;
beforeAll(async () => {
  h = await startApiHarness();
  // Some history: each request writes a few records.
  for (let i = 0; i < 6; i++) {
    const cn = `audit-reads-${i}.example.test`;
    const r = await h.call(h.org.requester.key, {
      method: 'POST',
      url: '/api/v1/certificates',
      payload: { profile_id: h.org.open.id, common_name: cn, csr: (await csrFor(cn)).csrPem },
    });
    expect(r.status).toBe(202);
  }
});
afterAll(async () => h?.close());

const get = (key: string, url: string) => h.call(key, { method: 'GET', url });

interface Item {
  seq: string;
  at: string;
}

describe('GET /api/v1/audit with a time range', () => {
  it('pages in time order with its own cursor, every record of the range once', async () => {
    const all = (await get(h.org.auditor.key, '/api/v1/audit?limit=500')).body.items as Item[];
    expect(all.length).toBeGreaterThan(10);
    const from = all[2]?.at as string;
    const expected = all
      .filter((i) => i.at >= from)
      .sort((a, b) => (a.at === b.at ? Number(a.seq) - Number(b.seq) : a.at < b.at ? -1 : 1));
    const seen: Item[] = [];
    let cursor: string | null = null;
    do {
      const page: { status: number; body: { items: Item[]; next_cursor: string | null } } = await get(
        h.org.auditor.key,
        `/api/v1/audit?limit=3&from=${encodeURIComponent(from)}${cursor ? `&cursor=${cursor}` : ''}`,
      );
      expect(page.status).toBe(200);
      seen.push(...page.body.items);
      cursor = page.body.next_cursor;
    } while (cursor);
    expect(seen.map((i) => i.seq)).toEqual(expected.map((i) => i.seq));
  });

  it('refuses a cursor of the other order', async () => {
    const seqPage = await get(h.org.auditor.key, '/api/v1/audit?limit=1');
    const timePage = await get(h.org.auditor.key, '/api/v1/audit?limit=1&from=2000-01-01T00:00:00Z');
    expect(seqPage.body.next_cursor).toBeTruthy();
    expect(timePage.body.next_cursor).toBeTruthy();
    const mixed = [
      `/api/v1/audit?from=2000-01-01T00:00:00Z&cursor=${seqPage.body.next_cursor}`,
      `/api/v1/audit?cursor=${timePage.body.next_cursor}`,
    ];
    for (const url of mixed) {
      const r = await get(h.org.auditor.key, url);
      expect(r.status, url).toBe(400);
      expect(r.body.code, url).toBe('validation_failed');
    }
  });
});

describe('GET /api/v1/audit/verify', () => {
  let app: FastifyInstance;
  let verifications = 0;
  let now = Date.parse('2030-01-01T00:00:00Z');

  beforeAll(async () => {
    // The real pool, with its checkouts counted: each verification takes one client for its snapshot.
    const pool = h.tdb.handle.pool;
    const counted = new Proxy(pool, {
      get(target, prop, receiver) {
        if (prop === 'connect') {
          return (...args: unknown[]) => {
            verifications++;
            return (target.connect as (...a: unknown[]) => unknown).apply(target, args);
          };
        }
        const value = Reflect.get(target, prop, receiver);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    }) as pg.Pool;
    const database: AuditDatabase = { pool: counted };
    app = await buildApi({
      rateLimiter: memoryRateLimiter(),
      db: h.tdb.handle.db,
      log: createLogger('api-test', 'silent'),
      settings: TEST_SETTINGS,
      onDecision: () => {},
      readiness: async () => ({ ready: true, checks: {} }),
      audit: { database, signingKey: AUDIT_TEST_KEY, now: () => now },
    });
    await app.ready();
  });
  afterAll(async () => app?.close());

  const verify = async (key: string, query = '') => {
    const res = await app.inject({
      method: 'GET',
      url: `/api/v1/audit/verify${query}`,
      headers: { authorization: `Bearer ${key}` },
    });
    return { status: res.statusCode, body: res.json() };
  };

  it('runs one verification for 25 concurrent calls, which all get its answer', async () => {
    verifications = 0;
    const answers = await Promise.all(
      Array.from({ length: 25 }, (_, i) => verify(i % 2 ? h.org.auditor.key : h.org.admin.key)),
    );
    expect(verifications).toBe(1);
    for (const a of answers) {
      expect(a.status).toBe(200);
      expect(a.body).toMatchObject({ ok: true, first_bad_seq: null, verified_at: new Date(now).toISOString() });
      expect(a.body.checked).toBe(answers[0]?.body.checked);
    }
    expect(answers.filter((a) => a.body.cached === false)).toHaveLength(1);
  });

  it(`serves the answer again within ${AUDIT_VERIFY_CACHE_MS / 1000} s and verifies again after`, async () => {
    verifications = 0;
    now += AUDIT_VERIFY_CACHE_MS; // past the previous test's answer
    const first = await verify(h.org.auditor.key);
    expect(first.body.cached).toBe(false);
    expect(verifications).toBe(1);

    now += AUDIT_VERIFY_CACHE_MS - 1;
    const within = await verify(h.org.admin.key);
    expect(within.body).toMatchObject({ cached: true, verified_at: first.body.verified_at });
    expect(verifications).toBe(1);

    now += 1;
    const after = await verify(h.org.auditor.key);
    expect(after.body.cached).toBe(false);
    expect(after.body.verified_at).toBe(new Date(now).toISOString());
    expect(verifications).toBe(2);
  });

  it('keeps the orgs apart: another org gets its own verification and its own chain', async () => {
    const other = await seedOrg(h.tdb.handle.db);
    verifications = 0;
    const [mine, theirs] = await Promise.all([verify(h.org.auditor.key), verify(other.auditor.key)]);
    expect(mine.body.cached).toBe(true);
    expect(theirs.body.cached).toBe(false);
    expect(theirs.body.head.seq).not.toBe(mine.body.head.seq);
    expect(verifications).toBe(1);
  });

  it('is still refused to roles that may not read the ledger', async () => {
    expect((await verify(h.org.requester.key)).status).toBe(403);
  });
});
