import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initOfflineCa } from '@countersign/ca';
import { createTestDatabase, randomQueuePrefix, type TestDatabase } from '@countersign/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The issuer process (its main.ts) refuses to start, with one line naming the
 * variable and exit code 78, when its CA directory holds a root private key
 * or no intermediate; with the intermediate alone it starts and becomes ready.
 */
const require = createRequire(import.meta.url);
const TSX = join(dirname(require.resolve('tsx/package.json')), 'dist', 'esm', 'index.mjs');
const MAIN = join(dirname(fileURLToPath(import.meta.url)), 'main.ts');
const work = mkdtempSync(join(tmpdir(), 'countersign-issuer-ca-'));
let tdb: TestDatabase;

beforeAll(async () => {
  tdb = await createTestDatabase();
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

/** Starts the issuer; stops it once /readyz answers 200, or returns when it exits on its own. */
async function runIssuer(ca: Record<string, string>): Promise<Run> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', TSX, MAIN], {
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      COUNTERSIGN_DATABASE_URL: tdb.appUrl,
      COUNTERSIGN_REDIS_URL: tdb.redisUrl,
      COUNTERSIGN_QUEUE_PREFIX: randomQueuePrefix(),
      COUNTERSIGN_METRICS_HOST: '127.0.0.1',
      COUNTERSIGN_METRICS_PORT: String(port),
      COUNTERSIGN_LOG_LEVEL: 'warn',
      ...ca,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const chunks: string[] = [];
  for (const s of [child.stdout, child.stderr]) s.on('data', (d: Buffer) => chunks.push(d.toString()));
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  let ready = false;
  const deadline = Date.now() + 45_000;
  while (child.exitCode === null && child.signalCode === null && Date.now() < deadline) {
    const ok = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(1_000) })
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

describe('issuer start-up and its CA', () => {
  it('refuses a CA directory that holds the root key, naming COUNTERSIGN_CA_DIR', async () => {
    const { rootDir, issuerDir } = await initOfflineCa({ rootDir: join(work, 'offline-1') });
    copyFileSync(join(rootDir, 'root.key.pem'), join(issuerDir, 'root.key.pem'));
    const r = await runIssuer({ COUNTERSIGN_CA_DIR: issuerDir });
    expect(r.ready).toBe(false);
    expect(r.code).toBe(78);
    expect(r.output).toContain('countersign-issuer: invalid configuration: COUNTERSIGN_CA_DIR points at a directory');
    expect(r.output).toContain('root CA private key');
  });

  it('refuses an empty CA directory instead of creating a CA in it', async () => {
    const empty = join(work, 'empty');
    mkdirSync(empty);
    const r = await runIssuer({ COUNTERSIGN_CA_DIR: empty });
    expect(r.code).toBe(78);
    expect(r.output).toMatch(/COUNTERSIGN_CA_DIR \(.*\) holds no intermediate CA/);
    expect(readdirSync(empty)).toEqual([]);
  });

  it('refuses the root as its issuing CA by files, naming COUNTERSIGN_CA_CERT_FILE', async () => {
    const { rootDir } = await initOfflineCa({ rootDir: join(work, 'offline-2') });
    const r = await runIssuer({
      COUNTERSIGN_CA_CERT_FILE: join(rootDir, 'root.crt.pem'),
      COUNTERSIGN_CA_KEY_FILE: join(rootDir, 'root.key.pem'),
      COUNTERSIGN_CA_CHAIN_FILE: join(rootDir, 'root.crt.pem'),
    });
    expect(r.code).toBe(78);
    expect(r.output).toContain('invalid configuration: COUNTERSIGN_CA_CERT_FILE');
  });

  it('starts and becomes ready with the intermediate alone', async () => {
    const { issuerDir } = await initOfflineCa({ rootDir: join(work, 'offline-3') });
    const r = await runIssuer({ COUNTERSIGN_CA_DIR: issuerDir });
    expect(r.ready, r.output).toBe(true);
    expect(r.code).toBe(0);
  });
});
