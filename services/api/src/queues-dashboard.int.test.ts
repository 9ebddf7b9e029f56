import { createHash, randomBytes } from 'node:crypto';
import { createLogger } from '@countersign/observability';
import {
  createRedis,
  createWorker,
  enqueue,
  openQueue,
  QUEUE_NAMES,
  type Queue,
  type QueueName,
  UnrecoverableError,
} from '@countersign/queues';
import {
  createTestDatabase,
  csrFor,
  randomQueuePrefix,
  type SeededOrg,
  seedOrg,
  type TestDatabase,
} from '@countersign/testing';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApi } from './app.ts';
import { SESSION_COOKIE } from './routes/queues-dashboard.routes.ts';
import { TEST_SETTINGS } from './test/api-harness.ts';

/**
 * The BullMQ dashboard at /admin/queues against real PostgreSQL, Redis and BullMQ. The queues are the
 * installation's, shared by every org, so the board opens only with the installation's operator token
 * (never an org's API key), is read-only unless the operator enabled writes, and shows job payloads
 * redacted: ids, names, states, timestamps, attempts and failure classes only.
 */
type Redis = ReturnType<typeof createRedis>;

let tdb: TestDatabase;
let org: SeededOrg;
let other: SeededOrg;
let redis: Redis;

/** The operator token and its SHA-256, as `countersign dashboard token` makes them. */
const token = `csqd_${randomBytes(32).toString('base64url')}`;
const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');
const tokenSha256 = sha256(token);

// What tenants put in job payloads and what must never reach the board.
const SECRET_CN = `secret-cn-${randomBytes(4).toString('hex')}.example.com`;
const SECRET_JUSTIFICATION = `JUSTIFICATION ${randomBytes(6).toString('hex')}: replace the payroll frontend`;
const SECRET_JWS = `eyJhbGciOiJFUzI1NiIsImtpZCI6Im${randomBytes(8).toString('hex')}.eyJjc3IiOiIuLi4ifQ.c2ln${randomBytes(8).toString('hex')}`;
const SECRET_IDEMPOTENCY_KEY = `upstream-ticket-${randomBytes(4).toString('hex')}`;
let SECRET_CSR = '';
/** A distinctive slice of the CSR's base64 body: a redaction that kept any of the CSR would keep this. */
let CSR_SLICE = '';

interface Board {
  readonly app: FastifyInstance;
  readonly prefix: string;
  readonly queues: Record<QueueName, Queue>;
}
const boards: Board[] = [];

async function openBoard(opts: { writes: boolean; tokenSha256?: string; prefix?: string }): Promise<Board> {
  const prefix = opts.prefix ?? randomQueuePrefix();
  const queues = Object.fromEntries(
    Object.values(QUEUE_NAMES).map((n) => [n, openQueue(n, { connection: redis, prefix })]),
  ) as Record<QueueName, Queue>;
  const app = await buildApi({
    db: tdb.handle.db,
    log: createLogger('api-test', 'silent'),
    settings: TEST_SETTINGS,
    onDecision: () => {},
    readiness: async () => ({ ready: true, checks: {} }),
    queueDashboard: {
      queues: Object.values(queues),
      redis,
      keyPrefix: prefix,
      secureCookie: true,
      sessionTtlSeconds: 120,
      tokenSha256: opts.tokenSha256 ?? tokenSha256,
      writes: opts.writes,
    },
  });
  await app.ready();
  const board = { app, prefix, queues };
  boards.push(board);
  return board;
}

