import type { TestDatabase } from '@countersign/testing';

/**
 * A cheap fingerprint of every table of the test database: its row count and
 * the sum of its rows' xmin. Any committed INSERT, UPDATE or DELETE changes
 * one of the two (an updated row gets a new xmin), so two equal fingerprints
 * around a request prove it wrote nothing. One round trip for all tables.
 */
export type DbFingerprint = Record<string, string>;

export async function tableNames(tdb: TestDatabase): Promise<string[]> {
  const r = await tdb.superuser<{ name: string }>(
    `SELECT c.relname AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY 1`,
  );
  return r.rows.map((row) => row.name);
}

export function fingerprinter(tdb: TestDatabase, tables: readonly string[]): () => Promise<DbFingerprint> {
  const text = tables
    .map(
      (t) => `SELECT '${t}' AS t, count(*)::text || ':' || coalesce(sum(xmin::text::bigint), 0)::text AS f FROM "${t}"`,
    )
    .join(' UNION ALL ');
  return async () => {
    const r = await tdb.superuser<{ t: string; f: string }>(text);
    return Object.fromEntries(r.rows.map((row) => [row.t, row.f]));
  };
}

/** The tables whose fingerprint differs, for a failure message that says where the write went. */
export function changedTables(before: DbFingerprint, after: DbFingerprint): string[] {
  return Object.keys({ ...before, ...after }).filter((t) => before[t] !== after[t]);
}
