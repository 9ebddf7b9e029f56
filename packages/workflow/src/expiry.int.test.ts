import { approvals, canonicalAuditBody, canonicalJson, chainHash, verifyAllChains } from '@countersign/db';
import { actorOf } from '@countersign/domain';
import { createTestDatabase, csrFor, type SeededOrg, seedOrg, type TestDatabase } from '@countersign/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expireDue } from './decisions.ts';
import { requestCertificate, requesterOf } from './requests.ts';

/**
 * The reaper's expiry writes its audit records in SQL (approvals.expireBatch),
 * not through appendAuditMany: these tests hold it to the ledger's rendering,
 * byte for byte, so that an exported chain verifies anywhere.
 */
let tdb: TestDatabase;
let orgA: SeededOrg;
let orgB: SeededOrg;
const settings = { approvalTimeoutMs: 3_600_000, escalationAfterMs: 600_000 };

beforeAll(async () => {
  tdb = await createTestDatabase();
  orgA = await seedOrg(tdb.handle.db);
  orgB = await seedOrg(tdb.handle.db);
});
afterAll(async () => tdb?.drop());

async function submitOverdue(org: SeededOrg, n: number): Promise<{ approvalId: string; jobId: string }[]> {
  const out = [];
  for (let i = 0; i < n; i++) {
    const cn = `x${Math.random().toString(36).slice(2, 10)}.example.test`;
    const res = await requestCertificate(tdb.handle.db, settings, requesterOf(org.requester, actorOf(org.requester)), {
      profile_id: org.gated.id,
      common_name: cn,
      csr: (await csrFor(cn)).csrPem,
      justification: 'expiry test',
    });
    if (!res.approval) throw new Error('the gated profile did not gate');
    out.push({ approvalId: res.approval.id, jobId: res.job.id });
  }
  await tdb.superuser(`UPDATE approval_requests SET expires_at = now() - interval '1 minute' WHERE id = ANY($1)`, [
    out.map((r) => r.approvalId),
  ]);
  return out;
}

interface StoredRecord {
  org_id: string;
  seq: string;
  at: Date;
  actor_id: string;
  actor_type: string;
  action: string;
  resource_type: string;
  resource_id: string;
  details_text: string;
  prev_hash: Buffer;
  hash: Buffer;
}

const recordsOf = async (ids: string[]) =>
  (
    await tdb.superuser<StoredRecord>(
      `SELECT org_id, seq::text, at, actor_id, actor_type, action, resource_type, resource_id,
              details::text AS details_text, prev_hash, hash
         FROM audit_records WHERE action = 'approval_expired' AND resource_id = ANY($1) ORDER BY org_id, seq`,
      [ids],
    )
  ).rows;