/** Jobs of every kind the board must show without their payload, on one board's queues. */
async function seedJobs(b: Board): Promise<Record<string, string>> {
  const ids: Record<string, string> = {};
  const certificateId = crypto.randomUUID();
  const principalId = crypto.randomUUID();
  // Waiting: a renewal request as an upstream system sends it, named after the certificate it is about.
  const waiting = await b.queues['renewal-requests'].add(SECRET_CN, {
    idempotency_key: SECRET_IDEMPOTENCY_KEY,
    principal_id: principalId,
    profile_id: crypto.randomUUID(),
    common_name: SECRET_CN,
    sans: [SECRET_CN, `www.${SECRET_CN}`],
    justification: SECRET_JUSTIFICATION,
    csr: SECRET_CSR,
    jws: SECRET_JWS,
  });
  await waiting.log(`received ${SECRET_CN} for ${SECRET_JUSTIFICATION}`);
  await waiting.updateProgress({ step: SECRET_CN });
  ids.waiting = String(waiting.id);
  ids.certificateId = certificateId;
  ids.principalId = principalId;
  // Delayed, under a deterministic id as the contracts make them.
  const delayed = await b.queues['renewal-requests'].add(
    'renewal-requests',
    { certificate_id: certificateId, justification: SECRET_JUSTIFICATION, jws: SECRET_JWS },
    { delay: 3_600_000, jobId: `delayed-${certificateId}` },
  );
  ids.delayed = String(delayed.id);
  // A maintenance scheduler (the reaper's).
  await b.queues.maintenance.upsertJobScheduler(
    'expire-approvals-v1',
    { every: 3_600_000, tz: 'UTC' },
    { name: 'expire-approvals', data: { scheduler: 'expire-approvals-v1', note: SECRET_JUSTIFICATION } },
  );
  // Failed and completed jobs, processed by a real worker whose failure quotes the request it read (as a
  // DomainError message does) and whose return value carries request text.
  const failing = await enqueue(b.queues.issuance, 'issuance', { job_id: crypto.randomUUID() });
  const completing = await enqueue(b.queues.issuance, 'issuance', { job_id: certificateId });
  ids.failed = String(failing.id);
  ids.completed = String(completing.id);
  const connection = createRedis(tdb.redisUrl, 'worker');
  const settled = new Set<string>();
  let worker: ReturnType<typeof createWorker> | undefined;
  await new Promise<void>((resolve) => {
    const seen = (id: string | undefined) => {
      if (id) settled.add(id);
      if (settled.has(ids.failed as string) && settled.has(ids.completed as string)) resolve();
    };
    worker = createWorker('issuance', { connection, prefix: b.prefix }, async (data, job) => {
      if (job.id === failing.id) {
        throw new UnrecoverableError(
          `domain_not_allowed: ${SECRET_CN} is not allowed by the profile (justification "${SECRET_JUSTIFICATION}")`,
        );
      }
      return { job_id: data.job_id, common_name: SECRET_CN, csr: SECRET_CSR };
    });
    worker.on('failed', (job) => seen(job?.id));
    worker.on('completed', (job) => seen(job.id));
  });
  await worker?.close();
  connection.disconnect();
  // A contracted internal job left waiting: its ids are what the operator needs.
  const issuance = await enqueue(
    b.queues.issuance,
    'issuance',
    { job_id: certificateId },
    { jobId: `issue-${certificateId}` },
  );
  ids.issuance = String(issuance.id);
  return ids;
}

/** Everything Redis holds for a board's queues, byte for byte (sessions aside). */
async function snapshot(b: Board): Promise<Record<string, string>> {
  const keys: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `${b.prefix}:*`, 'COUNT', 1000);
    cursor = next;
    keys.push(...batch.filter((k) => !k.includes(':dashboard-session:')));
  } while (cursor !== '0');
  const out: Record<string, string> = {};
  for (const k of keys.sort()) {
    // Event streams grow when anything happens; their length is part of the picture.
    const dump = await redis.dumpBuffer(k);
    out[k] = dump ? dump.toString('base64') : '(gone)';
  }
  return out;
}

beforeAll(async () => {
  tdb = await createTestDatabase();
  org = await seedOrg(tdb.handle.db);
  other = await seedOrg(tdb.handle.db);
  redis = createRedis(tdb.redisUrl, 'producer');
  // Producer connections do not queue commands while connecting; main.ts waits the same way.
  if (redis.status !== 'ready') await new Promise((resolve) => redis.once('ready', resolve));
  SECRET_CSR = (await csrFor(SECRET_CN)).csrPem;
  const body = SECRET_CSR.split('\n').filter((l) => !l.startsWith('-----'));
  CSR_SLICE = (body[1] ?? body[0] ?? '').slice(0, 40);
});

afterAll(async () => {
  for (const b of boards) {
    await b.app.close();
    await Promise.all(Object.values(b.queues).map((q) => q.obliterate({ force: true }).then(() => q.close())));
  }
  redis?.disconnect();
  await tdb?.drop();
});

const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

async function signIn(app: FastifyInstance, secret: string, headers: Record<string, string> = {}) {
  return app.inject({
    method: 'POST',
    url: '/admin/queues/login',
    headers: { 'content-type': 'application/x-www-form-urlencoded', host: 'cs.test', ...headers },
    payload: new URLSearchParams({ token: secret }).toString(),
  });
}

