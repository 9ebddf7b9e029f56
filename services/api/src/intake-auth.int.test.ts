import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { createRegistry, metricFactories } from '@countersign/observability';
import { createRedis, INTAKE_JWS_MAX_CHARS, INTAKE_JWS_TYP, openQueue, type Queue } from '@countersign/queues';
import {
  addIntakeKey,
  csrFor,
  type IntakeSignerFixture,
  randomQueuePrefix,
  type SeededOrg,
  type SeededService,
  seedOrg,
  seedService,
} from '@countersign/testing';
import { revokeIntakeKey } from '@countersign/workflow';
import { Job, type Worker } from 'bullmq';
import { CompactSign } from 'jose';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createIntakeWorker, type IntakeDeps, type IntakeRejection, intakeProcessor } from './intake.handler.ts';
import { type AbuseLimits, memoryRateLimiter } from './rate-limit.ts';
import { type ApiHarness, startApiHarness, TEST_SETTINGS } from './test/api-harness.ts';
import { changedTables, fingerprinter, tableNames } from './test/db-fingerprint.ts';

/**
 * Authenticated intake (SPEC §4, issue 20): a `renewal-requests` message is
 * filed only when it is a compact JWS signed with a live intake key of an
 * enabled service principal, speaks for that principal and org, is fresh, and
 * was not filed before by another queue job. Each attack below fails its job
 * with a stable reason code, writes nothing (no certificate, job, approval,
 * idempotency record or outbox row: only the audit record of the refusal, in
 * the org the key names), and is counted in countersign_intake_rejected_total.
 * Real PostgreSQL, Redis and BullMQ workers throughout.
 */
let h: ApiHarness;
let A: SeededOrg;
let B: SeededOrg;
let svc: SeededService;
let svcTwin: SeededService;
let svcB: SeededService;
let redis: ReturnType<typeof createRedis>;
let workerRedis: ReturnType<typeof createRedis>;
let queue: Queue;
let worker: Worker;
const prefix = randomQueuePrefix();
const others: { queue: Queue; worker?: Worker }[] = [];
let now = Date.now();
const limiter = memoryRateLimiter(() => now);
const LIMITS: AbuseLimits = { submitPerMinute: 3, decidePerMinute: 100, maxOpenRequests: 1000 };
const MAX_AGE_MS = 15 * 60_000;
const registry = createRegistry('intake-test');
const rejected = metricFactories.intakeRejected(registry);
const logLines: string[] = [];
const log = pino(
  { level: 'info' },
  new Writable({
    write(chunk, _enc, done) {
      logLines.push(String(chunk));
      done();
    },
  }),
);
let fingerprint: () => Promise<Record<string, string>>;

const deps = (over: Partial<IntakeDeps> = {}): IntakeDeps => ({
  db: h.tdb.handle.db,
  settings: TEST_SETTINGS,
  log,
  maxAgeMs: MAX_AGE_MS,
  limiter,
  limits: LIMITS,
  onRejected: (reason) => rejected.inc({ reason }),
  ...over,
});

beforeAll(async () => {
  h = await startApiHarness({ limits: LIMITS, rateLimiter: limiter });
  A = h.org;
  const db = h.tdb.handle.db;
  B = await seedOrg(db);
  svc = await seedService(db, A.admin, 'svc-fleet');
  svcTwin = await seedService(db, A.admin, 'svc-other');
  svcB = await seedService(db, B.admin, 'svc-b');
  fingerprint = fingerprinter(h.tdb, await tableNames(h.tdb));
  redis = createRedis(h.tdb.redisUrl, 'worker');
  workerRedis = createRedis(h.tdb.redisUrl, 'worker');
  queue = openQueue('renewal-requests', { connection: redis, prefix });
  worker = createIntakeWorker({ connection: workerRedis, prefix }, deps(), { concurrency: 4 });
});
afterAll(async () => {
  await worker?.close();
  for (const o of others) {
    await o.worker?.close();
    await o.queue.close();
  }
  await queue?.close();
  redis?.disconnect();
  workerRedis?.disconnect();
  await h?.close();
});

