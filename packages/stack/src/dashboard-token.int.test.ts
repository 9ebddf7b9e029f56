import { createHash } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadOrCreateDashboardToken } from './dashboard-token.ts';

const dir = mkdtempSync(join(tmpdir(), 'cs-stack-dashboard-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the local stack queue dashboard token', () => {
  it('is made once (0600), reused on the next start, and handed over as its SHA-256', async () => {
    const file = join(dir, 'queue-dashboard-token');
    const first = await loadOrCreateDashboardToken(file);
    expect(first.created).toBe(true);
    expect(first.token).toMatch(/^csqd_[A-Za-z0-9_-]{43}$/);
    expect(first.sha256).toBe(createHash('sha256').update(first.token).digest('hex'));
    expect(readFileSync(file, 'utf8').trim()).toBe(first.token);
    expect(statSync(file).mode & 0o777).toBe(0o600);

    chmodSync(file, 0o644);
    const again = await loadOrCreateDashboardToken(file);
    expect(again).toEqual({ ...first, created: false });
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it('refuses a file that holds no usable token instead of handing the api a weak one', async () => {
    const file = join(dir, 'short');
    writeFileSync(file, 'hunter2\n');
    await expect(loadOrCreateDashboardToken(file)).rejects.toThrow(/delete it/);
  });
});
