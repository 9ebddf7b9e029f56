import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyAndCsr } from '@countersign/ca/csr-generate';
import { CountersignClient } from '@countersign/client';
import { enqueueRenewalRequest, generateIntakeKeyPair } from '@countersign/client/queue';
import { createRedis, openQueue } from '@countersign/queues';
import type { Stack } from '@countersign/stack';
import { QueueEvents } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiCall, startE2eStack, waitForPem } from './e2e-stack.ts';

/**
 * The gated issuance pipeline end to end, with api, approval, issuer, notifier
 * and reaper running as separate processes against real PostgreSQL and Redis.
 */
let stack: Stack & { dataDir: string; cleanup(): Promise<void> };

beforeAll(async () => {
  stack = await startE2eStack();
});
afterAll(async () => stack?.cleanup());

const api = (key: string, method: string, path: string, body?: unknown) =>
  apiCall(stack.apiUrl, key, method, path, body);

async function verifyWithOpenssl(pem: string, name: string) {
  const leafFile = join(stack.dataDir, `${name}.pem`);
  await writeFile(leafFile, pem);
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
  expect(blocks.length).toBeGreaterThanOrEqual(2);
  await writeFile(join(stack.dataDir, `${name}-leaf.pem`), blocks[0] ?? '');
  await writeFile(join(stack.dataDir, `${name}-chain.pem`), blocks.slice(1).join(''));
  const out = execFileSync('openssl', [
    'verify',
    '-CAfile',
    join(stack.dataDir, 'ca', 'root.crt.pem'),
    '-untrusted',
    join(stack.dataDir, `${name}-chain.pem`),
    join(stack.dataDir, `${name}-leaf.pem`),
  ]).toString();
  expect(out).toContain(': OK');
}

describe('end to end with five service processes', () => {
  it('request, refused self-approval, approval by another principal, PEM within 2 s that verifies', async () => {
    const demo = stack.demo;
    if (!demo) throw new Error('no demo org');
    const { carol, alice } = demo.principals;
    const cn = `web.${demo.domain}`;
    const { csrPem } = await generateKeyAndCsr({ commonName: cn, dnsNames: [cn] });
    const req = await api(carol.key, 'POST', '/api/v1/certificates', {
      profile_id: demo.profiles.production,
      common_name: cn,
      csr: csrPem,
      justification: 'e2e',
    });
    expect(req.status).toBe(202);
    const self = await api(carol.key, 'POST', `/api/v1/approvals/${req.body.approval.id}/approve`, {});
    expect(self.status).toBe(403);
    expect(self.body.code).toBe('two_person_integrity');
    // Nothing is issued while the request waits.
    await new Promise((r) => setTimeout(r, 300));
    expect((await api(carol.key, 'GET', `/api/v1/certificates/${req.body.certificate.id}/pem`)).status).toBe(404);

    const approvedAt = Date.now();
    const ok = await api(alice.key, 'POST', `/api/v1/approvals/${req.body.approval.id}/approve`, { note: 'e2e ok' });
    expect(ok.status).toBe(200);
    const { pem, ms } = await waitForPem(stack.apiUrl, carol.key, req.body.certificate.id, approvedAt);
    expect(ms).toBeLessThan(2_000);
    await verifyWithOpenssl(pem, 'http');
    const job = await api(carol.key, 'GET', `/api/v1/jobs/${req.body.job.id}`);
    expect(job.body.status).toBe('completed');
  });

  it('the same through the renewal-requests intake queue, signed with a service principal’s registered key', async () => {
    const demo = stack.demo;
    if (!demo) throw new Error('no demo org');
    const { admin, bob } = demo.principals;
    // An admin creates the fleet manager's service principal and registers the public key it signs with.
    const svc = await api(admin.key, 'POST', '/api/v1/principals', {
      name: 'fleet-manager',
      role: 'requester',
      kind: 'service',
    });
    expect(svc.status).toBe(201);
    const pair = generateIntakeKeyPair();
    const registered = await new CountersignClient({ baseUrl: stack.apiUrl, apiKey: admin.key }).registerIntakeKey(
      svc.body.id,
      { public_key: pair.publicJwk as Record<string, unknown>, name: 'fleet manager' },
    );
    const signer = {
      keyId: registered.id,
      principalId: registered.principal_id,
      orgId: registered.org_id,
      privateKey: pair.privateKeyPem,
    };
    const cn = `queue.${demo.domain}`;
    const { csrPem } = await generateKeyAndCsr({ commonName: cn, dnsNames: [cn] });
    const prefix = stack.env.COUNTERSIGN_QUEUE_PREFIX ?? '{countersign}';
    const redis = createRedis(stack.redisUrl, 'worker');
    const queue = openQueue('renewal-requests', { connection: redis, prefix });
    const events = new QueueEvents('renewal-requests', { connection: createRedis(stack.redisUrl, 'worker'), prefix });
    try {
      await events.waitUntilReady();
      const request = {
        idempotency_key: 'e2e-queue-1',
        profile_id: demo.profiles.production,
        common_name: cn,
        csr: csrPem,
        justification: 'via the intake queue',
      };
      const { queueJobId } = await enqueueRenewalRequest(queue, request, signer);
      const job = await queue.getJob(queueJobId);
      if (!job) throw new Error('the message is not on the queue');
      expect(Object.keys(job.data)).toEqual(['jws']);
      const result = (await job.waitUntilFinished(events, 15_000)) as {
        job_id: string;
        approval_id: string;
        certificate_id: string;
      };
      expect(result.approval_id).toEqual(expect.any(String));
      const approval = await api(bob.key, 'GET', `/api/v1/approvals/${result.approval_id}`);
      expect(approval.body).toMatchObject({ requested_by: svc.body.id, requester_type: 'service', state: 'pending' });
      const approvedAt = Date.now();
      const ok = await api(bob.key, 'POST', `/api/v1/approvals/${result.approval_id}/approve`, {});
      expect(ok.status).toBe(200);
      const { pem, ms } = await waitForPem(stack.apiUrl, admin.key, result.certificate_id, approvedAt);
      expect(ms).toBeLessThan(2_000);
      await verifyWithOpenssl(pem, 'queue');

      // The same signed message copied into another job is refused as a replay, and files nothing.
      const copy = await queue.add('renewal-requests', job.data, { jobId: 'e2e-queue-copy' });
      await expect(copy.waitUntilFinished(events, 15_000)).rejects.toThrow(/^intake_replayed: /);
      // An unsigned message naming a principal, as the queue took them before, fails with a clear reason.
      const unsigned = await queue.add('renewal-requests', { ...request, principal_id: svc.body.id } as never);
      await expect(unsigned.waitUntilFinished(events, 15_000)).rejects.toThrow(/^intake_unsigned: /);
      // A bad payload fails with a clear reason and writes nothing.
      const bad = await queue.add('renewal-requests', { jws: 'nope', certificate_id: 'nope' } as never);
      await expect(bad.waitUntilFinished(events, 15_000)).rejects.toThrow(/invalid renewal-requests payload/);
      const jobs = await api(admin.key, 'GET', `/api/v1/jobs?certificate_id=${result.certificate_id}`);
      expect(jobs.body.items).toHaveLength(1);
    } finally {
      await events.close();
      await queue.close();
      redis.disconnect();
    }
  });
});
