import { createTestDatabase, type TestDatabase } from '@countersign/testing';
import type { Kysely } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDatabase } from './database.ts';
import { up } from './migrations/0019-list-indexes.ts';

/**
 * Migration 0019 may find its indexes already built by an operator (CREATE
 * INDEX CONCURRENTLY, docs/operator-guide.md), or left INVALID by such a
 * build that was interrupted: it keeps the first and builds the second again.
 */
let tdb: TestDatabase;
beforeAll(async () => {
  tdb = await createTestDatabase();
});
afterAll(async () => tdb?.drop());

const validity = async (name: string) =>
  (
    await tdb.superuser<{ valid: boolean }>(
      `SELECT i.indisvalid AS valid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = $1`,
      [name],
    )
  ).rows[0]?.valid;

describe('migration 0019', () => {
  it('runs again over indexes that exist, and rebuilds one left invalid', async () => {
    expect(await validity('audit_records_at')).toBe(true);
    expect(await validity('jobs_certificate')).toBeUndefined();
    // What an interrupted CREATE INDEX CONCURRENTLY leaves behind.
    await tdb.superuser(`UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'audit_records_at'::regclass`);
    expect(await validity('audit_records_at')).toBe(false);
    const owner = createDatabase({ url: tdb.ownerUrl, poolSize: 1, statementCacheSize: 0 });
    try {
      await up(owner.db as unknown as Kysely<unknown>);
    } finally {
      await owner.close();
    }
    expect(await validity('audit_records_at')).toBe(true);
    expect(await validity('jobs_org_created')).toBe(true);
  });
});
