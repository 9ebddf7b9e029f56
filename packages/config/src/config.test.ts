import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from './index.ts';

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
