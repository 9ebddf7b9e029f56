import { createTestDatabase, seedOrg, type TestDatabase } from '@countersign/testing';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuditEntry, appendAudit, appendAuditMany, canonicalAuditBody } from './audit-ledger.ts';
import { verifyAllChains } from './audit-verify.ts';
import { canonicalJson } from './canonical-json.ts';
import type { Executor } from './database.ts';

let tdb: TestDatabase;
beforeAll(async () => {
  tdb = await createTestDatabase();
});
afterAll(async () => tdb?.drop());

const entryOf =
  (orgId: string) =>
  (i: number): AuditEntry => ({
    orgId,
    actor: { id: 'system-reaper', type: 'system' },
    action: 'approval_expired',
    resourceType: 'approval',
    resourceId: `r-${i}`,
    details: { i, note: 'batch ü', nested: { b: 2, a: [1, 'x'] } },
  });

/** The org's resource ids in chain order, from `afterSeq` on. */
async function chainOrder(orgId: string, afterSeq: bigint): Promise<string[]> {
  const r = await tdb.superuser<{ resource_id: string }>(
    'SELECT resource_id FROM audit_records WHERE org_id = $1 AND seq > $2 ORDER BY seq',
    [orgId, afterSeq.toString()],
  );
  return r.rows.map((x) => x.resource_id);
}

