import { spawn } from 'node:child_process';
import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LiveApi, startLiveApi } from '../../client/src/testing/live-api.ts';

/**
 * Runs the real `countersign` binary (bin/countersign.mjs, as `pnpm countersign`
 * does) against the real api listening on 127.0.0.1 over a test database.
 * Children are spawned asynchronously: the api answers from this process.
 */
const BIN = fileURLToPath(new URL('../bin/countersign.mjs', import.meta.url));

let live: LiveApi;
let home: string;

beforeAll(async () => {
  live = await startLiveApi();
  home = await mkdtemp(join(tmpdir(), 'cs-cli-home-'));
});
afterAll(async () => {
  await live?.close();
  if (home) await rm(home, { recursive: true, force: true });
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface CsOptions {
  key?: string | null;
  env?: Record<string, string>;
  input?: string;
  cwd?: string;
  home?: string;
  /** Called with everything written to stderr so far, on every write. */
  onStderr?: (soFar: string) => void;
}

function cs(args: string[], opts: CsOptions = {}): Promise<Run> {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    HOME: opts.home ?? home,
    NO_COLOR: '1',
    ...(opts.key !== null ? { COUNTERSIGN_URL: live.url } : {}),
    ...(opts.key ? { COUNTERSIGN_API_KEY: opts.key } : {}),
    ...opts.env,
  };
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env, cwd: opts.cwd ?? home, stdio: 'pipe' });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => {
      stdout += c;
    });
    child.stderr.on('data', (c) => {
      stderr += c;
      opts.onStderr?.(stderr);
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

const COMMANDS = [
  'login',
  'logout',
  'whoami',
  'approvals list',
  'approvals show',
  'approve',
  'reject',
  'void',
  'request',
  'renew',
  'wait',
  'audit verify',
];

describe('countersign CLI against a live api', () => {
  it('answers --help on every command, and documents the exit codes', async () => {
    const runs = await Promise.all(COMMANDS.map((c) => cs([...c.split(' '), '--help'], { key: null })));
    runs.forEach((r, i) => {
      expect(r.code, COMMANDS[i]).toBe(0);
      expect(r.stdout, COMMANDS[i]).toContain(`countersign ${COMMANDS[i]}`);
    });
    expect(runs[5]?.stdout).toContain('4  forbidden (403), including two-person integrity');
    const top = await cs(['--help'], { key: null });
    expect(top.code).toBe(0);
    for (const c of COMMANDS) expect(top.stdout).toContain(c.split(' ')[0]);
  });

  it('exits 2 on usage errors without calling the api, 3 when not signed in, 1 when unreachable', async () => {
    const bad = await cs(['approvals', 'list', '--bogus'], { key: live.org.operator1.key });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("Unknown option '--bogus'");
    expect(bad.stderr).toContain('countersign approvals list');
    expect((await cs(['approvals', 'list', '--state', 'maybe'], { key: live.org.operator1.key })).code).toBe(2);
    expect((await cs(['approve'], { key: live.org.operator1.key })).code).toBe(2);
    expect((await cs(['approve', 'not-an-id'], { key: live.org.operator1.key })).code).toBe(2);

    const nobody = await mkdtemp(join(tmpdir(), 'cs-cli-empty-'));
    const out = await cs(['approvals', 'list'], { key: null, home: nobody });
    expect(out.code).toBe(3);
    expect(out.stderr).toContain('countersign login --url URL');
    await rm(nobody, { recursive: true, force: true });

    const badKey = await cs(['approvals', 'list'], { key: 'cs_not_a_key' });
    expect(badKey.code).toBe(3);
    expect(badKey.stderr).toContain('unauthenticated, HTTP 401');

    const down = await cs(['approvals', 'list'], { env: { COUNTERSIGN_URL: 'http://127.0.0.1:1' }, key: 'x' });
    expect(down.code).toBe(1);
    expect(down.stderr).toContain('cannot reach http://127.0.0.1:1');
  });

  it('login stores the URL and key 0600 after checking them; env vars override the file', async () => {
    const h = await mkdtemp(join(tmpdir(), 'cs-cli-login-'));
    const refused = await cs(['login', '--url', live.url, '--key-stdin'], { key: null, home: h, input: 'cs_wrong\n' });
    expect(refused.code).toBe(3);
    await expect(stat(join(h, '.config/countersign/config.json'))).rejects.toThrow();

    const ok = await cs(['login', '--url', live.url, '--key-stdin'], {
      key: null,
      home: h,
      input: `${live.org.operator2.key}\n`,
    });
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain('as operator2 (operator)');
    const file = join(h, '.config/countersign/config.json');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await stat(join(h, '.config/countersign'))).mode & 0o777).toBe(0o700);
    const saved = JSON.parse(await readFile(file, 'utf8'));
    expect(saved).toMatchObject({ url: live.url, api_key: live.org.operator2.key });
    expect(ok.stdout).not.toContain(live.org.operator2.key);

    const me = await cs(['whoami'], { key: null, home: h });
    expect(me.code).toBe(0);
    expect(me.stdout).toContain('operator2 (operator)');
    // COUNTERSIGN_API_KEY wins over the stored key.
    const override = await cs(['whoami'], { key: live.org.auditor.key, home: h });
    expect(override.stdout).toContain('auditor (auditor)');

    expect((await cs(['logout'], { key: null, home: h })).code).toBe(0);
    await expect(stat(file)).rejects.toThrow();
    await rm(h, { recursive: true, force: true });
  });

  it('lists the queue as a readable table with filters, and as JSON', async () => {
    const r = await live.requestGated('table.example.test', ['www-table.example.test']);
    const list = await cs(['approvals', 'list'], { key: live.org.operator1.key });
    expect(list.code).toBe(0);
    const [header, ...rows] = list.stdout.trim().split('\n');
    expect(header).toMatch(
      /^ID\s+STATE\s+REQUESTER\s+PROFILE\s+ENV\s+DOMAINS\s+VOTES\s+REQUESTED\s+EXPIRES\s+JUSTIFICATION$/,
    );
    const row = rows.find((l) => l.startsWith(r.approval!.id));
    expect(row).toBeDefined();
    expect(row).toMatch(
      /pending\s+requester\s+production-web\s+production\s+table\.example\.test, www-table\.example\.test\s+0\/1\s+\S+ ago\s+in 6d 23h\s+deploy table/,
    );

    const json = await cs(['approvals', 'list', '--json', '--requester', 'requester', '--profile', 'production-web'], {
      key: live.org.operator1.key,
    });
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.stdout) as { items: { id: string; requested_by: string }[] };
    expect(parsed.items.map((a) => a.id)).toContain(r.approval!.id);
    expect(parsed.items.every((a) => a.requested_by === live.org.requester.id)).toBe(true);

    const none = await cs(['approvals', 'list', '--profile', 'development-web'], { key: live.org.operator1.key });
    expect(none.stdout).toContain('No pending approval requests.');
    const unknown = await cs(['approvals', 'list', '--profile', 'nope'], { key: live.org.operator1.key });
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('profiles: ');
  });

  it('refuses the requester its own approval with exit 4 and the server’s words; approves for another', async () => {
    const r = await live.requestGated('tpi-cli.example.test', [], live.org.operator1.key);
    const own = await cs(['approve', r.approval!.id, '--note', 'lgtm'], { key: live.org.operator1.key });
    expect(own.code).toBe(4);
    expect(own.stderr).toContain('two-person integrity');
    expect(own.stderr).toContain('two_person_integrity, HTTP 403');

    const noNote = await cs(['reject', r.approval!.id], { key: live.org.operator2.key });
    expect(noNote.code).toBe(2);
    expect(noNote.stderr).toContain('--note is required');

    const show = await cs(['approvals', 'show', r.approval!.id], { key: live.org.operator2.key });
    expect(show.code).toBe(0);
    expect(show.stdout).toContain('deploy tpi-cli.example.test for the checkout service');
    expect(show.stdout).toContain('New certificate: nothing to compare.');

    const yes = await cs(['approve', r.approval!.id, '--note', 'reviewed CHG-1042'], { key: live.org.operator2.key });
    expect(yes.code).toBe(0);
    expect(yes.stdout).toContain('Approved (1/1 votes)');
    // The admin created operator1 (no second person for it), so the decided request is tried by operator2 again.
    const again = await cs(['approve', r.approval!.id], { key: live.org.operator2.key });
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/already_decided, HTTP 409/);
  });

  it('voids for admins only', async () => {
    const r = await live.requestGated('void-cli.example.test');
    const op = await cs(['void', r.approval!.id, '--reason', 'duplicate'], { key: live.org.operator1.key });
    expect(op.code).toBe(4);
    const admin = await cs(['void', r.approval!.id, '--reason', 'duplicate of CHG-1041'], { key: live.org.admin.key });
    expect(admin.code).toBe(0);
    expect(admin.stdout).toContain('Voided');
  });

  it('requests with a key made locally (0600), waits through approval and issuance, and writes the chain', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cs-cli-req-'));
    const keyPath = join(dir, 'cli.key.pem');
    const req = await cs(
      [
        'request',
        '--profile',
        'production-web',
        '--cn',
        'cli.example.test',
        '--san',
        'www-cli.example.test',
        '--justification',
        'payments edge, CHG-2001',
        '--key-out',
        keyPath,
        '--json',
      ],
      { key: live.org.requester.key, cwd: dir },
    );
    expect(req.stderr).toBe('');
    expect(req.code).toBe(0);
    const submitted = JSON.parse(req.stdout) as {
      job: { id: string };
      approval: { id: string };
      certificate: { id: string };
    };
    expect((await stat(keyPath)).mode & 0o777).toBe(0o600);
    const privateKey = createPrivateKey(await readFile(keyPath, 'utf8'));
    expect(privateKey.asymmetricKeyType).toBe('ec');

    // A second request must not silently replace the key.
    const clash = await cs(
      [
        'request',
        '--profile',
        'production-web',
        '--cn',
        'cli.example.test',
        '--justification',
        'x',
        '--key-out',
        keyPath,
      ],
      { key: live.org.requester.key, cwd: dir },
    );
    expect(clash.code).toBe(2);
    expect(clash.stderr).toContain('already exists');

    const outPath = join(dir, 'cli.pem');
    let sawAwaiting: () => void = () => {};
    const awaiting = new Promise<void>((r) => {
      sawAwaiting = r;
    });
    const waiting = cs(['wait', submitted.job.id, '--out', outPath, '--interval', '200ms', '--timeout', '50s'], {
      key: live.org.requester.key,
      cwd: dir,
      onStderr: (text) => {
        if (text.includes('awaiting approval')) sawAwaiting();
      },
    });
    // Decide only once the waiting CLI has shown the request as awaiting approval.
    await awaiting;
    await live.client(live.org.operator1.key).approve(submitted.approval.id, { note: 'ok' });
    expect((await live.issue(submitted.job.id)).status).toBe('issued');
    const done = await waiting;
    expect(done.stderr).toContain('awaiting approval (0/1 votes, expires in 6d 23h)');
    expect(done.code).toBe(0);
    expect(done.stdout).toContain(`Wrote the PEM chain (leaf, then issuing chain) to ${outPath}`);

    const pem = await readFile(outPath, 'utf8');
    const certs = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
    expect(certs.length).toBeGreaterThanOrEqual(2);
    const leaf = new X509Certificate(certs[0]!);
    expect(leaf.subjectAltName).toContain('DNS:www-cli.example.test');
    // The certificate carries the key generated on this machine: only the CSR travelled.
    const spki = (k: ReturnType<typeof createPublicKey>) => k.export({ type: 'spki', format: 'der' }).toString('hex');
    expect(spki(leaf.publicKey)).toBe(spki(createPublicKey(privateKey)));
    expect(leaf.checkIssued(new X509Certificate(certs[1]!))).toBe(true);

    // Renewal without --new-key reuses the key; `approvals show` says so.
    const renew = await cs(['renew', submitted.certificate.id, '--justification', 'routine', '--json'], {
      key: live.org.requester.key,
      cwd: dir,
    });
    expect(renew.code).toBe(0);
    const renewal = JSON.parse(renew.stdout) as { approval: { id: string }; job: { id: string } };
    const show = await cs(['approvals', 'show', renewal.approval.id], { key: live.org.operator1.key });
    expect(show.stdout).toContain('kind:');
    expect(show.stdout).toContain('renewal');
    expect(show.stdout).toMatch(/key:\s+reused/);
    expect(show.stdout).toContain('www-cli.example.test');

    // A rejected request ends `wait` with exit 1 and the approver's note.
    await live.client(live.org.operator2.key).reject(renewal.approval.id, { note: 'not during the freeze' });
    const rejected = await cs(['wait', renewal.job.id, '--interval', '100ms'], {
      key: live.org.requester.key,
      cwd: dir,
    });
    expect(rejected.code).toBe(1);
    expect(rejected.stderr).toContain('not during the freeze');
    await rm(dir, { recursive: true, force: true });
  });

  it('wait gives up with exit 5 at --timeout', async () => {
    const r = await live.requestGated('slow.example.test');
    const t = await cs(['wait', r.job.id, '--timeout', '1s', '--interval', '200ms', '--out', '-'], {
      key: live.org.requester.key,
    });
    expect(t.code).toBe(5);
    expect(t.stderr).toContain('gave up after 1s');
    expect(t.stdout).toBe('');
  });

  it('removes the key it made when the api refuses the request', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cs-cli-refused-'));
    const keyPath = join(dir, 'k.pem');
    const r = await cs(
      [
        'request',
        '--profile',
        'production-web',
        '--cn',
        'evil.example.org',
        '--justification',
        'x',
        '--key-out',
        keyPath,
      ],
      { key: live.org.requester.key, cwd: dir },
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('domain_not_allowed, HTTP 422');
    await expect(stat(keyPath)).rejects.toThrow();
    await rm(dir, { recursive: true, force: true });
  });

  it('audit verify reports the chain (or says the server lacks the route)', async () => {
    const doc = (await (await fetch(`${live.url}/openapi.json`)).json()) as { paths: Record<string, unknown> };
    const r = await cs(['audit', 'verify'], { key: live.org.auditor.key });
    if (doc.paths['/api/v1/audit/verify']) {
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/Audit chain OK: \d+ records? checked/);
      const forbidden = await cs(['audit', 'verify'], { key: live.org.requester.key });
      expect(forbidden.code).toBe(4);
    } else {
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('does not offer GET /api/v1/audit/verify');
    }
  });
});
