import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type LocalCa, loadOrCreateLocalCa, localConnector } from '@countersign/ca';
import { certificates, completeIssuance, jobs } from '@countersign/db';
import { actorOf, SYSTEM_ACTORS } from '@countersign/domain';
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
    await tdb.superuser<{ id: string; leaf_pem: string; chain_pem: string; not_after: Date }>(
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
    // Recorded with it: the certificate points at the version, the event is queued, the ledger has the record.
    const cert = await tdb.superuser<{ current_version_id: string; not_after: Date }>(
      'SELECT current_version_id, not_after FROM certificates WHERE id = $1',
      [r.certificate.id],
    );
    expect(cert.rows[0]).toEqual({ current_version_id: v?.id, not_after: v?.not_after });
    const events = await tdb.superuser<{ payload: unknown }>(
      `SELECT payload FROM outbox WHERE topic = 'certificate.issued' AND payload->>'job_id' = $1`,
      [r.job.id],
    );
    expect(events.rows.map((e) => e.payload)).toEqual([{ job_id: r.job.id, version_id: v?.id }]);
    const audit = await tdb.superuser<{ details: { version_id: string } }>(
      `SELECT details FROM audit_records WHERE action = 'certificate_issued' AND resource_id = $1`,
      [r.certificate.id],
    );
    expect(audit.rows.map((a) => a.details.version_id)).toEqual([v?.id]);

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
    // Recording a completion again is refused whole, even outside a transaction: no second event or record.
    const db = tdb.handle.db;
    const completed = await jobs.findJob(db, org.orgId, r.job.id);
    const version = await certificates.findVersion(db, org.orgId, v?.id ?? '');
    if (!completed || !version) throw new Error('the issued rows are gone');
    await expect(
      completeIssuance(db, {
        job: completed,
        version,
        at: new Date(),
        audit: {
          orgId: org.orgId,
          actor: SYSTEM_ACTORS.issuer,
          action: 'certificate_issued',
          resourceType: 'certificate',
          resourceId: r.certificate.id,
          details: { version_id: version.id },
        },
      }),
    ).rejects.toThrow(/was not pending or running/);
    expect(
      (
        await tdb.superuser(`SELECT 1 FROM outbox WHERE topic = 'certificate.issued' AND payload->>'job_id' = $1`, [
          r.job.id,
        ])
      ).rows,
    ).toHaveLength(1);
    expect(
      (
        await tdb.superuser(`SELECT 1 FROM audit_records WHERE action = 'certificate_issued' AND resource_id = $1`, [
          r.certificate.id,
        ])
      ).rows,
    ).toHaveLength(1);
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

describe('issued equals approved', () => {
  /** A connector that signs with the real local CA, but not quite what it was asked for. */
  const twisted = (change: (req: Parameters<ReturnType<typeof localConnector>['issue']>[0]) => typeof req) => {
    const real = localConnector(ca);
    return { id: 'local', issue: (req: Parameters<typeof real.issue>[0]) => real.issue(change(req)) };
  };

  it.each([
    [
      'an extra name',
      (req: { dnsNames: readonly string[] }) => ({ ...req, dnsNames: [...req.dnsNames, 'evil.example.test'] }),
      /extra: \[evil\.example\.test\]/,
    ],
    [
      'a missing name',
      (req: { dnsNames: readonly string[] }) => ({ ...req, dnsNames: req.dnsNames.slice(0, 1) }),
      /missing: \[/,
    ],
  ] as const)('refuses a leaf with %s: the job fails, nothing is recorded', async (_name, change, why) => {
    const r = await gated();
    await approve(tdb.handle.db, org.operator1, r.approval?.id ?? '', 'ok');
    const crooked = issueJobHandler(
      tdb.handle.db,
      new Map([['local', twisted((req) => change(req) as typeof req)]]),
      log,
    );
    const outcome = await crooked(r.job.id);
    expect(outcome.status).toBe('refused');
    expect(outcome.status === 'refused' && outcome.reason).toMatch(why);
    expect(await versions(r.job.id)).toEqual([]);
    const job = await tdb.superuser<{ status: string; error: string }>('SELECT status, error FROM jobs WHERE id = $1', [
      r.job.id,
    ]);
    expect(job.rows[0]?.status).toBe('failed');
    expect(job.rows[0]?.error).toMatch(/issued certificate differs from the approval/);
    const audit = await tdb.superuser<{ details: { error: string } }>(
      `SELECT details FROM audit_records WHERE resource_id = $1 AND action = 'issuance_failed'`,
      [r.job.id],
    );
    expect(audit.rows.map((x) => x.details.error)).toEqual(['issued_mismatch']);
  });

  it('refuses a leaf for another key', async () => {
    const r = await gated();
    await approve(tdb.handle.db, org.operator1, r.approval?.id ?? '', 'ok');
    const { generateKeyAndCsr } = await import('@countersign/ca/csr-generate');
    const other = await generateKeyAndCsr({ commonName: 'x.example.test', dnsNames: ['x.example.test'] });
    const { parseCsr } = await import('@countersign/ca');
    const otherKey = parseCsr(other.csrPem).publicKeySpki;
    const crooked = issueJobHandler(
      tdb.handle.db,
      new Map([['local', twisted((req) => ({ ...req, publicKeySpki: otherKey }))]]),
      log,
    );
    const outcome = await crooked(r.job.id);
    expect(outcome).toMatchObject({ status: 'refused', reason: 'the public key is not the requested one' });
    expect(await versions(r.job.id)).toEqual([]);
  });

  it('signs the names the approvers were shown, and records the leaf’s own names', async () => {
    const r = await gated();
    await approve(tdb.handle.db, org.operator1, r.approval?.id ?? '', 'ok');
    expect((await issue(r.job.id)).status).toBe('issued');
    const row = await tdb.superuser<{ sans: string[]; domains: string[] }>(
      `SELECT v.sans, a.domains FROM certificate_versions v JOIN approval_requests a ON a.job_id = v.job_id WHERE v.job_id = $1`,
      [r.job.id],
    );
    expect([...(row.rows[0]?.sans ?? [])].sort()).toEqual([...(row.rows[0]?.domains ?? [])].sort());
  });
});