function sessionFrom(res: { headers: Record<string, unknown> }): string {
  const header = String(res.headers['set-cookie'] ?? '');
  const m = new RegExp(`${SESSION_COOKIE}=([^;]+)`).exec(header);
  if (!m?.[1]) throw new Error(`no session cookie in "${header}"`);
  return m[1];
}

function expectProblem(res: { statusCode: number; headers: Record<string, unknown>; body: string }, status: number[]) {
  expect(status, `${res.statusCode} ${res.body}`).toContain(res.statusCode);
  expect(String(res.headers['content-type'])).toContain('application/problem+json');
}

/** A write the board carried out: bull-board answers 200, or 204 when there is nothing to say. */
function expectDone(res: { statusCode: number; body: string }) {
  expect([200, 204], res.body).toContain(res.statusCode);
}

/** Every state-changing route bull-board serves, with a body it accepts, against one board's seeded jobs. */
function writeRequests(ids: Record<string, string>) {
  const q = '/admin/queues/api/queues';
  const put = (url: string, payload?: object) => ({ method: 'PUT' as const, url, payload });
  const patch = (url: string, payload: object) => ({ method: 'PATCH' as const, url, payload });
  return [
    {
      method: 'POST' as const,
      url: `${q}/renewal-requests/add`,
      payload: {
        name: 'renewal-requests',
        data: { principal_id: org.admin.id, certificate_id: crypto.randomUUID(), justification: 'injected' },
        options: {},
      },
    },
    put(`${q}/pause`),
    put(`${q}/resume`),
    put(`${q}/issuance/pause`),
    put(`${q}/issuance/resume`),
    put(`${q}/issuance/retry/failed`),
    put(`${q}/issuance/retry/completed`),
    put(`${q}/renewal-requests/promote`),
    put(`${q}/issuance/clean/failed`),
    put(`${q}/issuance/clean/completed`),
    put(`${q}/issuance/empty`),
    put(`${q}/issuance/obliterate`, { force: true }),
    put(`${q}/issuance/concurrency`, { concurrency: 1 }),
    put(`${q}/issuance/rate-limit`, { max: 1, duration: 60_000 }),
    put(`${q}/issuance/rate-limit/release`),
    put(`${q}/maintenance/job-schedulers/expire-approvals-v1/run`),
    patch(`${q}/maintenance/job-schedulers/expire-approvals-v1`, { every: 1000 }),
    put(`${q}/maintenance/job-schedulers/expire-approvals-v1/remove`),
    put(`${q}/issuance/${ids.failed}/retry`),
    put(`${q}/issuance/${ids.completed}/clean`),
    put(`${q}/renewal-requests/${ids.delayed}/promote`),
    patch(`${q}/renewal-requests/${ids.delayed}/delay`, { runAt: Date.now() + 7_200_000 }),
    patch(`${q}/renewal-requests/${ids.waiting}/priority`, { priority: 5 }),
    patch(`${q}/renewal-requests/${ids.waiting}/update-data`, { jobData: { principal_id: other.admin.id } }),
    put(`${q}/renewal-requests/${ids.waiting}/remove-unprocessed-children`),
  ];
}