const b64 = (v: unknown): string => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let n = 0;
async function newRequest(profileId?: string) {
  const cn = `intake${++n}.example.test`;
  const { csrPem } = await csrFor(cn);
  return {
    idempotency_key: `intake-${n}-${randomUUID()}`,
    profile_id: profileId ?? A.gated.id,
    common_name: cn,
    csr: csrPem,
    justification: `intake test ${n}`,
  };
}

function claimsOf(s: IntakeSignerFixture, request: object, over: Record<string, unknown> = {}) {
  return {
    ...request,
    sub: s.principalId,
    org: s.orgId,
    iat: Math.floor(Date.now() / 1000),
    jti: randomUUID(),
    ...over,
  };
}

async function sign(
  s: IntakeSignerFixture,
  claims: object,
  header: Record<string, unknown> = {},
  key: Parameters<CompactSign['sign']>[0] = s.privateKey,
): Promise<string> {
  return new CompactSign(new TextEncoder().encode(JSON.stringify(claims)))
    .setProtectedHeader({ alg: s.alg, kid: s.keyId, typ: INTAKE_JWS_TYP, ...header })
    .sign(key);
}

interface Outcome {
  readonly jobId: string;
  readonly state: string;
  readonly value: { job_id: string; approval_id: string | null; certificate_id: string } | undefined;
  readonly reason: string;
}

async function settle(q: Queue, jobId: string, until: readonly string[] = ['completed', 'failed']): Promise<Outcome> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const state = await q.getJobState(jobId);
    if (until.includes(state)) {
      const job = await q.getJob(jobId);
      return { jobId, state, value: job?.returnvalue, reason: job?.failedReason ?? '' };
    }
    if (Date.now() > deadline) throw new Error(`job ${jobId} still ${state}`);
    await sleep(25);
  }
}

async function send(data: unknown, q: Queue = queue, jobId = `t-${randomUUID()}`): Promise<Outcome> {
  await q.add('renewal-requests', data, { jobId });
  return settle(q, jobId);
}

const DOMAIN_TABLES = ['certificates', 'jobs', 'approval_requests', 'idempotency_keys', 'outbox'] as const;
const AUDIT_TABLES = ['audit_records', 'audit_heads', 'audit_staging_batches'];

async function domainCounts(): Promise<Record<string, number>> {
  const r = await h.tdb.superuser<Record<string, string>>(
    `SELECT ${DOMAIN_TABLES.map((t) => `(SELECT count(*) FROM ${t}) AS ${t}`).join(', ')}`,
  );
  return Object.fromEntries(Object.entries(r.rows[0] ?? {}).map(([k, v]) => [k, Number(v)]));
}

