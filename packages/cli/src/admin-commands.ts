import { parseArgs } from 'node:util';
import { createDatabase, migrateToLatest, provisionDatabase } from '@countersign/db';
import { addInstallationAdmin, bootstrapOrg } from '@countersign/workflow';

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
      admin: { type: 'string', multiple: true },
      email: { type: 'string', multiple: true },
      json: { type: 'boolean' },
    },
  });
  if (values.help || !values.org) {
    process.stdout.write(
      `countersign bootstrap --org NAME [--admin NAME [--email ADDRESS]]... [--json]

Creates an org and its first admins, and prints each admin's enrollment key once.
Name two admins (--admin alice --email a@x --admin bob --email b@x) to make the org
two-person ready from the start: every change that could weaken the gate then needs
a second admin's approval. With one admin the org is flagged as not two-person ready.
Each admin mints its own key with its enrollment key ('countersign enroll') before
it can approve anything. Reads COUNTERSIGN_DATABASE_URL.
`,
    );
    return values.help ? 0 : 2;
  }
  const names = values.admin && values.admin.length > 0 ? values.admin : ['admin'];
  const emails = values.email ?? [];
  const { db, close } = createDatabase({ url: env('COUNTERSIGN_DATABASE_URL'), poolSize: 2 });
  try {
    const r = await bootstrapOrg(
      db,
      values.org,
      names.map((name, i) => ({ name, email: emails[i] ?? null })),
    );
    printAdmins(r.org, r.admins, values.json === true);
    return 0;
  } finally {
    await close();
  }
}

/** `countersign admin add`: an installation-made admin, how an org becomes two-person ready later. */
export async function adminAdd(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      help: { type: 'boolean', short: 'h' },
      org: { type: 'string' },
      name: { type: 'string' },
      email: { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  if (values.help || !values.org || !values.name) {
    process.stdout.write(
      `countersign admin add --org NAME --name ADMIN [--email ADDRESS] [--json]

Adds an admin to an existing org as the installation (not as any admin of the org), and
prints its enrollment key once. An admin created by another admin never counts as that
admin's second person; one added here does, so this is how an org whose first admin made
the others becomes two-person ready. Reads COUNTERSIGN_DATABASE_URL.
`,
    );
    return values.help ? 0 : 2;
  }
  const { db, close } = createDatabase({ url: env('COUNTERSIGN_DATABASE_URL'), poolSize: 2 });
  try {
    const r = await addInstallationAdmin(db, values.org, { name: values.name, email: values.email ?? null });
    printAdmins(r.org, [{ admin: r.admin, key: r.key }], values.json === true);
    return 0;
  } finally {
    await close();
  }
}

function printAdmins(
  org: { id: string; name: string },
  admins: readonly { admin: { id: string; name: string }; key: { id: string; key: string } }[],
  json: boolean,
): void {
  const first = admins[0];
  if (json) {
    process.stdout.write(
      `${JSON.stringify({
        org_id: org.id,
        org: org.name,
        // The first admin at the top level, as before two admins could be named.
        admin_id: first?.admin.id,
        admin: first?.admin.name,
        api_key: first?.key.key,
        api_key_id: first?.key.id,
        admins: admins.map((a) => ({
          admin_id: a.admin.id,
          admin: a.admin.name,
          api_key: a.key.key,
          api_key_id: a.key.id,
          purpose: 'enrollment',
        })),
      })}\n`,
    );
    return;
  }
  const lines = [`org ${org.name} (${org.id})`];
  for (const a of admins) {
    lines.push(
      `admin ${a.admin.name} (${a.admin.id})`,
      '  enrollment key (shown once, store it now):',
      `    ${a.key.key}`,
    );
  }
  lines.push(
    '',
    "Each admin runs 'countersign enroll --url <api>' with its enrollment key to mint its own key:",
    'an enrollment key can read and request, never approve.',
  );
  process.stdout.write(`${lines.join('\n')}\n`);
}
