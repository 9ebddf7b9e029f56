import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { applied, isPendingConfiguration } from '@countersign/client';
import { enrollPrincipal, type SeededPrincipal } from '@countersign/testing';
import { addInstallationAdmin } from '@countersign/workflow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LiveApi, startLiveApi } from '../../client/src/testing/live-api.ts';

/**
 * `countersign enroll`, `keys`, `org` and `config` as the real binary against
 * the real api (SPEC §1.6): an enrollment key never decides, enroll stores
 * only the own key, and in a two-person-ready org a gated change waits for a
 * second admin who is not its requester and signs in with an own key.
 */
const BIN = fileURLToPath(new URL('../bin/countersign.mjs', import.meta.url));
const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';

let live: LiveApi;
let home: string;
const homes: string[] = [];

beforeAll(async () => {
  live = await startLiveApi();
  home = await newHome();
});
afterAll(async () => {
  await live?.close();
  for (const h of homes) await rm(h, { recursive: true, force: true });
});

async function newHome(): Promise<string> {
  const h = await mkdtemp(join(tmpdir(), 'cs-cli-identity-'));
  homes.push(h);
  return h;
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `key: null` runs with neither COUNTERSIGN_URL nor COUNTERSIGN_API_KEY: only the stored file counts. */
function cs(args: string[], opts: { key?: string | null; input?: string; home?: string } = {}): Promise<Run> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    HOME: opts.home ?? home,
    NO_COLOR: '1',
    ...(opts.key !== null ? { COUNTERSIGN_URL: live.url } : {}),
    ...(opts.key ? { COUNTERSIGN_API_KEY: opts.key } : {}),
  };
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env, cwd: opts.home ?? home, stdio: 'pipe' });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => {
      stdout += c;
    });
    child.stderr.on('data', (c) => {
      stderr += c;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(opts.input ?? '');
  });
}

const configFile = (h: string) => join(h, '.config/countersign/config.json');
const stored = async (h: string) =>
  JSON.parse(await readFile(configFile(h), 'utf8')) as { url: string; api_key: string };

/** A principal made by the seeded admin (the org is not two-person ready yet) with the enrollment key it was given. */
async function newcomer(name: string, role: 'admin' | 'operator' | 'requester') {
  const admin = live.client(live.org.admin.key);
  const p = applied(await admin.createPrincipal({ name, role, email: `${name}@example.test` }));
  const k = applied(await admin.createApiKey(p.id, { name: `enrollment for ${name}` }));
  expect(k.purpose).toBe('enrollment');
  return { id: p.id, key: k.key, keyId: k.id };
}

