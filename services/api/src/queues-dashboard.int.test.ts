import { createHash } from 'node:crypto';
import { createLogger } from '@countersign/observability';
import { createRedis, enqueue, openQueue, QUEUE_NAMES, type Queue } from '@countersign/queues';
import {
  createTestDatabase,
  randomQueuePrefix,
  type SeededOrg,
  seedOrg,
  type TestDatabase,
} from '@countersign/testing';
import { createApiKey, revokeApiKey } from '@countersign/workflow';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApi } from './app.ts';
import { SESSION_COOKIE } from './routes/queues-dashboard.routes.ts';
import { TEST_SETTINGS } from './test/api-harness.ts';

/**
 * The BullMQ dashboard at /admin/queues against real PostgreSQL and Redis:
 * admins only, by bearer key or by the session cookie that one sign-in gives.
 */
let tdb: TestDatabase;
let org: SeededOrg;
let app: FastifyInstance;
let redis: ReturnType<typeof createRedis>;
let queues: Queue[];
const prefix = randomQueuePrefix();

beforeAll(async () => {
  tdb = await createTestDatabase();
  org = await seedOrg(tdb.handle.db);
  redis = createRedis(tdb.redisUrl, 'producer');
  // Producer connections do not queue commands while connecting; main.ts waits the same way.
  if (redis.status !== 'ready') await new Promise((resolve) => redis.once('ready', resolve));
  queues = Object.values(QUEUE_NAMES).map((n) => openQueue(n, { connection: redis, prefix }));
  app = await buildApi({
    db: tdb.handle.db,
    log: createLogger('api-test', 'silent'),
    settings: TEST_SETTINGS,
    onDecision: () => {},
    readiness: async () => ({ ready: true, checks: {} }),
    queueDashboard: { queues, redis, keyPrefix: prefix, secureCookie: true, sessionTtlSeconds: 120 },
  });
  await app.ready();
});

afterAll(async () => {
  await app?.close();
  await Promise.all((queues ?? []).map((q) => q.obliterate({ force: true }).then(() => q.close())));
  redis?.disconnect();
  await tdb?.drop();
});

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

async function signIn(key: string, headers: Record<string, string> = {}) {
  return app.inject({
    method: 'POST',
    url: '/admin/queues/login',
    headers: { 'content-type': 'application/x-www-form-urlencoded', host: 'cs.test', ...headers },
    payload: new URLSearchParams({ key }).toString(),
  });
}

function sessionFrom(res: { headers: Record<string, unknown> }): string {
  const header = String(res.headers['set-cookie'] ?? '');
  const m = new RegExp(`${SESSION_COOKIE}=([^;]+)`).exec(header);
  if (!m?.[1]) throw new Error(`no session cookie in "${header}"`);
  return m[1];
}

