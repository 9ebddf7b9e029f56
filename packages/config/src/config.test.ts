import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, secretFromEnv } from './index.ts';

const base = { COUNTERSIGN_DATABASE_URL: 'postgres://app@127.0.0.1/countersign' };

describe('loadConfig', () => {
  it('applies the documented defaults', () => {
    const c = loadConfig('api', base);
    expect(c.approvalTimeoutMs).toBe(168 * 3_600_000);
    expect(c.escalationAfterMs).toBe(24 * 3_600_000);
    expect(c.approvalBypass).toBe(false);
    expect(c.auditVerifyOnStart).toBe('full');
    expect(c.queuePrefix).toBe('{countersign}');
    expect(c.httpPort).toBe(8080);
    expect(c.smtpUrl).toBeNull();
    expect(c.databaseStatementCache).toBe(200);
    expect(c.databaseIdleTimeoutMs).toBe(600_000);
    expect(loadConfig('api', { ...base, COUNTERSIGN_DATABASE_IDLE_TIMEOUT: '45s' }).databaseIdleTimeoutMs).toBe(45_000);
    expect(loadConfig('api', { ...base, COUNTERSIGN_DATABASE_STATEMENT_CACHE: '0' }).databaseStatementCache).toBe(0);
    expect(loadConfig('issuer', base).metricsPort).toBe(9466);
    expect(c.reaperExpiryConcurrency).toBe(2);
    expect(c.intakeMaxAgeMs).toBe(15 * 60_000);
    expect(loadConfig('api', { ...base, COUNTERSIGN_INTAKE_MAX_AGE: '5m' }).intakeMaxAgeMs).toBe(300_000);
    expect(loadConfig('reaper', { ...base, COUNTERSIGN_REAPER_EXPIRY_CONCURRENCY: '1' }).reaperExpiryConcurrency).toBe(
      1,
    );
  });

  it.each([
    [{}, 'COUNTERSIGN_DATABASE_URL', /is required/],
    [{ ...base, COUNTERSIGN_DATABASE_URL: 'mysql://x' }, 'COUNTERSIGN_DATABASE_URL', /postgres/],
    [{ ...base, COUNTERSIGN_APPROVAL_TIMEOUT: 'forever' }, 'COUNTERSIGN_APPROVAL_TIMEOUT', /duration/],
    [{ ...base, COUNTERSIGN_APPROVAL_BYPASS: 'maybe' }, 'COUNTERSIGN_APPROVAL_BYPASS', /true or false/],
    [
      { ...base, COUNTERSIGN_AUDIT_VERIFY_ON_START: 'sometimes' },
      'COUNTERSIGN_AUDIT_VERIFY_ON_START',
      /full, tail, off/,
    ],
    [{ ...base, COUNTERSIGN_HTTP_PORT: '99999' }, 'COUNTERSIGN_HTTP_PORT', /between/],
    [{ ...base, COUNTERSIGN_SMTP_URL: 'http://mail' }, 'COUNTERSIGN_SMTP_URL', /smtp/],
    [{ ...base, COUNTERSIGN_DATABASE_STATEMENT_CACHE: '-1' }, 'COUNTERSIGN_DATABASE_STATEMENT_CACHE', /between/],
    [{ ...base, COUNTERSIGN_DATABASE_IDLE_TIMEOUT: '0' }, 'COUNTERSIGN_DATABASE_IDLE_TIMEOUT', /duration/],
    [{ ...base, COUNTERSIGN_DATABASE_IDLE_TIMEOUT: 'soon' }, 'COUNTERSIGN_DATABASE_IDLE_TIMEOUT', /duration/],
    [{ ...base, COUNTERSIGN_REAPER_EXPIRY_CONCURRENCY: '0' }, 'COUNTERSIGN_REAPER_EXPIRY_CONCURRENCY', /between/],
    [{ ...base, COUNTERSIGN_INTAKE_MAX_AGE: 'a while' }, 'COUNTERSIGN_INTAKE_MAX_AGE', /duration/],
    // A signed intake message must go stale before the idempotency record that refuses its replay is pruned.
    [
      { ...base, COUNTERSIGN_INTAKE_MAX_AGE: '1h', COUNTERSIGN_IDEMPOTENCY_TTL: '1h' },
      'COUNTERSIGN_INTAKE_MAX_AGE',
      /shorter than COUNTERSIGN_IDEMPOTENCY_TTL/,
    ],
    [
      { ...base, COUNTERSIGN_DATABASE_POOL_SIZE: '4', COUNTERSIGN_REAPER_EXPIRY_CONCURRENCY: '4' },
      'COUNTERSIGN_REAPER_EXPIRY_CONCURRENCY',
      /below COUNTERSIGN_DATABASE_POOL_SIZE \(4\)/,
    ],
  ])('names the bad variable %#', (env, variable, message) => {
    try {
      loadConfig('api', env as Record<string, string>);
      expect.unreachable('loadConfig accepted bad configuration');
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).variable).toBe(variable);
      expect((err as Error).message).toContain(variable);
      expect((err as Error).message).toMatch(message);
    }
  });

  it('leaves the queue dashboard unmounted unless an operator token is configured', () => {
    const c = loadConfig('api', base);
    expect(c.queueDashboard).toBeNull();
    expect(loadConfig('api', { ...base, COUNTERSIGN_QUEUE_DASHBOARD_WRITES: 'false' }).queueDashboard).toBeNull();
  });

  it('takes the queue dashboard token as a SHA-256 or as a file, read-only unless writes are enabled', () => {
    const hash = 'A'.repeat(64);
    const byHash = loadConfig('api', { ...base, COUNTERSIGN_QUEUE_DASHBOARD_TOKEN_SHA256: hash });
    expect(byHash.queueDashboard).toEqual({ token: { sha256: 'a'.repeat(64) }, writes: false });
    const byFile = loadConfig('api', {
      ...base,
      COUNTERSIGN_QUEUE_DASHBOARD_TOKEN_FILE: '/run/secrets/queue-dashboard-token',
      COUNTERSIGN_QUEUE_DASHBOARD_WRITES: 'true',
    });
    expect(byFile.queueDashboard).toEqual({ token: { file: '/run/secrets/queue-dashboard-token' }, writes: true });
  });

  it.each([
    [
      'not hex',
      { COUNTERSIGN_QUEUE_DASHBOARD_TOKEN_SHA256: 'z'.repeat(64) },
      'COUNTERSIGN_QUEUE_DASHBOARD_TOKEN_SHA256',
      /64 hex/,
    ],
    [
      'too short',
      { COUNTERSIGN_QUEUE_DASHBOARD_TOKEN_SHA256: 'ab'.repeat(16) },
      'COUNTERSIGN_QUEUE_DASHBOARD_TOKEN_SHA256',
      /64 hex/,
    ],
    [
      'a sha256sum line',
      { COUNTERSIGN_QUEUE_DASHBOARD_TOKEN_SHA256: `${'ab'.repeat(32)}  -` },
      'COUNTERSIGN_QUEUE_DASHBOARD_TOKEN_SHA256',
      /64 hex/,
    ],
    [
      'the hash of an empty token',
      { COUNTERSIGN_QUEUE_DASHBOARD_TOKEN_SHA256: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' },
      'COUNTERSIGN_QUEUE_DASHBOARD_TOKEN_SHA256',
      /empty/,
    ],
    [
      'both ways at once',
      { COUNTERSIGN_QUEUE_DASHBOARD_TOKEN_SHA256: 'ab'.repeat(32), COUNTERSIGN_QUEUE_DASHBOARD_TOKEN_FILE: '/t' },
      'COUNTERSIGN_QUEUE_DASHBOARD_TOKEN_FILE',
      /COUNTERSIGN_QUEUE_DASHBOARD_TOKEN_SHA256/,
    ],
    [
      'writes without a token',
      { COUNTERSIGN_QUEUE_DASHBOARD_WRITES: 'true' },
      'COUNTERSIGN_QUEUE_DASHBOARD_WRITES',
      /token/,
    ],
    [
      'writes neither true nor false',
      { COUNTERSIGN_QUEUE_DASHBOARD_TOKEN_SHA256: 'ab'.repeat(32), COUNTERSIGN_QUEUE_DASHBOARD_WRITES: 'sometimes' },
      'COUNTERSIGN_QUEUE_DASHBOARD_WRITES',
      /true or false/,
    ],
  ])('names the bad queue dashboard variable: %s', (_what, vars, variable, message) => {
    try {
      loadConfig('api', { ...base, ...vars });
      expect.unreachable('loadConfig accepted bad configuration');
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).variable).toBe(variable);
      expect((err as Error).message).toContain(variable);
      expect((err as Error).message).toMatch(message);
    }
  });

  it('takes second-scale durations for tests', () => {
    const c = loadConfig('reaper', {
      ...base,
      COUNTERSIGN_APPROVAL_TIMEOUT: '2s',
      COUNTERSIGN_APPROVAL_BYPASS: 'true',
    });
    expect(c.approvalTimeoutMs).toBe(2_000);
    expect(c.approvalBypass).toBe(true);
  });
});