describe('enroll, login and keys against a live api', () => {
  let carol: { id: string; key: string; keyId: string };
  let carolHome: string;

  it('answers --help on every new command', async () => {
    const cmds = ['enroll', 'keys list', 'keys mint', 'keys revoke', 'org', 'config list', 'config show'];
    const runs = await Promise.all(cmds.map((c) => cs([...c.split(' '), '--help'], { key: null })));
    runs.forEach((r, i) => {
      expect(r.code, cmds[i]).toBe(0);
      expect(r.stdout, cmds[i]).toContain(`countersign ${cmds[i]}`);
    });
    const top = await cs(['--help'], { key: null });
    for (const c of ['enroll', 'keys mint', 'config approve', 'org ']) expect(top.stdout).toContain(c);
    expect(top.stdout).toContain('enrollment_credential');
    expect((await cs(['config'], { key: null })).code).toBe(2);
  });

  it('enroll turns an enrollment key into an own key, stored 0600, that approves; the enrollment key never decides', async () => {
    carol = await newcomer('carol', 'admin');
    const pending = await live.requestGated('enroll.example.test');

    // The enrollment key reads and requests, but its vote is refused: exit 4, in the server's words.
    const refused = await cs(['approve', pending.approval!.id], { key: carol.key });
    expect(refused.code).toBe(4);
    expect(refused.stderr).toContain('enrollment_credential, HTTP 403');
    expect(refused.stderr).toContain("run 'countersign enroll'");

    carolHome = await newHome();
    const r = await cs(['enroll', '--url', live.url, '--key-stdin', '--name', 'laptop'], {
      key: null,
      home: carolHome,
      input: `${carol.key}\n`,
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Enrollment key of carol (admin)');
    expect(r.stdout).toContain('made by admin');
    expect(r.stdout).toContain('is now spent');
    expect(r.stdout).toContain(`countersign keys revoke ${carol.keyId}`);

    const file = await stored(carolHome);
    expect((await stat(configFile(carolHome))).mode & 0o777).toBe(0o600);
    expect(file.url).toBe(live.url);
    // Only the own key is kept, and it is never printed.
    expect(file.api_key).not.toBe(carol.key);
    expect(r.stdout).not.toContain(file.api_key);
    const me = await live.client(file.api_key).me();
    expect(me).toMatchObject({ id: carol.id, credential: { own: true, created_by: carol.id } });

    // With nothing but the stored file, the own key approves.
    const yes = await cs(['approve', pending.approval!.id, '--note', 'checked with the shop team'], {
      key: null,
      home: carolHome,
    });
    expect(yes.stderr).toBe('');
    expect(yes.code).toBe(0);
    expect(yes.stdout).toContain('Approved');

    const keys = await cs(['keys', 'list'], { key: null, home: carolHome });
    expect(keys.code).toBe(0);
    expect(keys.stdout).toMatch(new RegExp(`${me.credential.id} \\*\\s+own\\s+laptop\\s+carol \\(you\\)`));
    expect(keys.stdout).toMatch(
      new RegExp(`${carol.keyId}\\s+enrollment \\(spent .+ ago\\)\\s+enrollment for carol\\s+admin`),
    );
  });

  it('enroll with an enrollment key already used fails with the server’s words and keeps the stored key', async () => {
    const before = await readFile(configFile(carolHome), 'utf8');
    const again = await cs(['enroll', '--url', live.url, '--key-stdin'], {
      key: null,
      home: carolHome,
      input: `${carol.key}\n`,
    });
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('already used to mint an own key');
    expect(again.stderr).toContain('(conflict, HTTP 409');
    expect(await readFile(configFile(carolHome), 'utf8')).toBe(before);
  });

  it('enroll with an own key says so and stores it as login does', async () => {
    const h = await newHome();
    const r = await cs(['enroll', '--url', live.url, '--key-stdin'], {
      key: null,
      home: h,
      input: `${live.org.operator1.key}\n`,
    });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("already operator1's own key");
    expect((await stored(h)).api_key).toBe(live.org.operator1.key);
    expect((await stat(configFile(h))).mode & 0o777).toBe(0o600);
  });

  it('login with an enrollment key stores it with a hint to enroll, and the same exit code', async () => {
    const dan = await newcomer('dan', 'operator');
    const h = await newHome();
    const r = await cs(['login', '--url', live.url, '--key-stdin'], { key: null, home: h, input: `${dan.key}\n` });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('as dan (operator)');
    expect(r.stdout).toContain(
      "this is an enrollment key: it can request but not approve; run 'countersign enroll' to mint your own key",
    );
    expect((await stored(h)).api_key).toBe(dan.key);

    const own = await cs(['login', '--url', live.url, '--key-stdin'], {
      key: null,
      home: h,
      input: `${live.org.operator2.key}\n`,
    });
    expect(own.code).toBe(0);
    expect(own.stdout).not.toContain('enrollment key');
  });

  it('an enrollment key of an eligible approver is refused with exit 4 naming enrollment_credential; nothing is recorded', async () => {
    const pending = await live.requestGated('enrollment-vote.example.test');
    const id = pending.approval!.id;
    const approve = await cs(['approve', id], { key: live.org.operator2.enrollmentKey });
    expect(approve.code).toBe(4);
    expect(approve.stderr).toContain('enrollment_credential, HTTP 403');
    expect(approve.stderr).toContain('enrollment credential');
    const reject = await cs(['reject', id, '--note', 'no'], { key: live.org.operator2.enrollmentKey });
    expect(reject.code).toBe(4);
    expect(reject.stderr).toContain('enrollment_credential');
    const after = await live.client(live.org.admin.key).getApproval(id);
    expect(after).toMatchObject({ state: 'pending', votes: [] });
  });

  it('keys mint prints an own key once, keys revoke ends it, and keys list shows both', async () => {
    const bad = await cs(['keys', 'mint', '--expires-at', '2001-01-01T00:00:00Z'], { key: live.org.operator1.key });
    expect(bad.code).toBe(2);

    const minted = await cs(['keys', 'mint', '--name', 'ci runner'], { key: live.org.operator1.key });
    expect(minted.code).toBe(0);
    const key = /^\s+(cs_\S+)$/m.exec(minted.stdout)?.[1];
    const id = new RegExp(`New own key (${UUID})`).exec(minted.stdout)?.[1];
    expect(key).toBeDefined();
    expect((await live.client(key!).me()).credential).toMatchObject({ id, own: true });

    const list = await cs(['keys', 'list', '--json'], { key: live.org.operator1.key });
    const items = (JSON.parse(list.stdout) as { items: { id: string; purpose: string }[] }).items;
    expect(items).toContainEqual(expect.objectContaining({ id, purpose: 'own', name: 'ci runner' }));

    const revoked = await cs(['keys', 'revoke', id!], { key: key! });
    expect(revoked.code).toBe(0);
    expect(revoked.stdout).toContain('That was the key this command signed in with');
    await expect(live.client(key!).me()).rejects.toMatchObject({ status: 401 });
    const table = await cs(['keys', 'list'], { key: live.org.operator1.key });
    expect(table.stdout).toMatch(new RegExp(`${id}\\s+own\\s+ci runner\\s+operator1 \\(you\\)\\s+.+revoked`));

    // Another principal's keys are for admins and auditors.
    const other = await cs(['keys', 'list', '--principal', 'operator2'], { key: live.org.operator1.key });
    expect(other.code).toBe(4);
    const audited = await cs(['keys', 'list', '--principal', 'operator2'], { key: live.org.auditor.key });
    expect(audited.code).toBe(0);
    expect(audited.stdout).toContain('API keys of operator2');
  });

  it('org says the org is not two-person ready, with the server’s warning', async () => {
    const r = await cs(['org'], { key: live.org.auditor.key });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/two-person ready:\s+NO/);
    expect(r.stdout).toContain('warning: not yet two-person ready');
    const json = JSON.parse((await cs(['org', '--json'], { key: live.org.admin.key })).stdout);
    expect(json).toMatchObject({ two_person_ready: false });
  });
});

describe('configuration requests in a two-person-ready org', () => {
  let dave: SeededPrincipal;

  beforeAll(async () => {
    // An admin added by the installation, not by the seeded admin: a second person for it.
    const org = await live.client(live.org.admin.key).getOrg();
    const added = await addInstallationAdmin(live.tdb.handle.db, org.name, {
      name: 'dave',
      email: 'dave@example.test',
    });
    dave = await enrollPrincipal(
      live.tdb.handle.db,
      { id: added.admin.id, orgId: org.id, role: 'admin', kind: 'user', name: 'dave' },
      { id: added.key.id, key: added.key.key, createdBy: added.key.created_by },
    );
  });

  it('org reports readiness', async () => {
    const r = await cs(['org'], { key: dave.key });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/two-person ready:\s+yes/);
    expect(r.stdout).not.toContain('warning');
  });

  it('a key for someone else waits: keys mint --for shows the request, and the key works only after another admin approves', async () => {
    const erin = applied(
      await live.client(live.org.admin.key).createPrincipal({ name: 'erin', role: 'requester', email: null }),
    );
    const r = await cs(['keys', 'mint', '--for', 'erin', '--justification', 'erin joins the web team (HR-77)'], {
      key: live.org.admin.key,
    });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const requestId = new RegExp(`waits for a second admin: configuration request (${UUID})`).exec(r.stdout)?.[1];
    expect(requestId).toBeDefined();
    expect(r.stdout).toContain('it works once another admin approves');
    const key = /^\s+(cs_\S+)$/m.exec(r.stdout)?.[1];
    expect(key).toBeDefined();
    // Before the approval the key is nothing.
    await expect(live.client(key!).me()).rejects.toMatchObject({ status: 401 });

    const list = await cs(['config', 'list'], { key: dave.key });
    expect(list.code).toBe(0);
    const row = list.stdout.split('\n').find((l) => l.startsWith(requestId!)) ?? '';
    expect(row).toContain('pending');
    expect(row).toContain('api_key_create');
    expect(row).toContain('create an API key for erin');
    expect(row).toMatch(/\badmin\b/);
    expect(row).toContain('erin joins the web team (HR-77)');

    const show = await cs(['config', 'show', requestId!], { key: dave.key });
    expect(show.stdout).toContain('The change, as it will be applied');
    expect(show.stdout).toContain(`"principal_id": "${erin.id}"`);
    expect(show.stdout).toContain('Before you approve: The requesting admin saw this enrollment key');

    // The requester cannot approve its own change, and a second admin's enrollment key cannot either.
    const own = await cs(['config', 'approve', requestId!], { key: live.org.admin.key });
    expect(own.code).toBe(4);
    expect(own.stderr).toContain('two_person_integrity, HTTP 403');
    expect(own.stderr).toContain('another admin has to decide it');
    const enrolling = await cs(['config', 'approve', requestId!], { key: dave.enrollmentKey });
    expect(enrolling.code).toBe(4);
    expect(enrolling.stderr).toContain('enrollment_credential, HTTP 403');
    await expect(live.client(key!).me()).rejects.toMatchObject({ status: 401 });

    const ok = await cs(['config', 'approve', requestId!, '--note', 'HR-77 confirmed with erin'], { key: dave.key });
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('Approved and applied: create an API key for erin');
    expect(await live.client(key!).me()).toMatchObject({ id: erin.id, credential: { own: false } });
    const json = JSON.parse((await cs(['config', 'show', requestId!, '--json'], { key: live.org.auditor.key })).stdout);
    expect(json).toMatchObject({ state: 'approved', decided_by: dave.id, decision_note: 'HR-77 confirmed with erin' });
  });

  it('config reject needs a note, cancel a reason; neither changes anything; only admins and auditors read', async () => {
    const admin = live.client(live.org.admin.key);
    const frank = await admin.createPrincipal({ name: 'frank', role: 'operator', justification: 'on call rota' });
    const gina = await admin.createPrincipal({ name: 'gina', role: 'operator' });
    if (!isPendingConfiguration(frank) || !isPendingConfiguration(gina)) throw new Error('expected 202 answers');
    const f = frank.configuration_request.id;
    const g = gina.configuration_request.id;

    expect((await cs(['config', 'reject', f], { key: dave.key })).code).toBe(2);
    const rejected = await cs(['config', 'reject', f, '--note', 'frank is not on the rota'], { key: dave.key });
    expect(rejected.code).toBe(0);
    expect(rejected.stdout).toContain('Rejected: nothing changes');
    expect((await cs(['config', 'cancel', g], { key: live.org.admin.key })).code).toBe(2);
    const cancelled = await cs(['config', 'cancel', g, '--reason', 'wrong name'], { key: live.org.admin.key });
    expect(cancelled.code).toBe(0);
    expect(cancelled.stdout).toContain('Cancelled: nothing changes');
    const again = await cs(['config', 'approve', f], { key: dave.key });
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('already_decided, HTTP 409');

    const names = (await admin.listPrincipals({ limit: 500 })).items.map((p) => p.name);
    expect(names).not.toContain('frank');
    expect(names).not.toContain('gina');

    const all = JSON.parse(
      (await cs(['config', 'list', '--state', 'all', '--json'], { key: live.org.auditor.key })).stdout,
    );
    const states = Object.fromEntries((all.items as { id: string; state: string }[]).map((r) => [r.id, r.state]));
    expect(states).toMatchObject({ [f]: 'rejected', [g]: 'cancelled' });
    expect((await cs(['config', 'list', '--state', 'pending'], { key: dave.key })).stdout).toContain(
      'No pending configuration requests.',
    );
    const operator = await cs(['config', 'list'], { key: live.org.operator1.key });
    expect(operator.code).toBe(4);
    expect(operator.stderr).toContain('forbidden, HTTP 403');
  });
});
