import { randomBytes } from 'node:crypto';
import { APP_ROLE, createDatabase, type DatabaseHandle, databaseUrl, OWNER_ROLE } from '@countersign/db';
import pg from 'pg';
import { inject } from 'vitest';

/** A fresh database per test file, copied from the migrated template. */
export interface TestDatabase {
  readonly name: string;
  readonly appUrl: string;
  readonly ownerUrl: string;
  readonly superuserUrl: string;
  readonly redisUrl: string;
  /** Pool connected as the services' role. */
  readonly handle: DatabaseHandle;
  /** Runs SQL as the superuser on this database (tamper tests, assertions). */
  superuser<T extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<T>>;
  drop(): Promise<void>;
}

export async function createTestDatabase(): Promise<TestDatabase> {
  const infra = inject('infra');
  const name = `cs_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: infra.superuserUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name} TEMPLATE ${infra.templateDatabase} OWNER ${OWNER_ROLE}`);
  } finally {
    await admin.end();
  }
  const appUrl = databaseUrl(infra.superuserUrl, APP_ROLE, infra.appPassword, name);
  const superuserUrl = databaseUrl(
    infra.superuserUrl,
    new URL(infra.superuserUrl).username || 'postgres',
    decodeURIComponent(new URL(infra.superuserUrl).password),
    name,
  );
  const handle = createDatabase({ url: appUrl, poolSize: 20, applicationName: 'countersign-test' });
  const su = new pg.Pool({ connectionString: superuserUrl, max: 2 });
  // DROP DATABASE ... WITH (FORCE) terminates whatever is still connected; that is expected.
  su.on('error', () => {});
  return {
    name,
    appUrl,
    ownerUrl: databaseUrl(infra.superuserUrl, OWNER_ROLE, infra.ownerPassword, name),
    superuserUrl,
    redisUrl: infra.redisUrl,
    handle,
    superuser: (text, values) => su.query(text, values),
    drop: async () => {
      await handle.close();
      await su.end();
      const c = new pg.Client({ connectionString: infra.superuserUrl });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}

/** A queue prefix of its own per test, so tests never see each other's jobs. */
export const randomQueuePrefix = (): string => `{cs-test-${randomBytes(5).toString('hex')}}`;
