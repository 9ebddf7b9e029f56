import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type LocalCa, loadOrCreateLocalCa, localConnector } from '@countersign/ca';
import { actorOf } from '@countersign/domain';
import { createLogger } from '@countersign/observability';
import { createRedis, createWorker, enqueue, openQueue } from '@countersign/queues';
import {
  createTestDatabase,
  csrFor,
  randomQueuePrefix,
  type SeededOrg,
  seedOrg,
  type TestDatabase,
} from '@countersign/testing';
import { approve, reject, requestCertificate, requesterOf } from '@countersign/workflow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueJobHandler } from './issue-job.handler.ts';

let tdb: TestDatabase;
let org: SeededOrg;
let ca: LocalCa;
let dir: string;
let issue: ReturnType<typeof issueJobHandler>;
const settings = { approvalTimeoutMs: 3_600_000, escalationAfterMs: 600_000 };
const log = createLogger('issuer-test', 'silent');

beforeAll(async () => {
  tdb = await createTestDatabase();
  org = await seedOrg(tdb.handle.db);
  dir = await mkdtemp(join(tmpdir(), 'issuer-test-'));
  ca = await loadOrCreateLocalCa({ dir: join(dir, 'ca') });
  issue = issueJobHandler(tdb.handle.db, new Map([['local', localConnector(ca)]]), log);
});
afterAll(async () => {
  await tdb?.drop();
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
async function gated() {
  const cn = `iss${++n}.example.test`;
  const { csrPem } = await csrFor(cn, [`alt${n}.example.test`]);
  const r = await requestCertificate(tdb.handle.db, settings, requesterOf(org.requester, actorOf(org.requester)), {
    profile_id: org.gated.id,
    common_name: cn,
    sans: [`alt${n}.example.test`],
    csr: csrPem,
    justification: 'issuer test',
  });
  return { ...r, cn };
}

const versions = async (jobId: string) =>
  (
    await tdb.superuser<{ leaf_pem: string; chain_pem: string }>(
      'SELECT * FROM certificate_versions WHERE job_id = $1',
      [jobId],
    )
  ).rows;

describe('issuer', () => {
  it('signs an approved job once; the certificate verifies against the CA chain with openssl', async () => {
    const r = await gated();
    await approve(tdb.handle.db, org.operator1, r.approval?.id ?? '', 'ok');
    const outcome = await issue(r.job.id);
    expect(outcome.status).toBe('issued');
    const [v] = await versions(r.job.id);
    expect(v).toBeDefined();
    const job = await tdb.superuser<{ status: string }>('SELECT status FROM jobs WHERE id = $1', [r.job.id]);
    expect(job.rows[0]?.status).toBe('completed');

    await writeFile(join(dir, 'leaf.pem'), v?.leaf_pem ?? '');
    await writeFile(join(dir, 'chain.pem'), v?.chain_pem ?? '');
    await writeFile(join(dir, 'root.pem'), ca.rootPem);
    const out = execFileSync('openssl', [
      'verify',
      '-CAfile',
      join(dir, 'root.pem'),
      '-untrusted',
      join(dir, 'chain.pem'),
      join(dir, 'leaf.pem'),
    ]).toString();
    expect(out).toContain(': OK');
    const text = execFileSync('openssl', ['x509', '-noout', '-text', '-in', join(dir, 'leaf.pem')]).toString();
    expect(text).toContain(`DNS:${r.cn}`);
    expect(text).toContain(`DNS:alt${n}.example.test`);
    expect(text).toContain('TLS Web Server Authentication');

    // A re-delivered message for the completed job signs nothing more.
    expect((await issue(r.job.id)).status).toBe('skipped');
    expect(await versions(r.job.id)).toHaveLength(1);
  });

  it('never signs a rejected or still-pending request, whatever message arrives', async () => {
    const rejected = await gated();
    await reject(tdb.handle.db, org.operator1, rejected.approval?.id ?? '', 'no');
    expect(await issue(rejected.job.id)).toEqual({ status: 'skipped', reason: 'job is cancelled' });
    const waiting = await gated();
    expect(await issue(waiting.job.id)).toEqual({ status: 'skipped', reason: 'job is awaiting_approval' });
    expect(await versions(rejected.job.id)).toHaveLength(0);
    expect(await versions(waiting.job.id)).toHaveLength(0);
  });

  it('duplicated and concurrent messages through BullMQ yield one certificate version', async () => {
    const r = await gated();
    await approve(tdb.handle.db, org.operator2, r.approval?.id ?? '', null);
    const prefix = randomQueuePrefix();
    const producer = createRedis(tdb.redisUrl, 'producer');
    const workerConn = createRedis(tdb.redisUrl, 'worker');
    const queue = openQueue('issuance', { connection: producer, prefix });
    const outcomes: string[] = [];
    const worker = createWorker(
      'issuance',
      { connection: workerConn, prefix },
      async (data) => {
        const o = await issue(data.job_id);
        outcomes.push(o.status);
        return o;
      },
      { concurrency: 8 },
    );
    try {
      // Distinct job ids defeat BullMQ's dedupe on purpose: this is what a lost ack or a reconciler race looks like.
      await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          enqueue(queue, 'issuance', { job_id: r.job.id }, { jobId: `dup-${i}-${r.job.id}` }),
        ),
      );
      const deadline = Date.now() + 15_000;
      while (outcomes.length < 10 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
      expect(outcomes).toHaveLength(10);
      expect(outcomes.filter((o) => o === 'issued')).toHaveLength(1);
      expect(await versions(r.job.id)).toHaveLength(1);
    } finally {
      await worker.close();
      await queue.close();
      producer.disconnect();
      workerConn.disconnect();
    }
  });
});