describe('queue dashboard at /admin/queues: who opens it', () => {
  let b: Board;
  beforeAll(async () => {
    b = await openBoard({ writes: false });
  });

  it('refuses anonymous callers: the sign-in form for a browser, problem+json otherwise', async () => {
    const page = await b.app.inject({ method: 'GET', url: '/admin/queues', headers: { accept: 'text/html' } });
    expect(page.statusCode).toBe(401);
    expect(page.body).toContain('action="/admin/queues/login"');
    expect(page.body).toContain('name="token"');
    const api = await b.app.inject({ method: 'GET', url: '/admin/queues/api/queues' });
    expectProblem(api, [401]);
    expect(api.json().code).toBe('unauthenticated');
    const garbage = await b.app.inject({
      method: 'GET',
      url: '/admin/queues/api/queues',
      headers: { cookie: `${SESSION_COOKIE}=forged-value` },
    });
    expectProblem(garbage, [401]);
  });

  it("refuses an org admin's API key, of this org and of another, as bearer and at the sign-in form", async () => {
    for (const [who, key] of [
      ['this org admin', org.admin.key],
      ['other org admin', other.admin.key],
      ['operator', org.operator1.key],
      ['requester', org.requester.key],
      ['auditor', org.auditor.key],
    ] as const) {
      for (const url of ['/admin/queues/api/queues', '/admin/queues/', '/admin/queues/api/queues/issuance/pause']) {
        const res = await b.app.inject({ method: url.endsWith('pause') ? 'PUT' : 'GET', url, headers: bearer(key) });
        expectProblem(res, [401, 403]);
      }
      const login = await signIn(b.app, key);
      expectProblem(login, [401, 403]);
      expect(login.headers['set-cookie'], who).toBeUndefined();
      // The old form field, too.
      const legacy = await b.app.inject({
        method: 'POST',
        url: '/admin/queues/login',
        headers: { 'content-type': 'application/x-www-form-urlencoded', host: 'cs.test' },
        payload: new URLSearchParams({ key }).toString(),
      });
      expect([400, 401, 403], who).toContain(legacy.statusCode);
      expect(legacy.headers['set-cookie'], who).toBeUndefined();
    }
    const forbidden = await b.app.inject({
      method: 'GET',
      url: '/admin/queues/api/queues',
      headers: bearer(org.admin.key),
    });
    expect(forbidden.json().detail).toMatch(/operator token/);
  });

  it('refuses a wrong token, the hash itself, and a token near the right one', async () => {
    for (const wrong of [
      `csqd_${randomBytes(32).toString('base64url')}`,
      tokenSha256,
      `${token}x`,
      token.slice(0, -1),
    ]) {
      const res = await b.app.inject({ method: 'GET', url: '/admin/queues/api/queues', headers: bearer(wrong) });
      expectProblem(res, [401]);
      const login = await signIn(b.app, wrong);
      expectProblem(login, [401]);
      expect(login.headers['set-cookie']).toBeUndefined();
    }
  });

  it('opens with the operator token as bearer: the board and its JSON API', async () => {
    const page = await b.app.inject({ method: 'GET', url: '/admin/queues', headers: bearer(token) });
    expect(page.statusCode).toBe(200);
    expect(page.body).toContain('Countersign queues');
    const res = await b.app.inject({ method: 'GET', url: '/admin/queues/api/queues', headers: bearer(token) });
    expect(res.statusCode).toBe(200);
    const body = res.json() as { queues: { name: string; readOnlyMode: boolean }[] };
    expect(body.queues.map((q) => q.name).sort()).toEqual(Object.values(QUEUE_NAMES).sort());
    expect(body.queues.every((q) => q.readOnlyMode)).toBe(true);
  });

  it('signs the operator in once: an HttpOnly SameSite=Strict cookie, stored only as a hash, ended by logout', async () => {
    const login = await signIn(b.app, token);
    expect(login.statusCode).toBe(303);
    expect(login.headers.location).toBe('/admin/queues/');
    const setCookie = String(login.headers['set-cookie']);
    for (const attr of ['HttpOnly', 'SameSite=Strict', 'Path=/admin/queues', 'Secure', 'Max-Age=120'])
      expect(setCookie).toContain(attr);
    const session = sessionFrom(login);
    expect(await redis.exists(`${b.prefix}:dashboard-session:${session}`)).toBe(0);
    const hashed = `${b.prefix}:dashboard-session:${sha256(session)}`;
    expect(await redis.ttl(hashed)).toBeGreaterThan(100);
    // Neither the token nor its hash is kept with the session.
    const stored = String(await redis.get(hashed));
    expect(stored).not.toContain(token);
    expect(stored).not.toContain(tokenSha256);

    const cookie = `${SESSION_COOKIE}=${session}`;
    expect(
      (await b.app.inject({ method: 'GET', url: '/admin/queues/api/queues', headers: { cookie } })).statusCode,
    ).toBe(200);
    const page = await b.app.inject({ method: 'GET', url: '/admin/queues/', headers: { cookie, accept: 'text/html' } });
    expect(page.statusCode).toBe(200);

    const out = await b.app.inject({ method: 'POST', url: '/admin/queues/logout', headers: { cookie } });
    expect(out.statusCode).toBe(303);
    expect(String(out.headers['set-cookie'])).toContain('Max-Age=0');
    expect(await redis.exists(hashed)).toBe(0);
    expectProblem(await b.app.inject({ method: 'GET', url: '/admin/queues/api/queues', headers: { cookie } }), [401]);
  });

  it('ends every session when the operator token changes (rotation), on every replica', async () => {
    const cookie = `${SESSION_COOKIE}=${sessionFrom(await signIn(b.app, token))}`;
    const rotated = `csqd_${randomBytes(32).toString('base64url')}`;
    // Another api replica, already configured with the new token, sharing the session store.
    const next = await openBoard({ writes: false, tokenSha256: sha256(rotated), prefix: b.prefix });
    expectProblem(
      await next.app.inject({ method: 'GET', url: '/admin/queues/api/queues', headers: { cookie } }),
      [401],
    );
    expectProblem(
      await next.app.inject({ method: 'GET', url: '/admin/queues/api/queues', headers: bearer(token) }),
      [401],
    );
    expect(
      (await next.app.inject({ method: 'GET', url: '/admin/queues/api/queues', headers: bearer(rotated) })).statusCode,
    ).toBe(200);
  });

  it('refuses a sign-in posted from another origin, and state changes from another origin', async () => {
    const login = await signIn(b.app, token, { origin: 'https://evil.example' });
    expectProblem(login, [403]);
    expect(login.headers['set-cookie']).toBeUndefined();
    const sameOrigin = await signIn(b.app, token, { origin: 'http://cs.test' });
    expect(sameOrigin.statusCode).toBe(303);
    const pause = await b.app.inject({
      method: 'PUT',
      url: '/admin/queues/api/queues/issuance/pause',
      headers: {
        cookie: `${SESSION_COOKIE}=${sessionFrom(sameOrigin)}`,
        origin: 'https://evil.example',
        host: 'cs.test',
      },
    });
    expectProblem(pause, [403]);
    expect(await b.queues.issuance.isPaused()).toBe(false);
  });

  it('keeps the dashboard out of the OpenAPI document', async () => {
    const doc = (await b.app.inject({ method: 'GET', url: '/openapi.json' })).json() as {
      paths: Record<string, unknown>;
    };
    expect(Object.keys(doc.paths).filter((p) => p.startsWith('/admin'))).toEqual([]);
  });
});

