import { createTestDatabase, type TestDatabase } from '@countersign/testing';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backgroundRead, createDatabase } from './database.ts';

/**
 * The chaos harness's pg_terminate_backend took the api down: a connection
 * killed between two statements of a transaction emitted 'error' on a
 * checked-out client, which had no listener. The transaction must fail, the
 * process must live on and the pool must hand out working connections again.
 */
let tdb: TestDatabase;

beforeAll(async () => {
  tdb = await createTestDatabase();
});
afterAll(async () => tdb?.drop());

describe('createDatabase', () => {
  it('survives the connection of an open transaction being terminated between statements', async () => {
    const handle = createDatabase({ url: tdb.appUrl, poolSize: 2, applicationName: 'countersign-terminate-test' });
    try {
      const tx = handle.db.transaction().execute(async (trx) => {
        const { rows } = await sql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(trx);
        await tdb.superuser('SELECT pg_terminate_backend($1)', [rows[0]?.pid]);
        // Let the termination reach the client while it is checked out and idle.
        await new Promise((r) => setTimeout(r, 200));
        await sql`SELECT 1`.execute(trx);
      });
      await expect(tx).rejects.toThrow();
      const { rows } = await sql<{ one: number }>`SELECT 1 AS one`.execute(handle.db);
      expect(rows[0]?.one).toBe(1);
    } finally {
      await handle.close();
    }
  });
});

describe('idle connections', () => {
  it('are kept warm for the default ten minutes and closed after a configured idle time', async () => {
    const warm = createDatabase({ url: tdb.appUrl, poolSize: 3 });
    const short = createDatabase({ url: tdb.appUrl, poolSize: 3, idleTimeoutMs: 100 });
    try {
      // Three statements at once open three connections in each pool.
      for (const h of [warm, short]) {
        await Promise.all([1, 2, 3].map(() => sql`SELECT pg_sleep(0.05)`.execute(h.db)));
        expect(h.pool.totalCount).toBe(3);
      }
      await new Promise((r) => setTimeout(r, 600));
      expect(warm.pool.idleCount).toBe(3);
      expect(short.pool.totalCount).toBe(0);
    } finally {
      await warm.close();
      await short.close();
    }
  });
});

describe('backgroundRead', () => {
  it('reads with no parallel workers, in its own transaction only', async () => {
    const setting = async (ex: Parameters<Parameters<typeof backgroundRead>[1]>[0] | typeof tdb.handle.db) =>
      (await sql<{ max_parallel_workers_per_gather: string }>`SHOW max_parallel_workers_per_gather`.execute(ex)).rows[0]
        ?.max_parallel_workers_per_gather;
    const before = await setting(tdb.handle.db);
    expect(before).not.toBe('0');
    expect(await backgroundRead(tdb.handle.db, (tx) => setting(tx))).toBe('0');
    // SET LOCAL ends with the transaction: the pooled connection is back to the default.
    expect(await setting(tdb.handle.db)).toBe(before);
  });
});
