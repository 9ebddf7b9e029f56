import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, loadConfig } from '@countersign/config';
import {
  createCheckpoint,
  generateSigningKey,
  keyringOf,
  loadOrCreateSigningKey,
  newestCheckpointKeys,
  verifyAuditChain,
} from '@countersign/db';
import { createLogger } from '@countersign/observability';
import {
  createTestDatabase,
  randomQueuePrefix,
  type SeededOrg,
  seedOrg,
  type TestDatabase,
} from '@countersign/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { auditStartupCheck } from './audit-startup.ts';

/**
 * The audit checkpoint signing key is anchored by the checkpoints it signed
 * (issue 20): deleting the key file and restarting used to make a new key
 * silently, and verification stayed green because checkpoints of a key the
 * verifier does not hold were skipped. Now the api and the reaper (their real
 * main.ts, against real PostgreSQL and Redis) refuse to start with one line
 * naming COUNTERSIGN_AUDIT_SIGNING_KEY_FILE and exit code 78, the verifier
 * (readiness `audit_chain`, GET /audit/verify, the reaper's schedule) reports
 * a newest checkpoint it cannot verify, and a rotation happens only when the
 * operator names the key being replaced.
 */
const require = createRequire(import.meta.url);
const TSX = join(dirname(require.resolve('tsx/package.json')), 'dist', 'esm', 'index.mjs');
const HERE = dirname(fileURLToPath(import.meta.url));
const MAIN = {
  api: join(HERE, 'main.ts'),
  reaper: join(HERE, '..', '..', 'reaper', 'src', 'main.ts'),
};
const work = mkdtempSync(join(tmpdir(), 'countersign-audit-key-'));
const KEY_FILE = join(work, 'keys', 'checkpoint-signing.pem');
let tdb: TestDatabase;
let org: SeededOrg;

beforeAll(async () => {
  tdb = await createTestDatabase();
  org = await seedOrg(tdb.handle.db);
});
afterAll(async () => {
  await tdb?.drop();
  rmSync(work, { recursive: true, force: true });
});

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer().listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? res(addr.port) : rej(new Error('no port'))));
    });
  });
}

interface Run {
  code: number | null;
  output: string;
  ready: boolean;
}