describe('batched audit appends', () => {
  it('extend the chain exactly as single appends do, for a large batch between single records', async () => {
    const org = await seedOrg(tdb.handle.db);
    const entry = entryOf(org.orgId);
    const before = await tdb.superuser<{ seq: string }>('SELECT seq FROM audit_heads WHERE org_id = $1', [org.orgId]);
    await tdb.handle.db.transaction().execute(async (tx) => {
      await appendAudit(tx, entry(-1));
      await appendAuditMany(
        tx,
        Array.from({ length: 3000 }, (_, i) => entry(i)),
      );
      await appendAudit(tx, entry(3000));
    });
    const head = await tdb.superuser<{ seq: string }>('SELECT seq FROM audit_heads WHERE org_id = $1', [org.orgId]);
    expect(BigInt(head.rows[0]?.seq ?? 0) - BigInt(before.rows[0]?.seq ?? 0)).toBe(3002n);
    // Staging order is chain order, batch or not.
    expect(await chainOrder(org.orgId, BigInt(before.rows[0]?.seq ?? 0))).toEqual(
      Array.from({ length: 3002 }, (_, i) => `r-${i - 1}`),
    );
    const report = await verifyAllChains(tdb.handle, { mode: 'full' });
    expect(report.ok).toBe(true);
    expect(report.failures).toEqual([]);
  });

  it('link a large batch at COMMIT: the org chain stays open to other writers while the transaction runs', async () => {
    const org = await seedOrg(tdb.handle.db);
    const entry = entryOf(org.orgId);
    const before = await tdb.superuser<{ seq: string }>('SELECT seq FROM audit_heads WHERE org_id = $1', [org.orgId]);
    await tdb.handle.db.transaction().execute(async (tx) => {
      await appendAuditMany(
        tx,
        Array.from({ length: 500 }, (_, i) => entry(i)),
      );
      // Another transaction appends to the same org and commits while this one is still open: it would wait on
      // the chain head (and this test time out) if the batch had locked it.
      await appendAudit(tdb.handle.db, entry(-1));
      expect((await chainOrder(org.orgId, BigInt(before.rows[0]?.seq ?? 0))).length).toBe(1);
    });
    const order = await chainOrder(org.orgId, BigInt(before.rows[0]?.seq ?? 0));
    expect(order).toEqual(['r--1', ...Array.from({ length: 500 }, (_, i) => `r-${i}`)]);
    expect((await verifyAllChains(tdb.handle, { mode: 'full' })).ok).toBe(true);
  });

  it('leave nothing staged after COMMIT, in staging tables that write no WAL', async () => {
    const org = await seedOrg(tdb.handle.db);
    const entry = entryOf(org.orgId);
    await tdb.handle.db.transaction().execute(async (tx) => {
      await appendAuditMany(
        tx,
        Array.from({ length: 100 }, (_, i) => entry(i)),
      );
      await appendAudit(tx, entry(100));
    });
    // The seal deletes what it linked: a staged row left behind would be visible here once committed.
    const staging = await tdb.superuser<{ relname: string; relpersistence: string; n: string }>(
      `SELECT relname, relpersistence,
              (SELECT count(*) FROM audit_staging) + (SELECT count(*) FROM audit_staging_batches) AS n
         FROM pg_class WHERE relname IN ('audit_staging', 'audit_staging_batches') ORDER BY relname`,
    );
    expect(staging.rows.map((r) => [r.relname, r.relpersistence, r.n])).toEqual([
      ['audit_staging', 'u', '0'],
      ['audit_staging_batches', 'u', '0'],
    ]);
  });

  it('stage a call that spans orgs as one batch per org, each chain in the order of the call', async () => {
    const a = await seedOrg(tdb.handle.db);
    const b = await seedOrg(tdb.handle.db);
    const seqOf = async (orgId: string) =>
      BigInt(
        (await tdb.superuser<{ seq: string }>('SELECT seq FROM audit_heads WHERE org_id = $1', [orgId])).rows[0]?.seq ??
          0,
      );
    const [beforeA, beforeB] = [await seqOf(a.orgId), await seqOf(b.orgId)];
    const [ea, eb] = [entryOf(a.orgId), entryOf(b.orgId)];
    await tdb.handle.db.transaction().execute(async (tx) => {
      await appendAuditMany(tx, [ea(1), eb(1), ea(2), eb(2), ea(3)]);
    });
    expect(await chainOrder(a.orgId, beforeA)).toEqual(['r-1', 'r-2', 'r-3']);
    expect(await chainOrder(b.orgId, beforeB)).toEqual(['r-1', 'r-2']);
    expect((await verifyAllChains(tdb.handle, { mode: 'full' })).ok).toBe(true);
  });

  it('still seal records staged one per row, as services of the previous release do, in staging order with batches', async () => {
    const org = await seedOrg(tdb.handle.db);
    const before = await tdb.superuser<{ seq: string }>('SELECT seq FROM audit_heads WHERE org_id = $1', [org.orgId]);
    const at = new Date(Math.floor(Date.now()));
    /** One record the way the previous release staged it: a row of audit_staging. */
    const stageOldStyle = async (ex: Executor, resourceId: string) => {
      const details = { note: 'from the previous release' };
      const body = canonicalAuditBody({
        orgId: org.orgId,
        at,
        actorId: 'system-reaper',
        actorType: 'system',
        action: 'approval_expired',
        resourceType: 'approval',
        resourceId,
        details,
      });
      await sql`INSERT INTO audit_staging (org_id, at, actor_id, actor_type, action, resource_type, resource_id, details, body)
                VALUES (${org.orgId}::uuid, ${at}, 'system-reaper', 'system', 'approval_expired', 'approval',
                        ${resourceId}, ${canonicalJson(details)}::json, ${body})`.execute(ex);
    };
    const entry = entryOf(org.orgId);
    await tdb.handle.db.transaction().execute(async (tx) => {
      await stageOldStyle(tx, 'old-1');
      await appendAuditMany(tx, [entry(1), entry(2)]);
      await stageOldStyle(tx, 'old-2');
    });
    expect(await chainOrder(org.orgId, BigInt(before.rows[0]?.seq ?? 0))).toEqual(['old-1', 'r-1', 'r-2', 'old-2']);
    expect((await verifyAllChains(tdb.handle, { mode: 'full' })).ok).toBe(true);
  });

  it('refuse the services a direct call of the append functions: they can only stage', async () => {
    const org = await seedOrg(tdb.handle.db);
    await expect(
      sql`SELECT audit_append_batch(${org.orgId}::uuid, now(), '{}'::text[], '{}'::text[], '{}'::text[],
            '{}'::text[], '{}'::text[], '{}'::json[], '{}'::bytea[])`.execute(tdb.handle.db),
    ).rejects.toThrow(/permission denied/);
    await expect(
      sql`SELECT audit_append(${org.orgId}::uuid, now(), 'a', 'system', 'x', 'y', 'z', '{}'::json, '\\x00'::bytea)`.execute(
        tdb.handle.db,
      ),
    ).rejects.toThrow(/permission denied/);
    await expect(sql`SELECT count(*) FROM audit_staging_batches`.execute(tdb.handle.db)).rejects.toThrow(
      /permission denied/,
    );
  });
});
