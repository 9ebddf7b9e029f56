import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { getPriority } from 'node:os';
import { join } from 'node:path';
import { generateKeyAndCsr } from '@countersign/ca/csr-generate';
import { BACKGROUND_NICE, REPO_ROOT, type Stack } from '@countersign/stack';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiCall, startE2eStack, waitForPem } from './e2e-stack.ts';

/**
 * The services as production runs them: the esbuild bundles
 * (services/<name>/dist/main.mjs) on plain node, which is what the container
 * image and the benchmark start. Every other test runs the sources through tsx,
 * so a dependency that only breaks once bundled (a file looked up next to its
 * own code, a second copy of a library) would otherwise go unseen until deploy.
 * The bundles are rebuilt in place (services/<name>/dist), as `pnpm bench`
 * does: not to be run beside a benchmark or a bundled stack.
 */
let stack: Stack & { dataDir: string; cleanup(): Promise<void> };

beforeAll(async () => {
  execFileSync('pnpm', ['-s', 'build:services'], { stdio: 'pipe' });
  stack = await startE2eStack({ bundled: true });
}, 120_000);
afterAll(async () => stack?.cleanup());

const api = (key: string, method: string, path: string, body?: unknown) =>
  apiCall(stack.apiUrl, key, method, path, body);

describe('bundled services', () => {
  it('run every service from its bundle', () => {
    for (const p of stack.services) {
      const argv = readFileSync(`/proc/${p.pid()}/cmdline`, 'utf8').split('\0');
      expect(argv).toContain(join(REPO_ROOT, 'services', p.name, 'dist', 'main.mjs'));
      expect(argv.join(' ')).not.toContain('tsx');
    }
  });

  it('run the notifier at a lower CPU priority than the request path and the reaper', () => {
    // Relative to the launcher's own niceness (0 unless the test runs under nice).
    const own = getPriority();
    const background = Math.min(19, own + BACKGROUND_NICE);
    const nice = Object.fromEntries(stack.services.map((p) => [p.name, getPriority(p.pid())]));
    expect(nice).toEqual({ api: own, approval: own, issuer: own, notifier: background, reaper: own });
  });

  it('issue a certificate through request, approval by another principal and the issuer', async () => {
    const demo = stack.demo;
    if (!demo) throw new Error('no demo org');
    const { carol, alice } = demo.principals;
    const cn = `bundle.${demo.domain}`;
    const { csrPem } = await generateKeyAndCsr({ commonName: cn, dnsNames: [cn] });
    const req = await api(carol.key, 'POST', '/api/v1/certificates', {
      profile_id: demo.profiles.production,
      common_name: cn,
      csr: csrPem,
      justification: 'bundled e2e',
    });
    expect(req.status).toBe(202);
    expect((await api(alice.key, 'POST', `/api/v1/approvals/${req.body.approval.id}/approve`, {})).status).toBe(200);
    const { pem } = await waitForPem(stack.apiUrl, carol.key, req.body.certificate.id, Date.now());
    const leaf = new X509Certificate(
      pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/)?.[0] ?? '',
    );
    expect(leaf.subject).toContain(`CN=${cn}`);
    const issuerPem = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)?.[1] ?? '';
    expect(leaf.verify(new X509Certificate(issuerPem).publicKey)).toBe(true);
  });

  it('carry bull-board inside the api bundle, sharing its bullmq (no import of it from node_modules)', () => {
    const bundle = readFileSync(join(REPO_ROOT, 'services', 'api', 'dist', 'main.mjs'), 'utf8');
    // What an external package looks like in an ES module bundle: an import, or a require through the banner's.
    const loads = (pkg: string) => new RegExp(`(from\\s*|require\\(\\s*|import\\(\\s*)["']${pkg}(/[^"']*)?["']`);
    // The check sees an external package when there is one: Swagger UI stays outside (it serves files beside its code).
    expect(bundle).toMatch(loads('@fastify/swagger-ui'));
    expect(bundle).not.toMatch(loads('@bull-board/(api|fastify)'));
    expect(bundle).not.toMatch(loads('bullmq'));
    expect(bundle).toContain('createBullBoard');
  });

  it('serve the queue dashboard and its static assets from bull-board inside the bundle', async () => {
    // The installation's operator token opens the board; no org key does.
    const token = stack.queueDashboard?.token;
    if (!token) throw new Error('the local stack mounts no queue dashboard');
    const headers = { authorization: `Bearer ${token}` };
    const page = await fetch(`${stack.apiUrl}/admin/queues`, { headers });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('Countersign queues');
    const queues = await fetch(`${stack.apiUrl}/admin/queues/api/queues`, { headers });
    expect(queues.status).toBe(200);
    const names = ((await queues.json()) as { queues: { name: string }[] }).queues.map((q) => q.name);
    expect(names).toContain('issuance');
    const icon = await fetch(`${stack.apiUrl}/admin/queues/static/favicon-32x32.png`, { headers });
    expect(icon.status).toBe(200);
    expect(
      Buffer.from(await icon.arrayBuffer())
        .subarray(1, 4)
        .toString(),
    ).toBe('PNG');
  });

  it('serve the OpenAPI document and its browsable docs', async () => {
    const doc = await fetch(`${stack.apiUrl}/openapi.json`);
    expect(doc.status).toBe(200);
    expect(((await doc.json()) as { openapi: string }).openapi).toMatch(/^3\./);
    const docs = await fetch(`${stack.apiUrl}/docs/`);
    expect(docs.status).toBe(200);
    expect(await docs.text()).toContain('swagger-ui');
  });
});
