import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { generateKeyAndCsr } from '@countersign/ca/csr-generate';
import type { Stack } from '@countersign/stack';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiCall, startE2eStack, waitForPem } from './e2e-stack.ts';

/**
 * The local stack as the five real service processes: what each one was
 * really given (its /proc environment), and that the issuer, holding only the
 * intermediate, signs certificates that verify under the root kept in a
 * directory no service was given.
 */
let stack: Stack & { dataDir: string; cleanup(): Promise<void> };

beforeAll(async () => {
  stack = await startE2eStack();
});
afterAll(async () => stack?.cleanup());

function environOf(pid: number | undefined): Record<string, string> {
  if (pid === undefined) throw new Error('service not running');
  const raw = readFileSync(`/proc/${pid}/environ`, 'utf8');
  return Object.fromEntries(
    raw
      .split('\0')
      .filter(Boolean)
      .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
  );
}

describe('deployment secrets in the local stack', () => {
  it('each service process holds the application role URL and its own secrets only; none the owner, superuser or root key', () => {
    const offline = resolve(stack.caOfflineDir);
    expect(readdirSync(offline).sort()).toEqual(['root.crt.pem', 'root.key.pem']);
    expect(existsSync(join(stack.dataDir, 'ca', 'root.key.pem'))).toBe(false);
    for (const s of stack.services) {
      const env = environOf(s.pid());
      expect(env.COUNTERSIGN_DATABASE_URL, s.id).toBe(stack.appDatabaseUrl);
      expect(new URL(env.COUNTERSIGN_DATABASE_URL ?? '').username).toBe('countersign_app');
      const all = Object.values(env).join('\n');
      expect(all, s.id).not.toContain(stack.ownerDatabaseUrl);
      expect(all, s.id).not.toContain(stack.superuserUrl);
      expect(all, s.id).not.toContain(decodeURIComponent(new URL(stack.ownerDatabaseUrl).password));
      expect(all, s.id).not.toContain(offline);
      expect(env.COUNTERSIGN_MIGRATION_DATABASE_URL, s.id).toBeUndefined();
      expect(env.COUNTERSIGN_CA_DIR !== undefined, `${s.id}: CA directory`).toBe(s.name === 'issuer');
      expect(env.COUNTERSIGN_SMTP_URL !== undefined, `${s.id}: SMTP URL`).toBe(s.name === 'notifier');
      expect(env.COUNTERSIGN_AUDIT_SIGNING_KEY_FILE !== undefined, `${s.id}: audit key`).toBe(
        s.name === 'api' || s.name === 'reaper',
      );
    }
  });

  it('the issuer signs with the intermediate alone; the leaf verifies under the offline root', async () => {
    const demo = stack.demo;
    if (!demo) throw new Error('no demo org');
    const { carol } = demo.principals;
    const cn = `offline-root.${demo.domain}`;
    const { csrPem } = await generateKeyAndCsr({ commonName: cn, dnsNames: [cn] });
    const since = Date.now();
    const req = await apiCall(stack.apiUrl, carol.key, 'POST', '/api/v1/certificates', {
      profile_id: demo.profiles.development,
      common_name: cn,
      csr: csrPem,
    });
    expect(req.status, JSON.stringify(req.body)).toBe(202);
    const { pem } = await waitForPem(stack.apiUrl, carol.key, req.body.certificate.id, since);
    const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
    const leaf = join(stack.dataDir, 'offline-root-leaf.pem');
    writeFileSync(leaf, blocks[0] ?? '');
    const out = execFileSync(
      'openssl',
      [
        'verify',
        '-CAfile',
        join(stack.caOfflineDir, 'root.crt.pem'),
        '-untrusted',
        join(stack.dataDir, 'ca', 'intermediate.crt.pem'),
        leaf,
      ],
      { encoding: 'utf8' },
    );
    expect(out).toContain(': OK');
  });
});