describe('queue dashboard at /admin/queues', () => {
  it('refuses anonymous callers: the sign-in form for a browser, problem+json otherwise', async () => {
    const page = await app.inject({ method: 'GET', url: '/admin/queues', headers: { accept: 'text/html' } });
    expect(page.statusCode).toBe(401);
    expect(page.body).toContain('action="/admin/queues/login"');
    const api = await app.inject({ method: 'GET', url: '/admin/queues/api/queues' });
    expect(api.statusCode).toBe(401);
    expect(api.headers['content-type']).toContain('application/problem+json');
    expect(api.json().code).toBe('unauthenticated');
    const garbage = await app.inject({
      method: 'GET',
      url: '/admin/queues/api/queues',
      headers: { cookie: `${SESSION_COOKIE}=forged-value` },
    });
    expect(garbage.statusCode, garbage.body).toBe(401);
  });

  it('refuses every role but admin with 403, by bearer key and at sign-in', async () => {
    for (const p of [org.operator1, org.requester, org.auditor]) {
      const res = await app.inject({ method: 'GET', url: '/admin/queues/api/queues', headers: bearer(p.key) });
      expect(res.statusCode, p.name).toBe(403);
      expect(res.json().code).toBe('forbidden');
      const login = await signIn(p.key);
      expect(login.statusCode, p.name).toBe(403);
      expect(login.headers['set-cookie']).toBeUndefined();
    }
    const wrong = await signIn('cs_00000000000000000000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA');
    expect(wrong.statusCode).toBe(401);
    expect(wrong.headers['set-cookie']).toBeUndefined();
  });

  it('shows the queues and their jobs to an admin bearer key', async () => {
    const issuance = queues.find((q) => q.name === 'issuance');
    if (!issuance) throw new Error('no issuance queue');
    await enqueue(
      issuance,
      'issuance',
      { job_id: '6f1c1d2e-3a4b-4c5d-8e9f-0a1b2c3d4e5f' },
      { jobId: 'dashboard-test' },
    );
    const page = await app.inject({ method: 'GET', url: '/admin/queues', headers: bearer(org.admin.key) });
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain('Countersign queues');
    const res = await app.inject({ method: 'GET', url: '/admin/queues/api/queues', headers: bearer(org.admin.key) });
    expect(res.statusCode).toBe(200);
    const body = res.json() as { queues: { name: string; counts: Record<string, number> }[] };
    expect(body.queues.map((q) => q.name).sort()).toEqual(Object.values(QUEUE_NAMES).sort());
    expect(body.queues.find((q) => q.name === 'issuance')?.counts.waiting).toBe(1);
  });

  it('signs an admin in once: an HttpOnly SameSite=Strict cookie, stored only as a hash, ended by logout', async () => {
    const login = await signIn(org.admin.key);
    expect(login.statusCode).toBe(303);
    expect(login.headers.location).toBe('/admin/queues/');
    const setCookie = String(login.headers['set-cookie']);
    for (const attr of ['HttpOnly', 'SameSite=Strict', 'Path=/admin/queues', 'Secure', 'Max-Age=120'])
      expect(setCookie).toContain(attr);
    const token = sessionFrom(login);
    expect(await redis.exists(`${prefix}:dashboard-session:${token}`)).toBe(0);
    const hashed = `${prefix}:dashboard-session:${createHash('sha256').update(token).digest('hex')}`;
    expect(await redis.ttl(hashed)).toBeGreaterThan(100);

    const cookie = `${SESSION_COOKIE}=${token}`;
    const res = await app.inject({ method: 'GET', url: '/admin/queues/api/queues', headers: { cookie } });
    expect(res.statusCode).toBe(200);
    const page = await app.inject({ method: 'GET', url: '/admin/queues/', headers: { cookie, accept: 'text/html' } });
    expect(page.statusCode).toBe(200);

    const out = await app.inject({ method: 'POST', url: '/admin/queues/logout', headers: { cookie } });
    expect(out.statusCode).toBe(303);
    expect(String(out.headers['set-cookie'])).toContain('Max-Age=0');
    expect(await redis.exists(hashed)).toBe(0);
    expect((await app.inject({ method: 'GET', url: '/admin/queues/api/queues', headers: { cookie } })).statusCode).toBe(
      401,
    );
  });

  it('ends a session at once when the API key behind it is revoked', async () => {
    const admin = { id: org.admin.id, orgId: org.orgId, role: 'admin' as const, kind: 'user' as const, name: 'admin' };
    const second = await createApiKey(tdb.handle.db, { id: admin.id, type: 'user' }, org.orgId, admin.id, {
      name: 'dashboard',
    });
    const cookie = `${SESSION_COOKIE}=${sessionFrom(await signIn(second.key))}`;
    expect((await app.inject({ method: 'GET', url: '/admin/queues/api/queues', headers: { cookie } })).statusCode).toBe(
      200,
    );
    await revokeApiKey(tdb.handle.db, admin, second.id);
    const after = await app.inject({ method: 'GET', url: '/admin/queues/api/queues', headers: { cookie } });
    expect(after.statusCode).toBe(401);
  });

  it('refuses a sign-in posted from another origin, and state changes from another origin', async () => {
    const login = await signIn(org.admin.key, { origin: 'https://evil.example' });
    expect(login.statusCode).toBe(403);
    expect(login.headers['set-cookie']).toBeUndefined();
    const sameOrigin = await signIn(org.admin.key, { origin: 'http://cs.test' });
    expect(sameOrigin.statusCode).toBe(303);
    const pause = await app.inject({
      method: 'PUT',
      url: '/admin/queues/api/queues/issuance/pause',
      headers: {
        cookie: `${SESSION_COOKIE}=${sessionFrom(sameOrigin)}`,
        origin: 'https://evil.example',
        host: 'cs.test',
      },
    });
    expect(pause.statusCode).toBe(403);
    const issuance = queues.find((q) => q.name === 'issuance');
    expect(await issuance?.isPaused()).toBe(false);
  });

  it('keeps the dashboard out of the OpenAPI document', async () => {
    const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json() as {
      paths: Record<string, unknown>;
    };
    expect(Object.keys(doc.paths).filter((p) => p.startsWith('/admin'))).toEqual([]);
  });
});
