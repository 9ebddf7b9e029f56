import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { applied, isPendingConfiguration } from '@countersign/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LiveApi, startLiveApi } from '../../packages/client/src/testing/live-api.ts';
import {
  type Browser,
  ensureChromium,
  ensureConsoleBuilt,
  launchChromium,
  type Page,
} from '../../packages/console/src/browser.ts';

/**
 * The identity model in the web console (SPEC §1.6), in headless Chromium
 * against the real api: an enrollment key is told it cannot decide and mints
 * the principal's own key (shown once; the tab switches to it); admins and
 * auditors see when the org is not two-person ready; and in a ready org a
 * second admin approves a configuration request in the console, which its
 * requester cannot.
 */
const chromium = ensureChromium();
if (!chromium.ok) {
  console.warn(`console identity browser tests SKIPPED: ${chromium.reason}`);
} else {
  ensureConsoleBuilt();
}

const RESULTS = fileURLToPath(new URL('../../test-results/', import.meta.url));
const CLI = fileURLToPath(new URL('../../packages/cli/bin/countersign.mjs', import.meta.url));
const run = promisify(execFile);

describe.skipIf(!chromium.ok)('web console: enrollment keys, readiness and configuration requests', () => {
  let live: LiveApi;
  let browser: Browser;
  let page: Page;
  let origin: string;
  const foreign: string[] = [];
  const consoleErrors: string[] = [];
  const failedResponses: string[] = [];

  beforeAll(async () => {
    await mkdir(RESULTS, { recursive: true });
    live = await startLiveApi();
    origin = live.url;
    browser = await launchChromium();
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin });
    page = await context.newPage();
    page.on('request', (r) => {
      const u = r.url();
      if (!u.startsWith(`${origin}/`) && !u.startsWith('data:')) foreign.push(u);
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

  const admin = () => live.client(live.org.admin.key);
  const banner = (name: string | RegExp) =>
    page.locator('section.banner', { has: page.getByRole('heading', { name }) });

  async function signIn(key: string) {
    await page.goto(`${origin}/ui/`);
    // Each test starts signed out, even after an earlier one failed half-way.
    await page.evaluate('sessionStorage.clear()');
    await page.reload();
    await page.getByRole('heading', { name: 'Sign in to Countersign' }).waitFor();
    await page.getByLabel('API key').fill(key);
    await page.getByLabel('API key').press('Enter');
    await page.getByRole('heading', { name: 'Approval queue' }).waitFor();
  }

  async function signOut() {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('heading', { name: 'Sign in to Countersign' }).waitFor();
  }

  const navLink = (name: string) => page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name });
  const sessionKey = () => page.evaluate('sessionStorage.getItem("countersign.apiKey")');

  /** A principal made by the seeded admin (the org is not ready yet, so it applies at once), with an enrollment key. */
  async function newcomer(name: string, role: 'admin' | 'operator') {
    const p = applied(await admin().createPrincipal({ name, role, email: `${name}@example.test` }));
    const k = applied(await admin().createApiKey(p.id, { name: `enrollment for ${name}` }));
    return { id: p.id, key: k.key, keyId: k.id };
  }

  let spentKey = '';
  let carolOwn = '';

  it('warns admins and auditors that the org is not two-person ready, in the server’s words; not operators', async () => {
    await signIn(live.org.admin.key);
    const warn = banner('This org is not two-person ready');
    await warn.waitFor();
    expect(await warn.innerText()).toContain('not yet two-person ready: one admin can change this org');
    expect(await navLink('Configuration').count()).toBe(1);
    await page.screenshot({ path: join(RESULTS, 'console-readiness.png'), fullPage: true });
    await signOut();

    await signIn(live.org.auditor.key);
    await banner('This org is not two-person ready').waitFor();
    await signOut();

    await signIn(live.org.operator2.key);
    await page.locator('table.queue, p.empty').first().waitFor();
    expect(await banner('This org is not two-person ready').count()).toBe(0);
    expect(await navLink('Configuration').count()).toBe(0);
    await signOut();
  });

  it('an enrollment key cannot decide; "Mint my own key" shows the key once and moves the tab to it', async () => {
    const carol = await newcomer('carol', 'admin');
    const pending = await live.requestGated('enroll-web.example.test');
    await signIn(carol.key);
    const enrollment = banner('You signed in with an enrollment key');
    await enrollment.waitFor();
    expect(await enrollment.innerText()).toContain('admin made this key for you');

    await page.goto(`${origin}/ui/#/approvals/${pending.approval!.id}`);
    await page.getByText('You signed in with an enrollment key: it can read and request').waitFor();
    expect(await page.getByRole('button', { name: 'Approve' }).count()).toBe(0);

    await page.getByRole('button', { name: 'Mint my own key' }).click();
    const fresh = banner('Your own key');
    await fresh.waitFor();
    expect(await fresh.innerText()).toContain('Shown only now.');
    carolOwn = await page.getByLabel('Your new API key').inputValue();
    expect(carolOwn).toMatch(/^cs_[0-9a-f]{32}_/);
    expect(carolOwn).not.toBe(carol.key);
    // The tab's session is the own key now; the enrollment key is kept nowhere.
    expect(await sessionKey()).toBe(carolOwn);
    expect(await page.evaluate('localStorage.length')).toBe(0);
    expect(await live.client(carolOwn).me()).toMatchObject({ id: carol.id, credential: { own: true } });
    await page.getByRole('heading', { name: /New certificate for enroll-web\.example\.test/ }).waitFor();
    expect(await banner('You signed in with an enrollment key').count()).toBe(0);
    await page.screenshot({ path: join(RESULTS, 'console-own-key.png'), fullPage: true });

    await page.getByRole('button', { name: 'Copy' }).click();
    await fresh.getByText(/Copied to the clipboard\.|the key is selected/).waitFor();
    const clip = await page.evaluate('navigator.clipboard.readText().catch(() => null)');
    if (clip !== null) expect(clip).toBe(carolOwn);

    await page.getByRole('button', { name: 'Revoke the enrollment key' }).click();
    await fresh.getByText('Your enrollment key is revoked.').waitFor();
    await expect(live.client(carol.key).me()).rejects.toMatchObject({ status: 401 });
    await page.getByRole('button', { name: 'I have stored it' }).click();
    expect(await banner('Your own key').count()).toBe(0);

    // The own key decides.
    await page.getByLabel(/^Note/).fill('checked with the shop team');
    await page.getByRole('button', { name: 'Approve' }).click();
    await page.getByText('Approved. The job is released for issuance.').waitFor();
    expect((await admin().getApproval(pending.approval!.id)).state).toBe('approved');
    await signOut();
    expect(await sessionKey()).toBeNull();
  });

  it('an enrollment key someone already used shows the server’s refusal and keeps the session as it was', async () => {
    const dan = await newcomer('dan', 'operator');
    // Someone else got there first with dan's enrollment key.
    await live.client(dan.key).mintOwnApiKey({ name: 'not dan' });
    spentKey = dan.key;
    await signIn(dan.key);
    await banner('You signed in with an enrollment key').waitFor();
    await page.getByRole('button', { name: 'Mint my own key' }).click();
    const alert = page.getByRole('alert');
    await alert.waitFor();
    const text = (await alert.innerText()).replace(/\s+/g, ' ');
    expect(text).toContain('already used to mint an own key');
    expect(text).toContain('report it if that was not you');
    expect(await sessionKey()).toBe(dan.key);
    expect(await banner('Your own key').count()).toBe(0);
    await signOut();
  });

  describe('once the org is two-person ready', () => {
    let dave: { id: string; key: string; enrollmentKey: string };
    let frankRequest = '';
    let ginaRequest = '';

    beforeAll(async () => {
      // A second admin made by the installation (not by the seeded admin), enrolled as a person would.
      const org = await admin().getOrg();
      const { stdout } = await run(
        process.execPath,
        [CLI, 'admin', 'add', '--org', org.name, '--name', 'dave', '--email', 'dave@example.test', '--json'],
        { env: { PATH: process.env.PATH ?? '', COUNTERSIGN_DATABASE_URL: live.tdb.appUrl }, timeout: 60_000 },
      );
      const added = JSON.parse(stdout) as { admin_id: string; api_key: string };
      const own = await live.client(added.api_key).mintOwnApiKey({ name: 'own' });
      dave = { id: added.admin_id, key: own.key, enrollmentKey: added.api_key };
      expect((await admin().getOrg()).two_person_ready).toBe(true);

      const frank = await admin().createPrincipal({
        name: 'frank',
        role: 'operator',
        justification: 'frank joins the on-call rota (OPS-12)',
      });
      const gina = await admin().createPrincipal({ name: 'gina', role: 'operator', justification: 'typo test' });
      if (!isPendingConfiguration(frank) || !isPendingConfiguration(gina)) throw new Error('expected 202 answers');
      frankRequest = frank.configuration_request.id;
      ginaRequest = gina.configuration_request.id;
    });

    const configRow = (id: string) =>
      page.locator('table.queue tbody tr').filter({ has: page.locator(`a[href="#/configuration/${id}"]`) });

    it('the requesting admin sees no readiness warning and its change pending, and cannot approve it', async () => {
      await signIn(live.org.admin.key);
      await navLink('Configuration').click();
      await page.getByRole('heading', { name: 'Configuration requests' }).waitFor();
      expect(await banner('This org is not two-person ready').count()).toBe(0);
      const row = configRow(frankRequest);
      await row.waitFor();
      const text = (await row.innerText()).replace(/\s+/g, ' ');
      expect(text).toContain('create user principal frank (operator): a new operator');
      expect(text).toContain('admin (you)');
      expect(text).toContain('frank joins the on-call rota (OPS-12)');
      expect(text).toContain('in 6d 23h');
      expect(text).toContain('Pending');

      await row.getByRole('link').click();
      await page.getByText('You asked for this change.').waitFor();
      await page.getByRole('button', { name: 'Approve and apply' }).click();
      const alert = page.getByRole('alert');
      await alert.waitFor();
      expect((await alert.innerText()).replace(/\s+/g, ' ')).toContain('two_person_integrity · HTTP 403');
      expect((await admin().getConfigRequest(frankRequest)).state).toBe('pending');
      await signOut();
    });

    it('a second admin approves one request (a note is needed only to reject) and rejects the other', async () => {
      await signIn(dave.key);
      await navLink('Configuration').click();
      await configRow(frankRequest).getByRole('link').click();
      await page.getByRole('heading', { name: /New principal/ }).waitFor();
      const change = page.locator('section', {
        has: page.getByRole('heading', { name: 'The change, as it will be applied' }),
      });
      const facts = (await change.innerText()).replace(/\s+/g, ' ');
      expect(facts).toContain('role operator');
      expect(facts).toContain('name frank');
      expect(facts).toContain('Before you approve');

      await page.getByRole('button', { name: 'Reject' }).click();
      await page.getByText('Write a note: the admin who asked reads why the change was rejected.').waitFor();
      expect((await admin().getConfigRequest(frankRequest)).state).toBe('pending');

      await page.getByLabel(/^Note/).fill('OPS-12 confirmed');
      await page.getByRole('button', { name: 'Approve and apply' }).click();
      await page.getByText('Approved. The change is applied.').waitFor();
      expect(await admin().getConfigRequest(frankRequest)).toMatchObject({
        state: 'approved',
        decided_by: dave.id,
        decision_note: 'OPS-12 confirmed',
      });
      const names = (await admin().listPrincipals({ limit: 500 })).items.map((p) => p.name);
      expect(names).toContain('frank');
      await page.screenshot({ path: join(RESULTS, 'console-config-approved.png'), fullPage: true });

      await page.goto(`${origin}/ui/#/configuration/${ginaRequest}`);
      await page.getByLabel(/^Note/).fill('gina is not on the rota');
      await page.getByRole('button', { name: 'Reject' }).click();
      await page.getByText('Rejected. Nothing changes.').waitFor();
      expect((await admin().getConfigRequest(ginaRequest)).state).toBe('rejected');

      await page.getByRole('link', { name: 'Configuration requests' }).click();
      await page.getByText('No pending configuration requests.').waitFor();
      await page.getByLabel('State').selectOption('all');
      await configRow(frankRequest).getByText('Approved').waitFor();
      await configRow(ginaRequest).getByText('Rejected').waitFor();
      await signOut();
    });

    it('an auditor reads configuration requests but is offered no decision', async () => {
      const hank = await admin().createPrincipal({
        name: 'hank',
        role: 'admin',
        justification: 'second on-call admin',
      });
      if (!isPendingConfiguration(hank)) throw new Error('expected a 202 answer');
      await signIn(live.org.auditor.key);
      await navLink('Configuration').click();
      await configRow(hank.configuration_request.id).getByRole('link').click();
      await page
        .getByText('Your role (auditor) can read configuration requests; another admin decides them.')
        .waitFor();
      expect(await page.getByRole('button', { name: 'Approve and apply' }).count()).toBe(0);
      await signOut();
    });
  });

  it('made no request to any other origin, and every failed answer was one the page expected', async () => {
    expect(spentKey).not.toBe('');
    expect(carolOwn).not.toBe('');
    expect(foreign).toEqual([]);
    const expected = (f: string) =>
      f === '409 POST /api/v1/me/api-keys' || // the enrollment key someone already used
      /^403 POST \/api\/v1\/configuration-requests\/[0-9a-f-]+\/approve$/.test(f); // the requester's own change
    expect(failedResponses.filter((f) => !expected(f))).toEqual([]);
    expect(consoleErrors.filter((e) => !e.startsWith('Failed to load resource'))).toEqual([]);
  });
});