describe('secrets as files (COUNTERSIGN_<NAME>_FILE)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'countersign-config-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string) => {
    const path = join(dir, name);
    writeFileSync(path, text, { mode: 0o600 });
    return path;
  };
  const SECRET = 's3cret-Pa55';
  const appUrl = `postgres://countersign_app:${SECRET}@db:5432/countersign`;

  it('reads each URL that may hold a password from its file, dropping one trailing newline', () => {
    const c = loadConfig('notifier', {
      COUNTERSIGN_DATABASE_URL_FILE: file('database-url', `${appUrl}\n`),
      COUNTERSIGN_MIGRATION_DATABASE_URL_FILE: file(
        'migration-url',
        'postgres://countersign_owner:o@db/countersign\r\n',
      ),
      COUNTERSIGN_REDIS_URL_FILE: file('redis-url', `redis://:${SECRET}@redis:6379`),
      COUNTERSIGN_SMTP_URL_FILE: file('smtp-url', `smtps://mailer:${SECRET}@smtp.example.com:465\n`),
    });
    expect(c.databaseUrl).toBe(appUrl);
    expect(c.migrationDatabaseUrl).toBe('postgres://countersign_owner:o@db/countersign');
    expect(c.redisUrl).toBe(`redis://:${SECRET}@redis:6379`);
    expect(c.smtpUrl).toBe(`smtps://mailer:${SECRET}@smtp.example.com:465`);
    // Only one newline is the file's end; anything else is part of the value and fails as a URL would.
    expect(() => loadConfig('api', { COUNTERSIGN_DATABASE_URL_FILE: file('two-newlines', `${appUrl}\n\n`) })).toThrow(
      /COUNTERSIGN_DATABASE_URL_FILE contains whitespace/,
    );
  });

  it.each([
    ['a missing file', () => ({ COUNTERSIGN_DATABASE_URL_FILE: join(dir, 'nope') }), /cannot be read \(ENOENT\)/],
    ['a directory', () => ({ COUNTERSIGN_DATABASE_URL_FILE: dir }), /cannot be read \(EISDIR\)/],
    ['an empty file', () => ({ COUNTERSIGN_DATABASE_URL_FILE: file('empty', '\n') }), /is empty/],
    [
      'both the value and the file',
      () => ({ COUNTERSIGN_DATABASE_URL: appUrl, COUNTERSIGN_DATABASE_URL_FILE: file('both', appUrl) }),
      /COUNTERSIGN_DATABASE_URL are both set/,
    ],
    [
      'a file that holds no URL',
      () => ({ COUNTERSIGN_DATABASE_URL_FILE: file('garbage', `${SECRET}-is-not-a-url`) }),
      /not a valid URL/,
    ],
    [
      'a file with the wrong scheme',
      () => ({ COUNTERSIGN_DATABASE_URL_FILE: file('mysql', `mysql://root:${SECRET}@db/x`) }),
      /postgres/,
    ],
  ])('stops at start, naming COUNTERSIGN_DATABASE_URL_FILE and never the secret, on %s', (_what, env, message) => {
    try {
      loadConfig('api', env());
      expect.unreachable('loadConfig accepted a bad secret file');
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).variable).toBe('COUNTERSIGN_DATABASE_URL_FILE');
      expect((err as Error).message).toMatch(message);
      expect((err as Error).message).not.toContain(SECRET);
    }
  });

  it('names the _FILE variable of the other secrets too, and still requires a database URL one way or the other', () => {
    const base = { COUNTERSIGN_DATABASE_URL: appUrl };
    for (const name of ['MIGRATION_DATABASE_URL', 'REDIS_URL', 'SMTP_URL']) {
      expect(() => loadConfig('api', { ...base, [`COUNTERSIGN_${name}_FILE`]: join(dir, 'missing') })).toThrow(
        `COUNTERSIGN_${name}_FILE names`,
      );
    }
    expect(() => loadConfig('api', {})).toThrow(
      /COUNTERSIGN_DATABASE_URL is required \(or COUNTERSIGN_DATABASE_URL_FILE/,
    );
    expect(secretFromEnv({ COUNTERSIGN_X: 'v' }, 'X')).toEqual({ value: 'v', variable: 'COUNTERSIGN_X' });
    expect(secretFromEnv({}, 'X')).toBeNull();
  });
});
