import pg from 'pg';

/**
 * Creates the two roles and the database on a PostgreSQL server the caller
 * administers (the local stack and the tests; in production a DBA runs the
 * equivalent SQL from infra/postgres/provision.sql). The owner role owns the
 * schema and runs migrations; the services connect as `countersign_app`, which
 * holds only the grants the migrations give it.
 */
export const OWNER_ROLE = 'countersign_owner';
export const APP_ROLE = 'countersign_app';

export interface ProvisionOptions {
  readonly superuserUrl: string;
  readonly database: string;
  readonly ownerPassword: string;
  readonly appPassword: string;
}

export interface ProvisionedUrls {
  readonly ownerUrl: string;
  readonly appUrl: string;
}

const ident = (s: string): string => `"${s.replaceAll('"', '""')}"`;
const literal = (s: string): string => `'${s.replaceAll("'", "''")}'`;

export function databaseUrl(base: string, user: string, password: string, database: string): string {
  const u = new URL(base);
  u.username = encodeURIComponent(user);
  u.password = encodeURIComponent(password);
  u.pathname = `/${database}`;
  return u.toString();
}

export async function ensureRoles(client: pg.Client, ownerPassword: string, appPassword: string): Promise<void> {
  for (const [role, password] of [
    [OWNER_ROLE, ownerPassword],
    [APP_ROLE, appPassword],
  ] as const) {
    const exists = await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role]);
    const verb = exists.rowCount ? 'ALTER' : 'CREATE';
    try {
      await client.query(`${verb} ROLE ${ident(role)} LOGIN PASSWORD ${literal(password)}`);
    } catch (err) {
      // Two provisioners racing on one cluster: the other one created it.
      if (!(verb === 'CREATE' && (err as { code?: string }).code === '23505')) throw err;
    }
  }
}

export async function provisionDatabase(opts: ProvisionOptions): Promise<ProvisionedUrls> {
  const client = new pg.Client({ connectionString: opts.superuserUrl });
  await client.connect();
  try {
    await ensureRoles(client, opts.ownerPassword, opts.appPassword);
    const db = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [opts.database]);
    if (!db.rowCount) await client.query(`CREATE DATABASE ${ident(opts.database)} OWNER ${ident(OWNER_ROLE)}`);
  } finally {
    await client.end();
  }
  return {
    ownerUrl: databaseUrl(opts.superuserUrl, OWNER_ROLE, opts.ownerPassword, opts.database),
    appUrl: databaseUrl(opts.superuserUrl, APP_ROLE, opts.appPassword, opts.database),
  };
}