describe('queue dashboard: not configured', () => {
  it('is not mounted at all: 404 problem+json for the board, its API and its sign-in, whatever the credential', async () => {
    const app = await buildApi({
      db: tdb.handle.db,
      log: createLogger('api-test', 'silent'),
      settings: TEST_SETTINGS,
      onDecision: () => {},
      readiness: async () => ({ ready: true, checks: {} }),
    });
    try {
      for (const [method, url] of [
        ['GET', '/admin/queues'],
        ['GET', '/admin/queues/login'],
        ['POST', '/admin/queues/login'],
        ['GET', '/admin/queues/api/queues'],
        ['PUT', '/admin/queues/api/queues/issuance/pause'],
      ] as const) {
        for (const headers of [{}, bearer(org.admin.key), bearer(token)]) {
          const res = await app.inject({ method, url, headers });
          expectProblem(res, [404]);
          expect(res.json().code).toBe('not_found');
        }
      }
    } finally {
      await app.close();
    }
  });
});

describe('queue dashboard: read-only unless the operator enables writes', () => {
  let ro: Board;
  let roIds: Record<string, string>;
  let rw: Board;
  let rwIds: Record<string, string>;
  beforeAll(async () => {
    ro = await openBoard({ writes: false });
    roIds = await seedJobs(ro);
    rw = await openBoard({ writes: true });
    rwIds = await seedJobs(rw);
  });

  it('refuses every write route with writes off, by bearer and by session, and nothing changes in Redis', async () => {
    const before = await snapshot(ro);
    expect(Object.keys(before).length).toBeGreaterThan(10);
    const cookie = `${SESSION_COOKIE}=${sessionFrom(await signIn(ro.app, token))}`;
    for (const r of writeRequests(roIds)) {
      for (const headers of [bearer(token), { cookie }]) {
        const res = await ro.app.inject({ ...r, headers });
        expectProblem(res, [403]);
        expect(res.json().code, `${r.method} ${r.url}`).toBe('forbidden');
        expect(res.json().detail).toMatch(/COUNTERSIGN_QUEUE_DASHBOARD_WRITES/);
      }
    }
    expect(await snapshot(ro)).toEqual(before);
    expect(await ro.queues['renewal-requests'].count()).toBe(2);
    expect(await ro.queues.issuance.isPaused()).toBe(false);
  });

  it('tells the board it is read-only, so it offers no buttons', async () => {
    const res = await ro.app.inject({ method: 'GET', url: '/admin/queues/api/queues', headers: bearer(token) });
    const body = res.json() as { queues: { readOnlyMode: boolean; allowRetries: boolean }[] };
    expect(body.queues.every((q) => q.readOnlyMode && !q.allowRetries)).toBe(true);
  });

  it('lets the operator change the queues when writes are on', async () => {
    const q = '/admin/queues/api/queues';
    const h = bearer(token);
    const count = await rw.queues['renewal-requests'].count();
    const added = await rw.app.inject({
      method: 'POST',
      url: `${q}/renewal-requests/add`,
      headers: h,
      payload: { name: 'renewal-requests', data: { certificate_id: crypto.randomUUID() }, options: {} },
    });
    expect(added.statusCode, added.body).toBe(200);
    expect(await rw.queues['renewal-requests'].count()).toBe(count + 1);

    expectDone(await rw.app.inject({ method: 'PUT', url: `${q}/issuance/pause`, headers: h }));
    expect(await rw.queues.issuance.isPaused()).toBe(true);
    expectDone(await rw.app.inject({ method: 'PUT', url: `${q}/issuance/resume`, headers: h }));
    expect(await rw.queues.issuance.isPaused()).toBe(false);

    expectDone(await rw.app.inject({ method: 'PUT', url: `${q}/issuance/${rwIds.failed}/retry`, headers: h }));
    expect(await (await rw.queues.issuance.getJob(rwIds.failed as string))?.getState()).toBe('waiting');

    expectDone(
      await rw.app.inject({ method: 'PUT', url: `${q}/renewal-requests/${rwIds.delayed}/promote`, headers: h }),
    );
    expect(await (await rw.queues['renewal-requests'].getJob(rwIds.delayed as string))?.getState()).toBe('waiting');

    expectDone(await rw.app.inject({ method: 'PUT', url: `${q}/issuance/${rwIds.completed}/clean`, headers: h }));
    expect(await rw.queues.issuance.getJob(rwIds.completed as string)).toBeUndefined();

    // bull-board cleans only jobs older than 5 s.
    const old = await enqueue(
      rw.queues.issuance,
      'issuance',
      { job_id: crypto.randomUUID() },
      { timestamp: Date.now() - 60_000 },
    );
    expectDone(await rw.app.inject({ method: 'PUT', url: `${q}/issuance/clean/wait`, headers: h }));
    expect(await rw.queues.issuance.getJob(String(old.id))).toBeUndefined();
    expect(await rw.queues.issuance.count()).toBeGreaterThan(0);
    expectDone(await rw.app.inject({ method: 'PUT', url: `${q}/issuance/empty`, headers: h }));
    expect(await rw.queues.issuance.count()).toBe(0);

    const body = rw.app.inject({ method: 'GET', url: '/admin/queues/api/queues', headers: h });
    expect(((await body).json() as { queues: { readOnlyMode: boolean }[] }).queues.some((x) => x.readOnlyMode)).toBe(
      false,
    );
  });

  it('never lets the board rewrite a job payload, even with writes on: it only ever shows the redacted view', async () => {
    const res = await rw.app.inject({
      method: 'PATCH',
      url: `/admin/queues/api/queues/renewal-requests/${rwIds.waiting}/update-data`,
      headers: bearer(token),
      payload: { jobData: { principal_id: other.admin.id } },
    });
    expectProblem(res, [403]);
    const job = await rw.queues['renewal-requests'].getJob(rwIds.waiting as string);
    expect(job?.data.justification).toBe(SECRET_JUSTIFICATION);
  });
});

