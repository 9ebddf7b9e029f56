import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadIssuingCa } from '@countersign/ca';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';

/**
 * The scripts behind compose's one-shot services, run for real on this
 * machine (no Docker engine needed): secrets-init's passwords and files, the
 * Redis ACL it writes checked by a real redis-server, ca-init's offline step,
 * and the entrypoint's reading of _FILE variables for the CLI.
 */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const work = mkdtempSync(join(tmpdir(), 'countersign-compose-init-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as any;
const isRoot = process.getuid?.() === 0;
const has = (bin: string) => spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0;

function secretsInit(master: string, out: string): string {
  return execFileSync('sh', [join(ROOT, 'infra/docker/compose-secrets-init.sh')], {
    env: { PATH: process.env.PATH, SECRETS_MASTER_DIR: master, SECRETS_OUT_DIR: out },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Files of a directory with owner and mode, e.g. { 'database-url': '1000 400' }. */
function listing(dir: string): Record<string, string> {
  return Object.fromEntries(
    readdirSync(dir).map((f) => {
      const st = statSync(join(dir, f));
      return [f, `${st.uid} ${(st.mode & 0o777).toString(8)}`];
    }),
  );
}

describe.skipIf(!isRoot)('secrets-init (infra/docker/compose-secrets-init.sh)', () => {
  const master = join(work, 'master');
  const out = join(work, 'out');
  let firstRun = '';
  const readOut = (p: string) => readFileSync(join(out, p), 'utf8');

  it('gives each consumer its own directory, owned by the user it runs as, 0400 files in a 0500 directory', () => {
    firstRun = secretsInit(master, out);
    expect(listing(out)).toEqual({
      postgres: '999 500',
      redis: '999 500',
      migrate: '1000 500',
      app: '1000 500',
      audit: '1000 500',
      grafana: '472 500',
    });
    expect(listing(join(out, 'postgres'))).toEqual({ password: '999 400' });
    expect(listing(join(out, 'redis'))).toEqual({ 'users.acl': '999 400' });
    expect(listing(join(out, 'migrate'))).toEqual({
      'superuser-url': '1000 400',
      'owner-password': '1000 400',
      'app-password': '1000 400',
      'migration-url': '1000 400',
    });
    expect(listing(join(out, 'app'))).toEqual({ 'database-url': '1000 400', 'redis-url': '1000 400' });
    expect(listing(join(out, 'audit'))).toEqual({ 'signing.key': '1000 400', 'signing.key.pub': '1000 444' });
    expect(listing(join(out, 'grafana'))).toEqual({ 'admin-password': '472 400' });
    expect(statSync(master).mode & 0o777).toBe(0o700);
  });

  it('makes strong, distinct passwords that agree across files, and prints none of them', () => {
    const pg = readOut('postgres/password');
    const owner = readOut('migrate/owner-password');
    const app = readOut('migrate/app-password');
    const grafana = readOut('grafana/admin-password');
    for (const pw of [pg, owner, app, grafana]) expect(pw).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(new Set([pg, owner, app, grafana]).size).toBe(4);
    expect(readOut('migrate/superuser-url')).toBe(`postgres://postgres:${pg}@postgres:5432/postgres`);
    expect(readOut('migrate/migration-url')).toBe(`postgres://countersign_owner:${owner}@postgres:5432/countersign`);
    expect(readOut('app/database-url')).toBe(`postgres://countersign_app:${app}@postgres:5432/countersign`);
    // The services' file holds the application role only: never the owner's or the superuser's password.
    for (const f of ['app/database-url', 'app/redis-url']) {
      expect(readOut(f)).not.toContain(owner);
      expect(readOut(f)).not.toContain(pg);
    }
    const key = createPrivateKey(readOut('audit/signing.key'));
    expect(key.asymmetricKeyType).toBe('ed25519');
    expect(createPublicKey(key).export({ type: 'spki', format: 'pem' })).toBe(readOut('audit/signing.key.pub'));
    for (const secret of [pg, owner, app, grafana]) expect(firstRun).not.toContain(secret);
  });

  it('keeps every value on later runs, and rebuilds a lost consumer volume from them', () => {
    const before = ['migrate/superuser-url', 'app/database-url', 'app/redis-url', 'audit/signing.key'].map(readOut);
    rmSync(join(out, 'app'), { recursive: true, force: true });
    const again = secretsInit(master, out);
    expect(again).not.toContain('generated');
    expect(['migrate/superuser-url', 'app/database-url', 'app/redis-url', 'audit/signing.key'].map(readOut)).toEqual(
      before,
    );
  });

  it('writes the files docker-compose.yml points each service at, in the volumes it mounts', () => {
    const init = compose.services['secrets-init'];
    const outDirOf = new Map<string, string>(
      (init.volumes as string[]).map((v) => [v.split(':')[0] ?? '', v.split(':')[1] ?? '']),
    );
    for (const [name, s] of Object.entries(
      compose.services as Record<string, { environment?: object; volumes?: string[] }>,
    )) {
      for (const [key, value] of Object.entries(s.environment ?? {})) {
        if (!/_FILE$/.test(key) || !String(value).startsWith('/run/countersign/')) continue;
        const mount = (s.volumes ?? []).find((v) => String(value).startsWith(`${v.split(':')[1]}/`));
        expect(mount, `${name} ${key}`).toBeDefined();
        const volume = mount?.split(':')[0] ?? '';
        const inInit = outDirOf.get(volume);
        expect(inInit, `${volume} is written by secrets-init`).toMatch(/^\/out\//);
        const file = String(value).slice(`${mount?.split(':')[1]}/`.length);
        expect(existsSync(join(out, (inInit ?? '').slice('/out/'.length), file)), `${name} ${key}=${value}`).toBe(true);
      }
    }
  });

  it.skipIf(!has('redis-server'))(
    'the Redis ACL: the password opens everything, nothing else does, health may only PING',
    async () => {
      const sock = join(work, 'redis.sock');
      const redis = spawn(
        'redis-server',
        [
          '--port',
          '0',
          '--unixsocket',
          sock,
          '--aclfile',
          join(out, 'redis/users.acl'),
          '--save',
          '',
          '--appendonly',
          'no',
        ],
        { stdio: 'ignore' },
      );
      try {
        for (let i = 0; i < 50 && !existsSync(sock); i++) await new Promise((r) => setTimeout(r, 100));
        const cli = (...args: string[]) => {
          const r = spawnSync('redis-cli', ['-s', sock, '--no-auth-warning', ...args], { encoding: 'utf8' });
          return `${r.stdout}${r.stderr}`.trim();
        };
        const url = new URL(readOut('app/redis-url'));
        expect(url.username).toBe('default');
        expect(cli('--user', 'default', '--pass', url.password, 'config', 'get', 'maxmemory-policy')).toContain(
          'maxmemory-policy',
        );
        expect(cli('ping')).toMatch(/NOAUTH/);
        expect(cli('--user', 'default', '--pass', 'wrong', 'ping')).toMatch(/WRONGPASS|AUTH failed/);
        // The compose healthcheck's command, and what that user cannot do.
        expect(cli('--user', 'healthcheck', '--pass', '', 'ping')).toBe('PONG');
        expect(cli('--user', 'healthcheck', '--pass', '', 'keys', '*')).toMatch(/NOPERM/);
        expect(compose.services.redis.healthcheck.test.join(' ')).toContain("--user healthcheck --pass ''");
        expect(readOut('redis/users.acl')).not.toContain(url.password);
      } finally {
        redis.kill('SIGTERM');
      }
    },
  );
});

describe('ca-init (infra/docker/compose-ca-init.sh)', () => {
  const offline = join(work, 'ca-offline');
  const issuer = join(work, 'issuer-ca');
  const caInit = () =>
    execFileSync('sh', [join(ROOT, 'infra/docker/compose-ca-init.sh')], {
      env: {
        PATH: process.env.PATH,
        CA_OFFLINE_DIR: offline,
        CA_ISSUER_DIR: issuer,
        COUNTERSIGN_CLI: join(ROOT, 'packages/cli/bin/countersign.mjs'),
      },
      cwd: work,
      encoding: 'utf8',
    });

  it('runs the offline step once: root key in its own volume, the intermediate in the issuer volume', async () => {
    caInit();
    expect(readdirSync(offline).sort()).toEqual(['root.crt.pem', 'root.key.pem']);
    expect(readdirSync(issuer).sort()).toEqual(['intermediate.crt.pem', 'intermediate.key.pem', 'root.crt.pem']);
    await expect(loadIssuingCa({ dir: issuer })).resolves.toBeDefined();
    const cert = readFileSync(join(issuer, 'intermediate.crt.pem'), 'utf8');
    expect(caInit()).toContain('nothing to do');
    expect(readFileSync(join(issuer, 'intermediate.crt.pem'), 'utf8')).toBe(cert);
  }, 60_000);

  it('gives a lost issuer volume a new intermediate from the same root', async () => {
    const root = readFileSync(join(offline, 'root.crt.pem'), 'utf8');
    rmSync(issuer, { recursive: true });
    caInit();
    expect(readFileSync(join(issuer, 'root.crt.pem'), 'utf8')).toBe(root);
    await expect(loadIssuingCa({ dir: issuer })).resolves.toBeDefined();
  }, 60_000);
});

describe('entrypoint (infra/docker/entrypoint.sh): _FILE variables for the CLI', () => {
  const run = (env: Record<string, string>) =>
    spawnSync('sh', [join(ROOT, 'infra/docker/entrypoint.sh'), 'countersign', 'db', 'migrate'], {
      env: { PATH: process.env.PATH, ...env },
      encoding: 'utf8',
    });

  it('stops with code 78 when a file is unreadable or the value is also given directly', () => {
    const missing = run({ COUNTERSIGN_MIGRATION_DATABASE_URL_FILE: join(work, 'nope') });
    expect(missing.status).toBe(78);
    expect(missing.stderr).toContain('COUNTERSIGN_MIGRATION_DATABASE_URL_FILE names');
    const both = run({
      COUNTERSIGN_DATABASE_URL: 'postgres://x@y/z',
      COUNTERSIGN_DATABASE_URL_FILE: join(ROOT, 'package.json'),
    });
    expect(both.status).toBe(78);
    expect(both.stderr).toContain('COUNTERSIGN_DATABASE_URL and COUNTERSIGN_DATABASE_URL_FILE are both set');
  });
});
