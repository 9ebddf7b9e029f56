import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { createTestDatabase, type TestDatabase } from '@countersign/testing';
import { authenticateApiKey, parseApiKey } from '@countersign/workflow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/** The operator commands, run as the real binary against a real database. */
const BIN = join(import.meta.dirname, '..', 'bin', 'countersign.mjs');
let tdb: TestDatabase;

beforeAll(async () => {
  tdb = await createTestDatabase();
});
afterAll(async () => tdb?.drop());

const run = (args: string[], env: Record<string, string>) =>
  spawnSync(process.execPath, [BIN, ...args], {
    env: { PATH: process.env.PATH, ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });

describe('countersign bootstrap and db migrate', () => {
  it('bootstrap --json creates an org and an admin whose key authenticates, shown once', async () => {
    const r = run(['bootstrap', '--org', 'acme', '--admin', 'root', '--json'], {
      COUNTERSIGN_DATABASE_URL: tdb.appUrl,
    });
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { org_id: string; admin_id: string; api_key: string };
    const who = await authenticateApiKey(tdb.handle.db, out.api_key);
    expect(who).toMatchObject({ id: out.admin_id, orgId: out.org_id, role: 'admin' });
    const stored = await tdb.superuser<{ secret_hash: Buffer }>(
      'SELECT secret_hash FROM api_keys WHERE principal_id = $1',
      [out.admin_id],
    );
    // Stored hashed, never as given. (The secret is base64url and may itself hold '_': parse it, never split.)
    const secret = parseApiKey(out.api_key)?.secret ?? '';
    expect(secret.length).toBeGreaterThan(20);
    const hash = stored.rows[0]?.secret_hash;
    expect(hash?.equals(createHash('sha256').update(secret, 'utf8').digest())).toBe(true);
    expect(hash?.includes(Buffer.from(secret, 'utf8'))).toBe(false);
    const again = run(['bootstrap', '--org', 'acme', '--json'], { COUNTERSIGN_DATABASE_URL: tdb.appUrl });
    expect(again.status).toBe(2);
    expect(again.stderr).toContain('already exists');
  });

  it('db migrate reports an up-to-date database; missing configuration is a clear usage error', () => {
    const r = run(['db', 'migrate'], { COUNTERSIGN_MIGRATION_DATABASE_URL: tdb.ownerUrl });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain('up to date');
    const missing = run(['bootstrap', '--org', 'x'], {});
    expect(missing.status).toBe(2);
    expect(missing.stderr).toContain('COUNTERSIGN_DATABASE_URL is not set');
  });
});