describe('queue dashboard: job data is shown redacted', () => {
  let b: Board;
  let ids: Record<string, string>;
  const bodies: { url: string; body: string }[] = [];

  beforeAll(async () => {
    b = await openBoard({ writes: false });
    ids = await seedJobs(b);
    const get = async (url: string) => {
      const res = await b.app.inject({ method: 'GET', url, headers: bearer(token) });
      bodies.push({ url, body: res.body });
      return res;
    };
    const statuses = ['latest', 'active', 'waiting', 'prioritized', 'completed', 'failed', 'delayed', 'paused'];
    for (const queue of Object.values(QUEUE_NAMES)) {
      for (const status of statuses) {
        const res = await get(`/admin/queues/api/queues?activeQueue=${queue}&status=${status}&page=1&jobsPerPage=50`);
        expect(res.statusCode, res.body).toBe(200);
      }
      for (const tail of ['metrics', 'default-job-options', 'workers', 'rate-limit', 'job-data-schema']) {
        await get(`/admin/queues/api/queues/${queue}/${tail}`);
      }
    }
    const jobs: [QueueName, string][] = [
      ['renewal-requests', ids.waiting as string],
      ['renewal-requests', ids.delayed as string],
      ['issuance', ids.failed as string],
      ['issuance', ids.completed as string],
      ['issuance', ids.issuance as string],
    ];
    for (const [queue, id] of jobs) {
      expect((await get(`/admin/queues/api/queues/${queue}/${id}`)).statusCode).toBe(200);
      await get(`/admin/queues/api/queues/${queue}/${id}/logs`);
      await get(`/admin/queues/api/queues/${queue}/${id}/flow`);
    }
    await get('/admin/queues/api/job-schedulers');
    await get('/admin/queues/api/redis/stats');
    await get(`/admin/queues/queue/renewal-requests/${ids.waiting}`);
  });

  it('shows no CSR, justification, JWS, common name or free-form key in any JSON API answer', () => {
    expect(bodies.length).toBeGreaterThan(40);
    for (const { url, body } of bodies) {
      for (const secret of [SECRET_CN, SECRET_JUSTIFICATION, SECRET_JWS, SECRET_IDEMPOTENCY_KEY, CSR_SLICE]) {
        expect(body, `${url} leaks "${secret}"`).not.toContain(secret);
      }
      expect(body, url).not.toContain('CERTIFICATE REQUEST');
      expect(body, url).not.toContain('JUSTIFICATION');
    }
  });

  it('still shows what the operator needs: ids, names, states, attempts and the failure class', async () => {
    const list = await b.app.inject({
      method: 'GET',
      url: '/admin/queues/api/queues?activeQueue=issuance&status=failed&page=1&jobsPerPage=50',
      headers: bearer(token),
    });
    const failed = (list.json() as { queues: { name: string; jobs: Record<string, unknown>[] }[] }).queues
      .find((q) => q.name === 'issuance')
      ?.jobs.find((j) => j.id === ids.failed);
    expect(failed).toMatchObject({ id: ids.failed, name: 'issuance', attempts: 1, isFailed: true });
    expect(failed?.failedReason).toMatch(/^domain_not_allowed\b/);
    expect(failed?.stacktrace).toEqual([]);
    expect(typeof failed?.timestamp).toBe('number');
    expect(typeof failed?.finishedOn).toBe('number');

    const one = await b.app.inject({
      method: 'GET',
      url: `/admin/queues/api/queues/renewal-requests/${ids.waiting}`,
      headers: bearer(token),
    });
    const { job, status } = one.json() as { job: Record<string, unknown>; status: string };
    expect(status).toBe('waiting');
    expect(job.id).toBe(ids.waiting);
    expect(job.name).not.toBe(SECRET_CN);
    // The payload's ids survive; its text does not.
    expect(job.data).toMatchObject({ principal_id: ids.principalId });
    expect(Object.keys(job.data as object)).not.toContain('csr');

    const issuance = await b.app.inject({
      method: 'GET',
      url: `/admin/queues/api/queues/issuance/${ids.issuance}`,
      headers: bearer(token),
    });
    expect((issuance.json() as { job: { data: unknown; name: string } }).job).toMatchObject({
      name: 'issuance',
      data: { job_id: ids.certificateId },
    });

    const completed = await b.app.inject({
      method: 'GET',
      url: `/admin/queues/api/queues/issuance/${ids.completed}`,
      headers: bearer(token),
    });
    expect((completed.json() as { job: { returnValue: unknown } }).job.returnValue).toMatchObject({
      job_id: ids.certificateId,
    });

    const schedulers = await b.app.inject({
      method: 'GET',
      url: '/admin/queues/api/job-schedulers',
      headers: bearer(token),
    });
    expect((schedulers.json() as { schedulers: { id: string; name: string }[] }).schedulers).toEqual(
      expect.arrayContaining([expect.objectContaining({ id: 'expire-approvals-v1', name: 'expire-approvals' })]),
    );
  });
});
