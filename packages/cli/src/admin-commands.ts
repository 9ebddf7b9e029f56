import { parseArgs } from 'node:util';
import { createDatabase, migrateToLatest, provisionDatabase } from '@countersign/db';
import { bootstrapOrg } from '@countersign/workflow';

/**
 * Operator commands that talk to the database directly: they run before any
 * API key exists (provision, migrate, bootstrap).
 */
export class UsageError extends Error {
  override name = 'UsageError';
}

const env = (name: string): string => {
  const v = process.env[name];
  if (!v) throw new UsageError(`${name} is not set`);
  return v;
};

export async function dbMigrate(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    process.stdout.write(
      'countersign db migrate\n\nApplies pending migrations as the owner role.\nReads COUNTERSIGN_MIGRATION_DATABASE_URL (falls back to COUNTERSIGN_DATABASE_URL).\n',
    );
    return 0;
  }
  const url = process.env.COUNTERSIGN_MIGRATION_DATABASE_URL ?? env('COUNTERSIGN_DATABASE_URL');
  const applied = await migrateToLatest(url);
  process.stdout.write(applied.length ? `applied: ${applied.join(', ')}\n` : 'database is up to date\n');
  return 0;
}

export async function dbProvision(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      help: { type: 'boolean', short: 'h' },
      database: { type: 'string', default: 'countersign' },
      'owner-password': { type: 'string' },
      'app-password': { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  if (values.help) {
    process.stdout.write(
      'countersign db provision --owner-password P --app-password P [--database countersign] [--json]\n\nCreates the owner and app roles and the database. Reads COUNTERSIGN_SUPERUSER_DATABASE_URL.\n',
    );
    return 0;
  }
  const urls = await provisionDatabase({
    superuserUrl: env('COUNTERSIGN_SUPERUSER_DATABASE_URL'),
    database: values.database ?? 'countersign',
    ownerPassword: values['owner-password'] ?? env('COUNTERSIGN_OWNER_PASSWORD'),
    appPassword: values['app-password'] ?? env('COUNTERSIGN_APP_PASSWORD'),
  });
  process.stdout.write(values.json ? `${JSON.stringify(urls)}\n` : `owner: ${urls.ownerUrl}\napp:   ${urls.appUrl}\n`);
  return 0;
}

export async function bootstrap(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      help: { type: 'boolean', short: 'h' },
      org: { type: 'string' },
      admin: { type: 'string', default: 'admin' },
      email: { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  if (values.help || !values.org) {
    process.stdout.write(
      'countersign bootstrap --org NAME [--admin NAME] [--email ADDRESS] [--json]\n\nCreates an org and its first admin, and prints the admin API key once.\nReads COUNTERSIGN_DATABASE_URL.\n',
    );
    return values.help ? 0 : 2;
  }
  const { db, close } = createDatabase({ url: env('COUNTERSIGN_DATABASE_URL'), poolSize: 2 });
  try {
    const r = await bootstrapOrg(db, values.org, values.admin ?? 'admin', values.email ?? null);
    if (values.json) {
      process.stdout.write(
        `${JSON.stringify({ org_id: r.org.id, org: r.org.name, admin_id: r.admin.id, admin: r.admin.name, api_key: r.key.key, api_key_id: r.key.id })}\n`,
      );
    } else {
      process.stdout.write(
        `org ${r.org.name} (${r.org.id})\nadmin ${r.admin.name} (${r.admin.id})\nAPI key (shown once, store it now):\n  ${r.key.key}\n`,
      );
    }
    return 0;
  } finally {
    await close();
  }
}