describe('expiry audit records', () => {
  it('are what appendAuditMany would write: canonical details, the same body and hash, chains of several orgs intact', async () => {
    const a = await submitOverdue(orgA, 3);
    const b = await submitOverdue(orgB, 2);
    // One job has left awaiting_approval before the reaper comes: its expiry cancels nothing.
    await tdb.superuser(`ALTER TABLE jobs DISABLE TRIGGER jobs_guard`);
    await tdb.superuser(`UPDATE jobs SET status = 'cancelled' WHERE id = $1`, [a[0]?.jobId]);
    await tdb.superuser(`ALTER TABLE jobs ENABLE ALWAYS TRIGGER jobs_guard`);

    const expired = await expireDue(tdb.handle.db, new Date(), 100);
    const all = [...a, ...b];
    expect(expired.map((e) => e.id).sort()).toEqual(all.map((r) => r.approvalId).sort());
    const first = expired.find((e) => e.id === a[0]?.approvalId);
    expect(first?.job_cancelled).toBe(false);
    expect(expired.filter((e) => e.job_cancelled)).toHaveLength(4);
    for (const e of expired) expect(e.waited_seconds).toBeGreaterThan(0);
    // The requesters' mail: one outbox event per org for the batch, naming exactly that org's expired requests.
    const events = await tdb.superuser<{ org_id: string; topic: string; payload: { approval_ids: string[] } }>(
      `SELECT org_id, topic, payload FROM outbox WHERE topic LIKE 'approval%'`,
    );
    const byOrg = (org: SeededOrg, rs: { approvalId: string }[]) => ({
      org_id: org.orgId,
      topic: 'approvals.expired',
      payload: { approval_ids: rs.map((r) => r.approvalId).sort() },
    });
    expect(events.rows.filter((e) => e.topic !== 'approval.submitted')).toEqual(
      expect.arrayContaining([byOrg(orgA, a), byOrg(orgB, b)]),
    );
    expect(events.rows.filter((e) => e.topic !== 'approval.submitted')).toHaveLength(2);

    const records = await recordsOf(all.map((r) => r.approvalId));
    expect(records).toHaveLength(5);
    for (const r of records) {
      const details = JSON.parse(r.details_text) as Record<string, unknown>;
      // Stored text is the canonical (RFC 8785) rendering of itself.
      expect(r.details_text).toBe(canonicalJson(details));
      const row =
        // Milliseconds since the epoch, truncated by the server: JavaScript renders them (toISOString) below.
        (
          await tdb.superuser<{ job_id: string; expires_ms: string; decided_ms: string }>(
            `SELECT job_id, (extract(epoch FROM date_trunc('milliseconds', expires_at)) * 1000)::bigint::text AS expires_ms,
                  (extract(epoch FROM date_trunc('milliseconds', decided_at)) * 1000)::bigint::text AS decided_ms
             FROM approval_requests WHERE id = $1`,
            [r.resource_id],
          )
        ).rows[0];
      expect(details).toEqual({
        state: 'expired',
        job_id: row?.job_id,
        job_status: r.resource_id === a[0]?.approvalId ? null : 'cancelled',
        error: 'approval expired',
        expires_at: new Date(Number(row?.expires_ms)).toISOString(),
        decided_at: new Date(Number(row?.decided_ms)).toISOString(),
      });
      expect([r.actor_id, r.actor_type, r.action, r.resource_type]).toEqual([
        'system-reaper',
        'system',
        'approval_expired',
        'approval',
      ]);
      // The hash the TypeScript ledger computes for these columns is the one stored.
      const body = canonicalAuditBody({
        orgId: r.org_id,
        at: r.at,
        actorId: r.actor_id,
        actorType: r.actor_type,
        action: r.action,
        resourceType: r.resource_type,
        resourceId: r.resource_id,
        details,
      });
      expect(chainHash(r.prev_hash, BigInt(r.seq), body).toString('hex')).toBe(r.hash.toString('hex'));
    }
    const report = await verifyAllChains(tdb.handle, { mode: 'full' });
    expect(report.failures).toEqual([]);
    expect(report.ok).toBe(true);
  });

  it('render an actor whose id needs JSON escaping exactly as the ledger does', async () => {
    const [r] = await submitOverdue(orgA, 1);
    const actor = { id: 'reaper "night" \\ shift\n\u0001 ü', type: 'system' };
    await tdb.handle.db.transaction().execute((tx) => approvals.expireBatch(tx, new Date(), 10, actor));
    const [stored] = await recordsOf([r?.approvalId ?? '']);
    expect(stored?.actor_id).toBe(actor.id);
    const body = canonicalAuditBody({
      orgId: stored?.org_id ?? '',
      at: stored?.at ?? new Date(),
      actorId: actor.id,
      actorType: actor.type,
      action: 'approval_expired',
      resourceType: 'approval',
      resourceId: r?.approvalId ?? '',
      details: JSON.parse(stored?.details_text ?? '{}'),
    });
    expect(chainHash(stored?.prev_hash ?? Buffer.alloc(32), BigInt(stored?.seq ?? 0), body)).toEqual(stored?.hash);
    expect((await verifyAllChains(tdb.handle, { mode: 'full' })).ok).toBe(true);
  });

  it('change nothing when the batch fails: no request expired, no job cancelled, no mail queued, no record', async () => {
    const [r] = await submitOverdue(orgB, 1);
    const outboxBefore = (await tdb.superuser<{ n: string }>('SELECT count(*) n FROM outbox')).rows[0]?.n;
    // decided_by_type must be user, service or system: the request's CHECK refuses the whole statement.
    await expect(
      tdb.handle.db
        .transaction()
        .execute((tx) => approvals.expireBatch(tx, new Date(), 10, { id: 'someone', type: 'robot' })),
    ).rejects.toThrow(/check constraint/);
    const state = await tdb.superuser<{ state: string; status: string }>(
      'SELECT a.state, j.status FROM approval_requests a JOIN jobs j ON j.id = a.job_id WHERE a.id = $1',
      [r?.approvalId],
    );
    expect(state.rows[0]).toEqual({ state: 'pending', status: 'awaiting_approval' });
    expect((await tdb.superuser<{ n: string }>('SELECT count(*) n FROM outbox')).rows[0]?.n).toBe(outboxBefore);
    expect(await recordsOf([r?.approvalId ?? ''])).toEqual([]);
  });
});
