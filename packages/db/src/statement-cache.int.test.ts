import { createTestDatabase, type TestDatabase } from '@countersign/testing';
import { type Kysely, sql } from 'kysely';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { listVotes } from './approval.repository.ts';
import { createDatabase, type DatabaseHandle } from './database.ts';
import { findPrincipals } from './identity.repository.ts';

/**
 * Named statements against real PostgreSQL: which statements are prepared,
 * that the backend settles on a generic plan (the saving), the capacity, and
 * a table changing its columns under a prepared `SELECT *`.
 *
 * Every handle has one connection, so pg_prepared_statements (which lists the
 * current session's statements) sees what the handle's queries prepared.
 */
let tdb: TestDatabase;
const handles: DatabaseHandle[] = [];
beforeAll(async () => {
  tdb = await createTestDatabase();
  await tdb.superuser('CREATE TABLE scratch (id int PRIMARY KEY, label text NOT NULL)');
  await tdb.superuser(`INSERT INTO scratch SELECT g, 'row ' || g FROM generate_series(1, 100) g`);
});
afterEach(async () => {
  for (const h of handles.splice(0)) await h.close();
  await tdb.superuser('ALTER TABLE scratch DROP COLUMN IF EXISTS added');
});
afterAll(async () => tdb?.drop());

function open(statementCacheSize?: number): Kysely<any> {
  const h = createDatabase({
    url: tdb.superuserUrl,
    poolSize: 1,
    ...(statementCacheSize === undefined ? {} : { statementCacheSize }),
  });
  handles.push(h);
  return h.db as unknown as Kysely<any>;
}

interface Prepared {
  name: string;
  statement: string;
  generic_plans: string;
  custom_plans: string;
}
const prepared = async (db: Kysely<any>) =>
  (
    await sql<Prepared>`SELECT name, statement, generic_plans, custom_plans FROM pg_prepared_statements ORDER BY name`.execute(
      db,
    )
  ).rows;

const byId = (db: Kysely<any>, id: number) => db.selectFrom('scratch').selectAll().where('id', '=', id).execute();

describe('named statements', () => {
  it('prepare a parameterised statement once, and the backend settles on its generic plan', async () => {
    const db = open();
    for (let i = 1; i <= 8; i++) expect(await byId(db, i)).toEqual([{ id: i, label: `row ${i}` }]);
    const list = await prepared(db);
    expect(list).toHaveLength(1);
    expect(list[0]?.name).toBe('countersign_1');
    expect(list[0]?.statement).toBe('select * from "scratch" where "id" = $1');
    // The sixth and later runs reuse one plan instead of planning again.
    expect(Number(list[0]?.generic_plans)).toBeGreaterThanOrEqual(3);
  });

  it('leave statements without parameters (BEGIN, COMMIT) and transactions as they were', async () => {
    const db = open();
    await db.transaction().execute(async (tx) => {
      await sql`SELECT 1`.execute(tx);
      await tx.updateTable('scratch').set({ label: 'changed' }).where('id', '=', 100).execute();
    });
    expect((await byId(db, 100))[0]?.label).toBe('changed');
    const names = (await prepared(db)).map((p) => p.statement);
    expect(names).toEqual([
      'update "scratch" set "label" = $1 where "id" = $2',
      'select * from "scratch" where "id" = $1',
    ]);
  });

  it('name no more texts than the capacity; the rest run unnamed and still answer', async () => {
    const db = open(2);
    for (const column of ['id', 'label'] as const)
      await db.selectFrom('scratch').select(column).where('id', '=', 1).execute();
    const third = await db.selectFrom('scratch').select('label').where('id', '>', 99).execute();
    expect(third).toEqual([{ label: expect.any(String) }]);
    expect((await prepared(db)).map((p) => p.name)).toEqual(['countersign_1', 'countersign_2']);
  });

  it('take one name for a list of ids whatever its length (= ANY of one array, not IN of n parameters)', async () => {
    const db = open();
    const ids = (n: number) =>
      Array.from({ length: n }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`);
    for (const n of [1, 3, 50]) {
      expect(await listVotes(db as never, ids(n))).toEqual([]);
      expect(await findPrincipals(db as never, ids(1)[0] as string, ids(n))).toEqual([]);
    }
    const texts = (await prepared(db)).map((p) => p.statement);
    expect(texts).toHaveLength(2);
    // listVotes takes its ids as $1; findPrincipals as $2, after the org.
    expect(texts.every((t) => /= any\(\$[12]\)/.test(t))).toBe(true);
    expect(texts.some((t) => / in \(/.test(t))).toBe(false);
  });

  it('are off at capacity 0', async () => {
    const db = open(0);
    for (let i = 1; i <= 3; i++) await byId(db, i);
    expect(await prepared(db)).toEqual([]);
  });
});

describe('a column added under a prepared SELECT *', () => {
  it('outside a transaction, runs the statement again unnamed and returns the new column', async () => {
    const db = open();
    await byId(db, 1);
    await tdb.superuser(`ALTER TABLE scratch ADD COLUMN added text NOT NULL DEFAULT 'new'`);
    expect(await byId(db, 1)).toEqual([{ id: 1, label: 'row 1', added: 'new' }]);
    // From now on unnamed: still answers, and no second name was prepared for it.
    expect(await byId(db, 2)).toEqual([{ id: 2, label: 'row 2', added: 'new' }]);
    expect((await prepared(db)).map((p) => p.name)).toEqual(['countersign_1']);
  });

  it('inside a transaction, fails that transaction; the retry runs unnamed and succeeds', async () => {
    const db = open();
    await byId(db, 1);
    await tdb.superuser(`ALTER TABLE scratch ADD COLUMN added text NOT NULL DEFAULT 'new'`);
    const attempt = () =>
      db.transaction().execute(async (tx) => {
        const rows = await byId(tx, 3);
        await tx.updateTable('scratch').set({ label: 'kept' }).where('id', '=', 3).execute();
        return rows;
      });
    await expect(attempt()).rejects.toMatchObject({ code: '0A000' });
    expect((await tdb.superuser<{ label: string }>('SELECT label FROM scratch WHERE id = 3')).rows[0]?.label).toBe(
      'row 3',
    );
    expect(await attempt()).toEqual([{ id: 3, label: 'row 3', added: 'new' }]);
    expect((await tdb.superuser<{ label: string }>('SELECT label FROM scratch WHERE id = 3')).rows[0]?.label).toBe(
      'kept',
    );
  });
});
