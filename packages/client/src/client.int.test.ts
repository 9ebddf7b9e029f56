import { X509Certificate } from 'node:crypto';
import { createLogger } from '@countersign/observability';
import { createRedis, type Worker } from '@countersign/queues';
import { csrFor, randomQueuePrefix, seedPrincipal } from '@countersign/testing';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createIntakeWorker } from '../../../services/api/src/intake.handler.ts';
import { DEFAULT_ABUSE_LIMITS, memoryRateLimiter } from '../../../services/api/src/rate-limit.ts';
import { applied, CountersignClient } from './client.ts';
import { ApiError } from './errors.ts';
import {
  enqueueRenewalRequest,
  generateIntakeKeyPair,
  type IntakeSigner,
  openRenewalRequests,
  renewalRequestJobId,
} from './queue.ts';
import { type LiveApi, startLiveApi } from './testing/live-api.ts';

let live: LiveApi;
beforeAll(async () => {
  live = await startLiveApi();
});
afterAll(async () => {
  await live?.close();
});

async function failure(p: Promise<unknown>): Promise<ApiError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ApiError);
  return err as ApiError;
}

describe('CountersignClient', () => {
  it('surfaces problem+json as a typed ApiError: two-person integrity', async () => {
    const r = await live.requestGated('tpi.example.test');
    expect(r.approval?.state).toBe('pending');
    const err = await failure(live.client(live.org.requester.key).approve(r.approval!.id, { note: 'mine' }));
    expect(err.status).toBe(403);
    expect(err.code).toBe('two_person_integrity');
    expect(err.detail).toContain('two-person integrity');
    expect(err.requestId).toMatch(/.+/);
    expect(err.method).toBe('POST');
    expect(err.path).toBe('/api/v1/approvals/{id}/approve');
    // Nothing was written: still pending, no votes.
    const after = await live.client(live.org.operator1.key).getApproval(r.approval!.id);
    expect(after.state).toBe('pending');
    expect(after.votes).toEqual([]);
  });

  it('reports unauthenticated, validation and not-found errors with their codes', async () => {
    expect((await failure(live.client('cs_nope').me())).code).toBe('unauthenticated');
    expect((await failure(live.client(null).listApprovals())).status).toBe(401);
    const v = await failure(
      live.client(live.org.operator1.key).reject('00000000-0000-4000-8000-000000000000', {} as never),
    );
    expect(v.code).toBe('validation_failed');
    expect(v.errors.length).toBeGreaterThan(0);
    const nf = await failure(live.client(live.org.operator1.key).getJob('00000000-0000-4000-8000-000000000000'));
    expect(nf.code).toBe('not_found');
    expect(nf.routeMissing).toBe(false);
    // A path parameter that is not an id never reaches the server.
    expect((await failure(live.client(live.org.admin.key).getJob('../me'))).code).toBe('validation_failed');
  });

  it('says which server it could not reach', async () => {
    const dead = new CountersignClient({ baseUrl: 'http://127.0.0.1:9', apiKey: 'x', timeoutMs: 2_000 });
    const err = await failure(dead.me());
    expect(err.code).toBe('unreachable');
    expect(err.status).toBe(0);
    expect(err.detail).toContain('127.0.0.1:9');
  });

  it('walks a request through approval, issuance and a renewal diff', async () => {
    const op = live.client(live.org.operator1.key);
    const first = await live.requestGated('shop.example.test', ['www-shop.example.test']);
    const diff0 = await op.getApprovalDiff(first.approval!.id);
    expect(diff0).toMatchObject({ kind: 'issuance', current: null, key_change: 'new', names_removed: [] });
    expect(diff0.names_added).toEqual(['shop.example.test', 'www-shop.example.test']);

    const approved = await op.approve(first.approval!.id, { note: 'change CHG-1042 reviewed' });
    expect(approved.state).toBe('approved');
    expect((await live.issue(first.job.id)).status).toBe('issued');
    expect((await op.getJob(first.job.id)).status).toBe('completed');
    const pem = await live.client(live.org.requester.key).getCertificatePem(first.certificate.id);
    const leaf = new X509Certificate(pem);
    expect(leaf.subjectAltName).toContain('DNS:www-shop.example.test');
    const cert = await op.getCertificate(first.certificate.id);
    expect(cert.versions).toHaveLength(1);

    // Renewal with a new key that drops www and adds api: the diff shows all three facts.
    const { csrPem } = await csrFor('shop.example.test', ['api-shop.example.test']);
    const renewal = await live
      .client(live.org.requester.key)
      .renewCertificate(first.certificate.id, { csr: csrPem, justification: 'rotate key, move www to the CDN' });
    const diff = await op.getApprovalDiff(renewal.approval!.id);
    expect(diff.kind).toBe('renewal');
    expect(diff.names_added).toEqual(['api-shop.example.test']);
    expect(diff.names_removed).toEqual(['www-shop.example.test']);
    expect(diff.names_kept).toEqual(['shop.example.test']);
    expect(diff.key_change).toBe('changed');
    expect(diff.current?.serial).toBe(cert.current_version?.serial);
    expect(diff.current?.key.algorithm).toBe('ECDSA P-256');
    expect(diff.current_validity_days).toBe(diff.proposed.validity_days);

    // Rejecting it, then renewing without a CSR, reuses the key.
    await op.reject(renewal.approval!.id, { note: 'CDN move not approved yet' });
    const reuse = await live.client(live.org.requester.key).renewCertificate(first.certificate.id, {
      justification: 'routine renewal',
    });
    const diff2 = await op.getApprovalDiff(reuse.approval!.id);
    expect(diff2.key_change).toBe('reused');
    expect(diff2.names_added).toEqual([]);
    expect(diff2.names_removed).toEqual([]);
  });

  it('hides another principal’s request from a requester, diff included', async () => {
    const r = await live.requestGated('ops-only.example.test', [], live.org.operator2.key);
    const err = await failure(live.client(live.org.requester.key).getApprovalDiff(r.approval!.id));
    expect(err.code).toBe('not_found');
  });

  it('binds, lists and deletes a client certificate for a service principal (admin)', async () => {
    const admin = live.client(live.org.admin.key);
    const svc = applied(await admin.createPrincipal({ name: 'deploy-bot', role: 'requester', kind: 'service' }));
    const bound = applied(
      await admin.bindClientCertificate(svc.id, { san: 'DNS:deploy-bot.example.test', name: 'ci' }),
    );
    expect(bound).toMatchObject({ principal_id: svc.id, match_kind: 'san' });
    const listed = await admin.listClientCertificates({ principal_id: svc.id });
    expect(listed.items.map((b) => b.id)).toEqual([bound.id]);
    expect(await admin.deleteClientCertificate(bound.id)).toEqual({ id: bound.id, deleted: true });
    const refused = await failure(
      live.client(live.org.operator1.key).bindClientCertificate(svc.id, { san: 'DNS:x.example.test' }),
    );
    expect(refused.code).toBe('forbidden');
  });

  it('pages through a list', async () => {
    const op = live.client(live.org.operator1.key);
    for (let i = 0; i < 3; i++) await live.requestGated(`page${i}.example.test`);
    const seen: string[] = [];
    for await (const items of op.pages(op.listApprovals, { limit: 2, state: 'pending' })) {
      expect(items.length).toBeLessThanOrEqual(2);
      seen.push(...items.map((a) => a.id));
    }
    expect(new Set(seen).size).toBe(seen.length);
    expect(seen.length).toBeGreaterThanOrEqual(4);
  });
});

