import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Stack } from '@countersign/stack';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiCall, startE2eStack, waitForPem } from './e2e-stack.ts';

/**
 * The newcomer's walkthrough that `scripts/up.sh` prints, step by step, on the
 * stack as up.sh builds it (the demo with two independent admins): carol
 * requests with a CSR made by openssl, cannot approve her own request, alice
 * approves, the chain verifies with openssl against the offline root; one
 * admin alone cannot ungate the production profile, erin decides. Every demo
 * key is its principal's own.
 */
let stack: Stack & { dataDir: string; cleanup(): Promise<void> };

beforeAll(async () => {
  stack = await startE2eStack({ demoSecondAdmin: true });
});
afterAll(async () => stack?.cleanup());

const api = (key: string, method: string, path: string, body?: unknown) =>
  apiCall(stack.apiUrl, key, method, path, body);

describe('the walkthrough scripts/up.sh prints', () => {
  it('gives each demo principal its own key, in an org that is two-person ready', async () => {
    const demo = stack.demo;
    if (!demo) throw new Error('no demo org');
    expect(demo.two_person_ready).toBe(true);
    for (const [name, p] of Object.entries(demo.principals)) {
      const me = await api(p.key, 'GET', '/api/v1/me');
      expect(me.status, name).toBe(200);
      expect(me.body.credential, name).toMatchObject({ kind: 'api_key', own: true, created_by: p.id });
    }
    const org = await api(demo.principals.dave.key, 'GET', '/api/v1/org');
    expect(org.body).toMatchObject({ two_person_ready: true, enabled_admins: 2, warning: null });
  });

  it('runs steps 1 to 4 as printed', async () => {
    const demo = stack.demo;
    if (!demo) throw new Error('no demo org');
    const { carol, alice, admin, erin } = demo.principals;
    if (!erin) throw new Error('the demo has no second admin');
    const dir = stack.dataDir;
    const cn = `web.${demo.domain}`;
    // 1. carol makes a key and CSR with openssl, and requests a certificate on the gated profile.
    execFileSync(
      'openssl',
      [
        'req',
        '-new',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        join(dir, 'web.key'),
        '-out',
        join(dir, 'web.csr'),
        '-subj',
        `/CN=${cn}`,
        '-addext',
        `subjectAltName=DNS:${cn}`,
      ],
      { stdio: 'pipe' },
    );
    const { readFile } = await import('node:fs/promises');
    const csr = await readFile(join(dir, 'web.csr'), 'utf8');
    const req = await api(carol.key, 'POST', '/api/v1/certificates', {
      profile_id: demo.profiles.production,
      common_name: cn,
      csr,
      justification: 'new web frontend',
    });
    expect(req.status, JSON.stringify(req.body)).toBe(202);
    const started = Date.now();
    // 2. carol cannot approve her own request; alice approves it.
    const self = await api(carol.key, 'POST', `/api/v1/approvals/${req.body.approval.id}/approve`, {});
    expect(self.status).toBe(403);
    expect(self.body.code).toBe('two_person_integrity');
    const ok = await api(alice.key, 'POST', `/api/v1/approvals/${req.body.approval.id}/approve`, { note: 'checked' });
    expect(ok.status).toBe(200);
    expect(ok.body.state).toBe('approved');
    // 3. fetch the signed chain and check it against the offline root.
    const { pem } = await waitForPem(stack.apiUrl, carol.key, req.body.certificate.id, started);
    await writeFile(join(dir, 'web.pem'), pem);
    const verified = execFileSync('openssl', [
      'verify',
      '-CAfile',
      join(stack.caOfflineDir, 'root.crt.pem'),
      '-untrusted',
      join(dir, 'web.pem'),
      join(dir, 'web.pem'),
    ]).toString();
    expect(verified).toContain(': OK');
    const subject = execFileSync('openssl', ['x509', '-in', join(dir, 'web.pem'), '-noout', '-subject']).toString();
    expect(subject).toContain(cn);
    // 4. one admin alone cannot ungate production-web: the change waits; erin, the other admin, rejects it.
    const profile = await api(admin.key, 'GET', `/api/v1/profiles/${demo.profiles.production}`);
    const change = await api(admin.key, 'PUT', `/api/v1/profiles/${demo.profiles.production}`, {
      name: 'production-web',
      environment: 'production',
      requires_approval: false,
      allowed_domains: profile.body.allowed_domains,
      approvers: profile.body.approvers,
      justification: 'try the gate',
    });
    expect(change.status, JSON.stringify(change.body)).toBe(202);
    const decided = await api(
      erin.key,
      'POST',
      `/api/v1/configuration-requests/${change.body.configuration_request.id}/reject`,
      { note: 'not in production' },
    );
    expect(decided.status).toBe(200);
    expect(decided.body.state).toBe('rejected');
    const after = await api(admin.key, 'GET', `/api/v1/profiles/${demo.profiles.production}`);
    expect(after.body.requires_approval).toBe(true);
  });
});