/** Starts a service; stops it once /readyz answers 200, or returns when it exits on its own. */
async function run(service: keyof typeof MAIN, env: Record<string, string> = {}): Promise<Run> {
  const metricsPort = await freePort();
  const child = spawn(process.execPath, ['--import', TSX, MAIN[service]], {
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      COUNTERSIGN_DATABASE_URL: tdb.appUrl,
      COUNTERSIGN_REDIS_URL: tdb.redisUrl,
      COUNTERSIGN_QUEUE_PREFIX: randomQueuePrefix(),
      COUNTERSIGN_METRICS_HOST: '127.0.0.1',
      COUNTERSIGN_METRICS_PORT: String(metricsPort),
      COUNTERSIGN_HTTP_HOST: '127.0.0.1',
      COUNTERSIGN_HTTP_PORT: String(await freePort()),
      COUNTERSIGN_LOG_LEVEL: 'warn',
      COUNTERSIGN_AUDIT_SIGNING_KEY_FILE: KEY_FILE,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const chunks: string[] = [];
  for (const s of [child.stdout, child.stderr]) s.on('data', (d: Buffer) => chunks.push(d.toString()));
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  let ready = false;
  const deadline = Date.now() + 45_000;
  while (child.exitCode === null && child.signalCode === null && Date.now() < deadline) {
    const ok = await fetch(`http://127.0.0.1:${metricsPort}/readyz`, { signal: AbortSignal.timeout(1_000) })
      .then((r) => r.ok)
      .catch(() => false);
    if (ok) {
      ready = true;
      child.kill('SIGTERM');
      break;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  if (!ready && child.exitCode === null) child.kill('SIGKILL');
  return { code: await exited, output: chunks.join(''), ready };
}

const keyInFile = async () => (await loadOrCreateSigningKey(KEY_FILE, { create: false })).key;
const rotationRecords = async () =>
  (
    await tdb.superuser<{ details: { from_key_id: string; to_key_id: string } }>(
      `SELECT details FROM audit_records WHERE org_id = $1 AND action = 'audit_signing_key_rotated' ORDER BY seq`,
      [org.orgId],
    )
  ).rows.map((r) => r.details);

// The steps build on each other: one installation's life.
describe.sequential('the audit signing key across restarts', () => {
  let firstKeyId = '';

  it('is made on first start (no checkpoint yet), and the api becomes ready', async () => {
    expect(await newestCheckpointKeys(tdb.handle)).toEqual(new Map());
    const r = await run('api');
    expect(r.ready, r.output).toBe(true);
    expect(existsSync(KEY_FILE)).toBe(true);
    expect(r.output).toContain('generated a new audit checkpoint signing key');
    const key = await keyInFile();
    firstKeyId = key.keyId;
    // The reaper signs checkpoints with it on its schedule; here, directly.
    await createCheckpoint(tdb.handle, key, org.orgId);
    expect(await newestCheckpointKeys(tdb.handle)).toEqual(new Map([[org.orgId, firstKeyId]]));
  });

  it('missing, with checkpoints in the database: api and reaper refuse to start (78) and make no key', async () => {
    rmSync(KEY_FILE);
    for (const service of ['api', 'reaper'] as const) {
      const r = await run(service);
      expect(r.ready, r.output).toBe(false);
      expect(r.code, r.output).toBe(78);
      expect(r.output).toContain(
        `countersign-${service}: audit signing key ${KEY_FILE} (COUNTERSIGN_AUDIT_SIGNING_KEY_FILE)`,
      );
      expect(r.output).toContain(`signed by key ${firstKeyId}`);
      expect(r.output).toContain(`COUNTERSIGN_AUDIT_SIGNING_KEY_ROTATE_FROM=${firstKeyId}`);
      expect(existsSync(KEY_FILE)).toBe(false);
    }
  });

  it('another key in the file: refused too, and the verifier (readiness, /audit/verify) reports it', async () => {
    const other = generateSigningKey();
    writeFileSync(KEY_FILE, String(other.privateKey.export({ type: 'pkcs8', format: 'pem' })), { mode: 0o600 });
    const r = await run('api');
    expect(r.code, r.output).toBe(78);
    expect(r.output).toContain('COUNTERSIGN_AUDIT_SIGNING_KEY_FILE');
    expect(r.output).toContain(
      `is key ${other.keyId}, but the newest audit checkpoints were signed by key ${firstKeyId}`,
    );

    // A process already running with the wrong key (or one started before a checkpoint existed) is caught
    // by the verifier: the newest checkpoint is one its key cannot verify. It used to pass as ok.
    const keyring = keyringOf(other.publicKey);
    const report = await verifyAuditChain(tdb.handle, org.orgId, { mode: 'full', keyring });
    expect(report).toMatchObject({ ok: false });
    expect(report.reason).toContain(`is signed by key ${firstKeyId}, not by the configured audit signing key`);
    const check = auditStartupCheck({ database: tdb.handle, mode: 'full', keyring, log: createLogger('t', 'silent') });
    await check.run();
    const status = await check.status();
    expect(status.ok).toBe(false);
    expect(status.detail).toContain('COUNTERSIGN_AUDIT_SIGNING_KEY_FILE');
  });

  it('an explicit rotation (ROTATE_FROM naming the old key) starts with a WARN, an audit record and a new checkpoint', async () => {
    const next = await keyInFile();
    const env = { COUNTERSIGN_AUDIT_SIGNING_KEY_ROTATE_FROM: firstKeyId };
    const api = await run('api', env);
    expect(api.ready, api.output).toBe(true);
    expect(api.output).toMatch(/"level":"warn".*audit signing key rotated from/);
    // The reaper starting with the same setting adds nothing: one record per org and key.
    const reaper = await run('reaper', env);
    expect(reaper.ready, reaper.output).toBe(true);
    expect(await rotationRecords()).toEqual([{ from_key_id: firstKeyId, to_key_id: next.keyId }]);
    expect(await newestCheckpointKeys(tdb.handle)).toEqual(new Map([[org.orgId, next.keyId]]));
    // The public half beside the key is the new one (it was the old key's).
    expect(readFileSync(`${KEY_FILE}.pub`, 'utf8')).toBe(next.publicKeyPem);
    const report = await verifyAuditChain(tdb.handle, org.orgId, { mode: 'full', keyring: keyringOf(next.publicKey) });
    expect(report).toMatchObject({ ok: true, first_bad_seq: null });

    // Without the setting the new key is simply the key.
    expect((await run('api')).ready).toBe(true);
  });

  it('the setting does not accept a later, unplanned replacement', async () => {
    rmSync(KEY_FILE);
    const r = await run('api', { COUNTERSIGN_AUDIT_SIGNING_KEY_ROTATE_FROM: firstKeyId });
    expect(r.code, r.output).toBe(78);
    expect(r.output).toContain('COUNTERSIGN_AUDIT_SIGNING_KEY_FILE');
    expect(existsSync(KEY_FILE)).toBe(false);
  });
});

describe('COUNTERSIGN_AUDIT_SIGNING_KEY_ROTATE_FROM', () => {
  const base = { COUNTERSIGN_DATABASE_URL: 'postgres://u:p@127.0.0.1/db' };
  it('is a key id or unset', () => {
    expect(loadConfig('api', base).auditSigningKeyRotateFrom).toBeNull();
    const id = 'a'.repeat(32);
    expect(
      loadConfig('api', { ...base, COUNTERSIGN_AUDIT_SIGNING_KEY_ROTATE_FROM: id }).auditSigningKeyRotateFrom,
    ).toBe(id);
    expect(() => loadConfig('api', { ...base, COUNTERSIGN_AUDIT_SIGNING_KEY_ROTATE_FROM: 'yes' })).toThrow(ConfigError);
  });
});
