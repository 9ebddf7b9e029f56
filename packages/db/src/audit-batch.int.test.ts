import { createTestDatabase, seedOrg, type TestDatabase } from '@countersign/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuditEntry, appendAudit, appendAuditMany } from './audit-ledger.ts';
import { verifyAllChains } from './audit-verify.ts';

let tdb: TestDatabase;
beforeAll(async () => {
  tdb = await createTestDatabase();
});
afterAll(async () => tdb?.drop());

describe('batched audit appends', () => {
  it('extend the chain exactly as single appends do, for a large batch and interleaved with singles', async () => {
    const org = await seedOrg(tdb.handle.db);
    const entry = (i: number): AuditEntry => ({
      orgId: org.orgId,
      actor: { id: 'system-reaper', type: 'system' },
      action: 'approval_expired',
      resourceType: 'approval',
      resourceId: `r-${i}`,
      details: { i, note: 'batch ü', nested: { b: 2, a: [1, 'x'] } },
    });
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
    const report = await verifyAllChains(tdb.handle, { mode: 'full' });
    expect(report.ok).toBe(true);
    expect(report.failures).toEqual([]);
  });
});