describe('enqueueRenewalRequest', () => {
  let redis: Redis;
  let worker: Worker | undefined;
  let signer: IntakeSigner;
  let svcKey: string;
  const prefix = randomQueuePrefix();
  beforeAll(async () => {
    redis = createRedis(live.tdb.redisUrl, 'producer');
    // The README's steps: a service principal generates a key pair and registers the public key itself.
    const svc = await seedPrincipal(live.tdb.handle.db, live.org.admin, 'fleet-manager', 'requester', 'service');
    svcKey = svc.key;
    const pair = generateIntakeKeyPair();
    const registered = await live.client(svc.key).registerOwnIntakeKey({
      public_key: pair.publicJwk as Record<string, unknown>,
      name: 'fleet manager',
    });
    expect(registered).toMatchObject({ principal_id: svc.id, org_id: live.org.orgId, alg: 'ES256', revoked_at: null });
    signer = {
      keyId: registered.id,
      principalId: registered.principal_id,
      orgId: registered.org_id,
      privateKey: pair.privateKeyPem,
    };
  });
  afterAll(async () => {
    await worker?.close();
    redis?.disconnect();
  });

  it('is handled exactly like the HTTP request of the signing service principal, once per idempotency key', async () => {
    const first = await live.requestGated('queued.example.test', [], svcKey);
    await live.client(live.org.operator1.key).approve(first.approval!.id);
    await live.issue(first.job.id);

    const payload = {
      idempotency_key: 'upstream-renew-1',
      certificate_id: first.certificate.id,
      justification: 'renewal from the fleet manager',
    };
    const a = await enqueueRenewalRequest({ connection: redis, prefix }, payload, signer);
    const b = await enqueueRenewalRequest({ connection: redis, prefix }, payload, signer);
    expect(a.queueJobId).toBe(renewalRequestJobId(signer.principalId, payload.idempotency_key));
    expect(b.queueJobId).toBe(a.queueJobId);
    // What travels is the signed message only: no principal, no key.
    const queued = await openRenewalRequests({ connection: redis, prefix }).getJob(a.queueJobId);
    expect(Object.keys(queued?.data ?? {})).toEqual(['jws']);
    expect(JSON.stringify(queued?.data)).not.toContain('PRIVATE');

    const workerRedis = createRedis(live.tdb.redisUrl, 'worker');
    const results: unknown[] = [];
    worker = createIntakeWorker(
      { connection: workerRedis, prefix },
      {
        db: live.tdb.handle.db,
        settings: { approvalTimeoutMs: 3_600_000, escalationAfterMs: 600_000 },
        log: createLogger('intake-client-test', 'silent'),
        maxAgeMs: 15 * 60_000,
        limiter: memoryRateLimiter(),
        limits: DEFAULT_ABUSE_LIMITS,
      },
    );
    worker.on('completed', (_job, value) => results.push(value));
    const deadline = Date.now() + 20_000;
    while (results.length < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(results).toHaveLength(1);
    const result = results[0] as { job_id: string; approval_id: string };
    const approval = await live.client(live.org.operator1.key).getApproval(result.approval_id);
    expect(approval).toMatchObject({ state: 'pending', requested_by: signer.principalId, job_id: result.job_id });
    expect(approval.justification).toBe('renewal from the fleet manager');
    const queue = openRenewalRequests({ connection: redis, prefix });
    expect(await queue.getJobCounts('waiting', 'completed')).toEqual({ waiting: 0, completed: 1 });
    await queue.close();
    await worker.close();
    workerRedis.disconnect();
    worker = undefined;
  });

  it('refuses a bad payload before it reaches Redis', async () => {
    const bad = { idempotency_key: 'x', principal_id: 'not-a-uuid', certificate_id: 'nope', justification: '' };
    await expect(enqueueRenewalRequest({ connection: redis, prefix }, bad as never, signer)).rejects.toThrow(
      /invalid renewal-requests payload/,
    );
    const queue = openRenewalRequests({ connection: redis, prefix });
    expect(await queue.getJobCounts('waiting')).toEqual({ waiting: 0 });
    await queue.close();
  });

  it('refuses to register a private key or a small RSA key, naming the problem', async () => {
    const pair = generateIntakeKeyPair();
    const privateJwk = pair.privateKey.export({ format: 'jwk' }) as Record<string, unknown>;
    const err = await failure(
      live.client(live.org.admin.key).registerIntakeKey(signer.principalId, { public_key: privateJwk }),
    );
    expect(err.code).toBe('validation_failed');
    expect(err.detail).toMatch(/private/);
    const pem = await failure(
      live.client(live.org.admin.key).registerIntakeKey(signer.principalId, { public_key: pair.privateKeyPem }),
    );
    expect(pem.code).toBe('validation_failed');
    expect(pem.detail).toMatch(/private key/);
  });
});
