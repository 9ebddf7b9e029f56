import { X509Certificate } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { csrFor } from '@countersign/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LiveApi, startLiveApi } from '../../packages/client/src/testing/live-api.ts';
import type { RequestResult } from '../../packages/client/src/types.ts';
import {
  type Browser,
  ensureChromium,
  ensureConsoleBuilt,
  launchChromium,
  type Page,
} from '../../packages/console/src/browser.ts';

/**
 * The web console in Debian's headless Chromium, driven by playwright-core,
 * against the real api (serving /ui from the built console) and the real
 * issuer handler. Screenshots land in test-results/ (gitignored).
 */
const chromium = ensureChromium();
if (!chromium.ok) {
  console.warn(`console browser tests SKIPPED: ${chromium.reason}`);
} else {
  ensureConsoleBuilt();
}

const RESULTS = fileURLToPath(new URL('../../test-results/', import.meta.url));

describe.skipIf(!chromium.ok)('web console in headless Chromium', () => {
  let live: LiveApi;
  let browser: Browser;
  let page: Page;
  let origin: string;
  const foreign: string[] = [];
  const consoleErrors: string[] = [];
  const failedResponses: string[] = [];
  let issued: RequestResult;
  let renewal: { approval: { id: string } | null; job: { id: string } };
  let pending: RequestResult;
  let ownByOperator: RequestResult;

  beforeAll(async () => {
    await mkdir(RESULTS, { recursive: true });
    live = await startLiveApi();
    origin = live.url;
    const op1 = live.client(live.org.operator1.key);
    const requester = live.client(live.org.requester.key);

    // An issued certificate, then a renewal that drops a name, adds one and rotates the key.
    issued = await live.requestGated('shop.example.test', ['www-shop.example.test']);
    await op1.approve(issued.approval!.id, { note: 'initial issuance, CHG-1000' });
    await live.issue(issued.job.id);
    const { csrPem } = await csrFor('shop.example.test', ['api-shop.example.test']);
    renewal = await requester.renewCertificate(issued.certificate.id, {
      csr: csrPem,
      justification: 'Rotate the key and move www to the CDN (CHG-3100)',
    });
    pending = await live.requestGated('checkout.example.test', ['pay.example.test']);
    ownByOperator = await live.requestGated('ops-tool.example.test', [], live.org.operator1.key);

    browser = await launchChromium();
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
    page = await context.newPage();
    page.on('request', (r) => {
      const u = r.url();
      if (!u.startsWith(`${origin}/`) && !u.startsWith('data:') && !u.startsWith('blob:')) foreign.push(u);
    });
    page.on('response', (r) => {
      if (r.status() >= 400) failedResponses.push(`${r.status()} ${r.request().method()} ${new URL(r.url()).pathname}`);
    });
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text());
    });
  });

  afterAll(async () => {
    await browser?.close();
    await live?.close();
  });

  async function signIn(key: string) {
    await page.goto(`${origin}/ui/`);
    await page.getByRole('heading', { name: 'Sign in to Countersign' }).waitFor();
    await page.getByLabel('API key').fill(key);
    // Keyboard only: Enter submits.
    await page.getByLabel('API key').press('Enter');
    await page.getByRole('heading', { name: 'Approval queue' }).waitFor();
  }

  async function signOut() {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in to Countersign' }).waitFor();
  }

  const row = (approvalId: string) =>
    page.locator('table.queue tbody tr').filter({ has: page.locator(`a[href="#/approvals/${approvalId}"]`) });

  it('serves the console under /ui with a same-origin content policy', async () => {
    const res = await fetch(`${origin}/ui/`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-security-policy')).toContain("default-src 'none'");
    expect(res.headers.get('content-security-policy')).toContain("connect-src 'self'");
    expect(await res.text()).toContain('<div id="root">');
    // Without the slash too (the api ignores trailing slashes); asset paths are absolute under /ui/.
    const bare = await fetch(`${origin}/ui`, { redirect: 'manual' });
    expect(bare.status).toBe(200);
    const html = await bare.text();
    const asset = /src="(\/ui\/assets\/[^"]+\.js)"/.exec(html)?.[1];
    expect(asset).toBeDefined();
    const js = await fetch(`${origin}${asset}`);
    expect(js.status).toBe(200);
    expect(js.headers.get('cache-control')).toContain('immutable');
  });

  it('refuses a bad key plainly, then signs in and shows the pending queue with the fields approvers need', async () => {
    await page.goto(`${origin}/ui/`);
    await page.getByLabel('API key').fill('cs_not_a_real_key');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.getByRole('alert').textContent()).toContain('unauthenticated');

    await signIn(live.org.operator2.key);
    // Kept in session storage only.
    // Evaluated in the page (strings: this file is type-checked without the DOM library).
    const storage = await page.evaluate(
      '({ session: sessionStorage.getItem("countersign.apiKey"), local: localStorage.length, cookie: document.cookie })',
    );
    expect(storage).toEqual({ session: live.org.operator2.key, local: 0, cookie: '' });

    const r = row(pending.approval!.id);
    await r.waitFor();
    const text = (await r.innerText()).replace(/\s+/g, ' ');
    expect(text).toContain('requester');
    expect(text).toContain('checkout.example.test, pay.example.test');
    expect(text).toContain('production-web');
    expect(text).toContain('production');
    expect(text).toContain('deploy checkout.example.test for the checkout service');
    expect(text).toMatch(/\d+s ago|\dm \d+s ago/);
    expect(text).toContain('in 6d 23h');
    expect(text).toContain('0/1');
    expect(text).toContain('Pending');
    // Newest first: the operator's own request was made last.
    const firstLink = await page.locator('table.queue tbody tr').first().locator('a').getAttribute('href');
    expect(firstLink).toBe(`#/approvals/${ownByOperator.approval!.id}`);
    await page.screenshot({ path: join(RESULTS, 'console-queue.png'), fullPage: true });
  });

  it('filters by state and profile, and refreshes live', async () => {
    await page.getByLabel('State').selectOption('approved');
    await row(issued.approval!.id).waitFor();
    expect(await row(pending.approval!.id).count()).toBe(0);
    await page.getByLabel('Profile').selectOption({ label: 'development-web (development)' });
    await page.getByText('No approved requests for this profile.').waitFor();
    await page.getByLabel('State').selectOption('pending');
    await page.getByLabel('Profile').selectOption('');
    await row(pending.approval!.id).waitFor();

    // A request made elsewhere appears without a reload (refresh every 10 s).
    const late = await live.requestGated('late.example.test');
    await row(late.approval!.id).waitFor({ timeout: 15_000 });
  });

  it('shows a renewal diff: names added and removed, key changed, validity', async () => {
    await page.goto(`${origin}/ui/#/approvals/${renewal.approval!.id}`);
    await page.getByRole('heading', { name: /Renewal for shop\.example\.test/ }).waitFor();
    const diff = page.locator('section', { has: page.getByRole('heading', { name: 'What this renewal changes' }) });
    const names = (await diff.locator('table.names').innerText()).replace(/\s+/g, ' ');
    expect(names).toContain('added api-shop.example.test');
    expect(names).toContain('removed www-shop.example.test');
    expect(names).toContain('unchanged shop.example.test');
    const facts = (await diff.locator('dl').innerText()).replace(/\s+/g, ' ');
    expect(facts).toMatch(/Key Changed: ECDSA P-256 [0-9a-f:]+… → ECDSA P-256/);
    expect(facts).toMatch(/Validity 90 days \(.+ – .+\) → 90 days from issuance/);
    await page.screenshot({ path: join(RESULTS, 'console-diff.png'), fullPage: true });
  });

  it('approves a pending request as another principal, and shows it issued with its PEM chain', async () => {
    await page.goto(`${origin}/ui/#/approvals/${pending.approval!.id}`);
    await page.getByRole('heading', { name: /New certificate for checkout\.example\.test/ }).waitFor();
    // Reject needs a note: nothing is sent without one.
    await page.getByRole('button', { name: 'Reject' }).click();
    await page.getByText('Write a note: the requester reads why the request was rejected.').waitFor();
    expect((await live.client(live.org.admin.key).getApproval(pending.approval!.id)).state).toBe('pending');

    await page.getByLabel(/^Note/).fill('Reviewed with the payments team, CHG-1042');
    await page.getByRole('button', { name: 'Approve' }).click();
    await page.getByText('Approved. The job is released for issuance.').waitFor();
    const after = await live.client(live.org.admin.key).getApproval(pending.approval!.id);
    expect(after.state).toBe('approved');
    expect(after.votes).toEqual([
      expect.objectContaining({ voter_id: live.org.operator2.id, note: 'Reviewed with the payments team, CHG-1042' }),
    ]);

    expect((await live.issue(pending.job.id)).status).toBe('issued');
    await page.reload();
    await page.getByText('Issued', { exact: true }).waitFor();
    await page.getByRole('link', { name: 'View the issued certificate' }).click();
    await page.getByRole('heading', { name: 'checkout.example.test' }).waitFor();
    const versions = page.locator('section', { has: page.getByRole('heading', { name: 'Versions' }) });
    expect(await versions.locator('tbody tr').count()).toBe(1);

    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'Download PEM chain' }).click(),
    ]);
    expect(download.suggestedFilename()).toBe('checkout.example.test.pem');
    const pem = await readFile((await download.path()) as string, 'utf8');
    const certs = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    expect(certs.length).toBeGreaterThanOrEqual(2);
    expect(new X509Certificate(certs[0]!).subjectAltName).toContain('DNS:pay.example.test');
  });

  it('shows the two-person-integrity refusal when a requester tries to approve their own request', async () => {
    await signOut();
    expect(await page.evaluate('sessionStorage.getItem("countersign.apiKey")')).toBeNull();
    await signIn(live.org.operator1.key);
    await page.goto(`${origin}/ui/#/approvals/${ownByOperator.approval!.id}`);
    await page.getByText('You requested this certificate.', { exact: false }).waitFor();
    await page.getByRole('button', { name: 'Approve' }).click();
    const alert = page.getByRole('alert');
    await alert.waitFor();
    const text = (await alert.innerText()).replace(/\s+/g, ' ');
    expect(text).toContain('two-person integrity');
    expect(text).toContain('two_person_integrity · HTTP 403');
    const still = await live.client(live.org.admin.key).getApproval(ownByOperator.approval!.id);
    expect(still.state).toBe('pending');
    expect(still.votes).toEqual([]);
  });

  it('tells a requester-role principal it cannot decide, and shows the audit page state', async () => {
    await signOut();
    await signIn(live.org.requester.key);
    await page.goto(`${origin}/ui/#/approvals/${renewal.approval!.id}`);
    await page.getByText('Your role (requester) cannot decide requests.', { exact: false }).waitFor();
    expect(await page.getByRole('button', { name: 'Approve' }).count()).toBe(0);

    await signOut();
    await signIn(live.org.auditor.key);
    await page.getByRole('link', { name: 'Audit' }).click();
    await page.getByRole('heading', { name: 'Audit ledger' }).waitFor();
    const chain = page.locator('section', { has: page.getByRole('heading', { name: 'Hash chain' }) });
    await expect.poll(async () => chain.innerText(), { timeout: 10_000 }).toMatch(/Chain intact|not available/);
  });

  it('works at phone width without sideways scrolling', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.getByRole('link', { name: 'Approvals' }).click();
    await page.getByRole('heading', { name: 'Approval queue' }).waitFor();
    await page.locator('table.queue tbody tr').first().waitFor();
    const widths = (await page.evaluate(
      '({ scroll: document.documentElement.scrollWidth, client: document.documentElement.clientWidth })',
    )) as { scroll: number; client: number };
    expect(widths.scroll).toBeLessThanOrEqual(widths.client);
    await page.screenshot({ path: join(RESULTS, 'console-queue-phone.png'), fullPage: true });
  });

  it('made no request to any other origin, and every failed answer was one the page expected', async () => {
    expect(foreign).toEqual([]);
    const doc = (await (await fetch(`${origin}/openapi.json`)).json()) as { paths: Record<string, unknown> };
    const auditMissing = !doc.paths['/api/v1/audit/verify'];
    const expected = (f: string) =>
      f === '401 GET /api/v1/me' || // the refused sign-in
      f === `403 POST /api/v1/approvals/${ownByOperator.approval!.id}/approve` || // two-person integrity
      f === '403 GET /api/v1/principals' || // a requester may not list principals; names fall back
      (auditMissing && /^404 GET \/api\/v1\/audit\/(verify|checkpoints)$/.test(f));
    expect(failedResponses.filter((f) => !expected(f))).toEqual([]);
    expect(failedResponses).toContain('401 GET /api/v1/me');
    expect(consoleErrors.filter((e) => !e.startsWith('Failed to load resource'))).toEqual([]);
  });
});
