import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

/** `countersign dashboard token`, run as the real binary: offline, no database or api needed. */
const BIN = join(import.meta.dirname, '..', 'bin', 'countersign.mjs');
const dir = mkdtempSync(join(tmpdir(), 'cs-dashboard-token-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const run = (args: string[]) =>
  spawnSync(process.execPath, [BIN, 'dashboard', 'token', ...args], {
    env: { PATH: process.env.PATH },
    encoding: 'utf8',
    timeout: 60_000,
  });
// What the api compares against, by the documented definition: `printf %s "$TOKEN" | sha256sum`.
const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');

describe('countersign dashboard token', () => {
  it('makes a fresh 256-bit token each time and prints the SHA-256 the api is configured with', () => {
    const a = run(['--json']);
    const b = run(['--json']);
    expect(a.status, a.stderr).toBe(0);
    const first = JSON.parse(a.stdout) as { token: string; sha256: string };
    const second = JSON.parse(b.stdout) as { token: string; sha256: string };
    expect(first.token).toMatch(/^csqd_[A-Za-z0-9_-]{43}$/);
    expect(first.sha256).toBe(sha256(first.token));
    expect(second.token).not.toBe(first.token);

    const text = run([]);
    expect(text.status, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/COUNTERSIGN_QUEUE_DASHBOARD_TOKEN_SHA256=[0-9a-f]{64}\n/);
  });

  it('--out writes the token to a 0600 file, never over an existing one, and does not print it', () => {
    const file = join(dir, 'queue-dashboard-token');
    const r = run(['--out', file, '--json']);
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as { file: string; sha256: string };
    const token = readFileSync(file, 'utf8').trimEnd();
    expect(out.sha256).toBe(sha256(token));
    expect(r.stdout).not.toContain(token);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const again = run(['--out', file]);
    expect(again.status).not.toBe(0);
    expect(readFileSync(file, 'utf8').trimEnd()).toBe(token);
  });
});