async function metric(reason: IntakeRejection): Promise<number> {
  return (await rejected.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

async function rejectionRecords(jobId: string) {
  const r = await h.tdb.superuser<{ org_id: string; actor_id: string; resource_id: string; details: any }>(
    `SELECT org_id, actor_id, resource_id, details FROM audit_records
     WHERE action = 'intake_message_rejected' AND details->>'queue_job_id' = $1`,
    [jobId],
  );
  return r.rows;
}

/**
 * Sends `data` as a new job and holds the refusal to its promises: the reason code, nothing written but
 * the audit record (in `auditedIn`, or none when the message named no known key), the metric.
 */
async function expectRefused(
  data: unknown,
  reason: IntakeRejection,
  auditedIn: { orgId: string; kid: string } | null,
  q: Queue = queue,
): Promise<Outcome> {
  const counted = await metric(reason);
  const counts = await domainCounts();
  const before = await fingerprint();
  const out = await send(data, q);
  expect(out.state, `${reason}: ${out.reason}`).toBe('failed');
  expect(out.reason.startsWith(`${reason}: `), out.reason).toBe(true);
  expect(await domainCounts()).toEqual(counts);
  expect(changedTables(before, await fingerprint()).filter((t) => !AUDIT_TABLES.includes(t))).toEqual([]);
  expect(await metric(reason)).toBe(counted + 1);
  const records = await rejectionRecords(out.jobId);
  if (!auditedIn) {
    expect(records).toEqual([]);
  } else {
    expect(records).toHaveLength(1);
    const [rec] = records;
    expect(rec?.org_id).toBe(auditedIn.orgId);
    expect(rec?.resource_id).toBe(auditedIn.kid);
    expect(rec?.details).toMatchObject({ reason, kid: auditedIn.kid, queue_job_id: out.jobId });
    const text = JSON.stringify(rec);
    expect(text).not.toContain('CERTIFICATE REQUEST');
    const jws = typeof data === 'object' && data !== null ? (data as { jws?: unknown }).jws : undefined;
    if (typeof jws === 'string') for (const part of jws.split('.')) if (part) expect(text).not.toContain(part);
  }
  return out;
}

const inOrgOf = (s: IntakeSignerFixture) => ({ orgId: s.orgId, kid: s.keyId });

describe('a valid signed message', () => {
  it('is filed as the key’s service principal; the same JWS added as another job is intake_replayed and writes nothing', async () => {
    now += 3_600_000;
    const request = await newRequest();
    const jws = await sign(svc.signer, claimsOf(svc.signer, request));
    const ok = await send({ jws });
    expect(ok.state, ok.reason).toBe('completed');
    expect(ok.value).toMatchObject({ job_id: expect.any(String), approval_id: expect.any(String) });
    const approval = await h.call(A.operator1.key, {
      method: 'GET',
      url: `/api/v1/approvals/${ok.value?.approval_id}`,
    });
    expect(approval.body).toMatchObject({
      state: 'pending',
      requested_by: svc.principal.id,
      requester_type: 'service',
      job_id: ok.value?.job_id,
      justification: request.justification,
    });

    // An attacker who can read Redis copies the message into a job of its own.
    await expectRefused({ jws }, 'intake_replayed', inOrgOf(svc.signer));
  });

  it('a BullMQ redelivery of the same job (first run committed, its completion lost) returns the first answer', async () => {
    now += 3_600_000;
    const p = randomQueuePrefix();
    const q = openQueue('renewal-requests', { connection: redis, prefix: p });
    const entry: { queue: Queue; worker?: Worker } = { queue: q };
    others.push(entry);
    const jws = await sign(svc.signer, claimsOf(svc.signer, await newRequest()));
    await q.add('renewal-requests', { jws }, { jobId: 'redelivered-1' });
    const job = await Job.fromId(q, 'redelivered-1');
    if (!job) throw new Error('job not added');
    // The first run, as a worker that commits and then dies before BullMQ hears of it.
    const first = await intakeProcessor(deps())(job);
    const counts = await domainCounts();
    const before = await fingerprint();

    entry.worker = createIntakeWorker({ connection: workerRedis, prefix: p }, deps());
    const again = await settle(q, 'redelivered-1');
    expect(again.state, again.reason).toBe('completed');
    expect(again.value).toEqual(first);
    expect(await domainCounts()).toEqual(counts);
    expect(changedTables(before, await fingerprint())).toEqual([]);
  });

  it('a fresh signature of the same request under a new job (the producer lost its job) gets the first answer', async () => {
    now += 3_600_000;
    const request = await newRequest();
    const first = await send({ jws: await sign(svc.signer, claimsOf(svc.signer, request)) });
    expect(first.state, first.reason).toBe('completed');
    const counts = await domainCounts();
    const again = await send({ jws: await sign(svc.signer, claimsOf(svc.signer, request)) });
    expect(again.state, again.reason).toBe('completed');
    expect(again.value).toEqual(first.value);
    expect(await domainCounts()).toEqual(counts);
    // The same idempotency_key for another request is a conflict, as over HTTP.
    const other = await send({
      jws: await sign(
        svc.signer,
        claimsOf(svc.signer, { ...(await newRequest()), idempotency_key: request.idempotency_key }),
      ),
    });
    expect(other.state).toBe('failed');
    expect(other.reason).toMatch(/^idempotency_conflict: /);
    expect(await domainCounts()).toEqual(counts);
  });

  it('works with Ed25519 and RSA keys too', async () => {
    now += 3_600_000;
    for (const alg of ['EdDSA', 'RS256'] as const) {
      const s = await addIntakeKey(h.tdb.handle.db, A.admin, svcTwin.principal, alg);
      const out = await send({ jws: await sign(s, claimsOf(s, await newRequest())) });
      expect(out.state, `${alg}: ${out.reason}`).toBe('completed');
    }
  });
});

describe('refused messages', () => {
  it('unsigned: the old unsigned payload naming a principal', async () => {
    const request = await newRequest();
    await expectRefused({ ...request, principal_id: svc.principal.id }, 'intake_unsigned', null);
    await expectRefused({ jws: 'not-a-jws' }, 'intake_unsigned', null);
    await expectRefused('a string', 'intake_unsigned', null);
  });

  it('alg none, with and without a signature part', async () => {
    const claims = claimsOf(svc.signer, await newRequest());
    const unsigned = `${b64({ alg: 'none', kid: svc.signer.keyId })}.${b64(claims)}`;
    await expectRefused({ jws: `${unsigned}.` }, 'intake_unsigned', inOrgOf(svc.signer));
    const signed = await sign(svc.signer, claims);
    await expectRefused({ jws: `${unsigned}.${signed.split('.')[2]}` }, 'intake_unsigned', inOrgOf(svc.signer));
  });

  it('HS256 keyed with the registered public key (algorithm confusion)', async () => {
    const claims = claimsOf(svc.signer, await newRequest());
    for (const secret of [
      svc.signer.publicKey.export({ type: 'spki', format: 'pem' }).toString(),
      JSON.stringify(svc.signer.publicKey.export({ format: 'jwk' })),
    ]) {
      const jws = await new CompactSign(new TextEncoder().encode(JSON.stringify(claims)))
        .setProtectedHeader({ alg: 'HS256', kid: svc.signer.keyId })
        .sign(new TextEncoder().encode(secret));
      await expectRefused({ jws }, 'intake_unsigned', inOrgOf(svc.signer));
    }
  });

  it('bad signature: a tampered payload, and a message signed by another key under this kid', async () => {
    const request = await newRequest();
    const jws = await sign(svc.signer, claimsOf(svc.signer, request));
    const [header, , signature] = jws.split('.');
    const tampered = claimsOf(svc.signer, { ...request, justification: 'tampered in Redis' });
    await expectRefused(
      { jws: `${header}.${b64(tampered)}.${signature}` },
      'intake_bad_signature',
      inOrgOf(svc.signer),
    );
    const forged = await sign(svc.signer, claimsOf(svc.signer, request), {}, svcTwin.signer.privateKey);
    await expectRefused({ jws: forged }, 'intake_bad_signature', inOrgOf(svc.signer));
  });

  it('unknown key', async () => {
    const ghost: IntakeSignerFixture = { ...svc.signer, keyId: randomUUID() };
    await expectRefused({ jws: await sign(ghost, claimsOf(ghost, await newRequest())) }, 'intake_unknown_key', null);
    const noKid = await sign(svc.signer, claimsOf(svc.signer, await newRequest()), { kid: undefined });
    await expectRefused({ jws: noKid }, 'intake_unknown_key', null);
  });

  it('revoked key', async () => {
    const s = await addIntakeKey(h.tdb.handle.db, A.admin, svc.principal);
    const jws = await sign(s, claimsOf(s, await newRequest()));
    await revokeIntakeKey(h.tdb.handle.db, A.admin, s.keyId);
    await expectRefused({ jws }, 'intake_revoked_key', inOrgOf(s));
  });

  it('key of another org: org B’s key speaking for org A’s service principal', async () => {
    const claims = claimsOf(svcB.signer, await newRequest(), { sub: svc.principal.id, org: A.orgId });
    await expectRefused({ jws: await sign(svcB.signer, claims) }, 'intake_wrong_principal', inOrgOf(svcB.signer));
    // Or org A's key claiming org B.
    const crossed = claimsOf(svc.signer, await newRequest(), { org: B.orgId });
    await expectRefused({ jws: await sign(svc.signer, crossed) }, 'intake_wrong_principal', inOrgOf(svc.signer));
  });

  it('key of another principal: sub names a different service principal of the org', async () => {
    const claims = claimsOf(svc.signer, await newRequest(), { sub: svcTwin.principal.id });
    await expectRefused({ jws: await sign(svc.signer, claims) }, 'intake_wrong_principal', inOrgOf(svc.signer));
  });

  it('stale, future and missing iat', async () => {
    const t = Math.floor(Date.now() / 1000);
    for (const iat of [t - MAX_AGE_MS / 1000 - 5, t + 300, undefined, 'yesterday', t + 0.5]) {
      const claims = claimsOf(svc.signer, await newRequest(), { iat });
      await expectRefused({ jws: await sign(svc.signer, claims) }, 'intake_stale', inOrgOf(svc.signer));
    }
    // 30 s of clock skew is tolerated.
    now += 3_600_000;
    const skewed = claimsOf(svc.signer, await newRequest(), { iat: t + 30 });
    expect((await send({ jws: await sign(svc.signer, skewed) })).state).toBe('completed');
  });

  it('oversized message', async () => {
    await expectRefused({ jws: 'a'.repeat(INTAKE_JWS_MAX_CHARS + 1) }, 'intake_too_large', null);
    const request = await newRequest();
    const huge = claimsOf(svc.signer, { ...request, justification: 'x'.repeat(100_000) });
    await expectRefused({ jws: await sign(svc.signer, huge) }, 'intake_too_large', null);
  });

  it('a verified payload that breaks the request schema, and header members the intake does not take', async () => {
    const request = await newRequest();
    const extra = claimsOf(svc.signer, { ...request, principal_id: svcTwin.principal.id });
    await expectRefused({ jws: await sign(svc.signer, extra) }, 'intake_invalid', inOrgOf(svc.signer));
    const { justification: _j, ...rest } = request;
    const renewal = claimsOf(svc.signer, { idempotency_key: rest.idempotency_key, certificate_id: randomUUID() });
    await expectRefused({ jws: await sign(svc.signer, renewal) }, 'intake_invalid', inOrgOf(svc.signer));
    const jwk = await sign(svc.signer, claimsOf(svc.signer, request), {
      jwk: svcTwin.signer.publicKey.export({ format: 'jwk' }),
    });
    await expectRefused({ jws: jwk }, 'intake_invalid', inOrgOf(svc.signer));
    const typ = await sign(svc.signer, claimsOf(svc.signer, request), { typ: 'JWT' });
    await expectRefused({ jws: typ }, 'intake_invalid', inOrgOf(svc.signer));
    await expectRefused(
      { jws: await sign(svc.signer, claimsOf(svc.signer, request)), principal_id: svc.principal.id },
      'intake_invalid',
      null,
    );
  });

  it('a disabled service principal', async () => {
    const s = await seedService(h.tdb.handle.db, A.admin, 'svc-disabled');
    const jws = await sign(s.signer, claimsOf(s.signer, await newRequest()));
    await h.tdb.superuser('UPDATE principals SET disabled_at = now() WHERE id = $1', [s.principal.id]);
    await expectRefused({ jws }, 'intake_principal_disabled', inOrgOf(s.signer));
  });
});

describe('intake keys in the database', () => {
  it('refuses a key for a user principal, a private key, and any change but revocation', async () => {
    const db = h.tdb.handle.db;
    const ok = await h.tdb.superuser<{ public_key: Buffer }>('SELECT public_key FROM intake_keys WHERE id = $1', [
      svc.signer.keyId,
    ]);
    const spki = ok.rows[0]?.public_key;
    await expect(
      db
        .insertInto('intake_keys')
        .values({
          org_id: A.orgId,
          principal_id: A.requester.id,
          alg: 'ES256',
          public_key: spki ?? Buffer.alloc(0),
          thumbprint: 'x'.repeat(43),
          name: null,
          created_by: A.admin.id,
        })
        .execute(),
    ).rejects.toThrow(/service principals only/);
    const pkcs8 = svc.signer.privateKey.export({ type: 'pkcs8', format: 'der' });
    await expect(
      db
        .insertInto('intake_keys')
        .values({
          org_id: A.orgId,
          principal_id: svcTwin.principal.id,
          alg: 'ES256',
          public_key: pkcs8,
          thumbprint: 'y'.repeat(43),
          name: null,
          created_by: A.admin.id,
        })
        .execute(),
    ).rejects.toThrow(/intake_keys_public_key_shape/);
    await expect(
      db
        .updateTable('intake_keys')
        .set({ principal_id: svcTwin.principal.id })
        .where('id', '=', svc.signer.keyId)
        .execute(),
    ).rejects.toThrow(/permission denied/);
    const s = await addIntakeKey(db, A.admin, svcTwin.principal);
    await revokeIntakeKey(db, A.admin, s.keyId);
    await expect(
      db.updateTable('intake_keys').set({ revoked_at: null }).where('id', '=', s.keyId).execute(),
    ).rejects.toThrow(/revocation is final/);
    await expect(db.deleteFrom('intake_keys').where('id', '=', s.keyId).execute()).rejects.toThrow(/permission denied/);
  });
});

describe('abuse limits', () => {
  it('a principal’s HTTP and queue submissions share one budget; a message over it waits (delayed, nothing written) and is filed once the window ends', async () => {
    now += 3_600_000;
    const s = await seedService(h.tdb.handle.db, A.admin, 'svc-rate');
    const windowStart = now;
    const { idempotency_key: _key, ...body } = await newRequest();
    const http = await h.call(s.principal.key, { method: 'POST', url: '/api/v1/certificates', payload: body });
    expect(http.status).toBe(202);
    for (let i = 1; i < LIMITS.submitPerMinute; i++) {
      const out = await send({ jws: await sign(s.signer, claimsOf(s.signer, await newRequest())) });
      expect(out.state, out.reason).toBe('completed');
    }
    // Near the end of the window, so the delay BullMQ waits is short.
    now = windowStart + 59_000;
    const counts = await domainCounts();
    const jobId = `limited-${randomUUID()}`;
    await queue.add(
      'renewal-requests',
      { jws: await sign(s.signer, claimsOf(s.signer, await newRequest())) },
      { jobId },
    );
    const waiting = await settle(queue, jobId, ['delayed', 'completed', 'failed']);
    expect(waiting.state).toBe('delayed');
    expect(await domainCounts()).toEqual(counts);
    expect(logLines.some((l) => l.includes(jobId) && l.includes('rate_limited'))).toBe(true);

    now = windowStart + 61_000;
    const filed = await settle(queue, jobId);
    expect(filed.state, filed.reason).toBe('completed');
    const job = await queue.getJob(jobId);
    expect(job?.attemptsMade).toBe(1);
  });

  it('the open-requests bound: a message past it waits, and is filed once a request of the principal closes', async () => {
    now += 3_600_000;
    const s = await seedService(h.tdb.handle.db, A.admin, 'svc-open');
    const p = randomQueuePrefix();
    const q = openQueue('renewal-requests', { connection: redis, prefix: p });
    const entry: { queue: Queue; worker?: Worker } = { queue: q };
    others.push(entry);
    entry.worker = createIntakeWorker(
      { connection: workerRedis, prefix: p },
      deps({ limits: { submitPerMinute: 0, decidePerMinute: 0, maxOpenRequests: 1 } }),
    );
    const first = await send({ jws: await sign(s.signer, claimsOf(s.signer, await newRequest())) }, q);
    expect(first.state, first.reason).toBe('completed');
    const counts = await domainCounts();
    const jobId = `bounded-${randomUUID()}`;
    await q.add('renewal-requests', { jws: await sign(s.signer, claimsOf(s.signer, await newRequest())) }, { jobId });
    expect((await settle(q, jobId, ['delayed', 'completed', 'failed'])).state).toBe('delayed');
    expect(await domainCounts()).toEqual(counts);
    expect(logLines.some((l) => l.includes(jobId) && l.includes('too_many_open_requests'))).toBe(true);

    const rejectedByOperator = await h.call(A.operator1.key, {
      method: 'POST',
      url: `/api/v1/approvals/${first.value?.approval_id}/reject`,
      payload: { note: 'not now' },
    });
    expect(rejectedByOperator.status).toBe(200);
    await (await q.getJob(jobId))?.promote();
    const filed = await settle(q, jobId);
    expect(filed.state, filed.reason).toBe('completed');
  });
});
