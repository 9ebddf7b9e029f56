import { type ChildProcess, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '@countersign/devstack';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, type Pipeline, sleep, startPipeline } from '../../notifier/src/test/pipeline-harness.ts';

/** Two reapers as real processes (their main.ts) on one database and one Redis. */
const require = createRequire(import.meta.url);
const TSX = join(dirname(require.resolve('tsx/package.json')), 'dist', 'esm', 'index.mjs');
const MAIN = join(dirname(fileURLToPath(import.meta.url)), 'main.ts');

let p: Pipeline;
const children: ChildProcess[] = [];
beforeAll(async () => {
  p = await startPipeline();
});
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await p?.close();
});

function startReaperProcess(metricsPort: number, output: string[]): ChildProcess {
  const child = spawn(process.execPath, ['--import', TSX, MAIN], {
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      COUNTERSIGN_DATABASE_URL: p.tdb.appUrl,
      COUNTERSIGN_REDIS_URL: p.redisUrl,
      COUNTERSIGN_QUEUE_PREFIX: p.prefix,
      COUNTERSIGN_METRICS_HOST: '127.0.0.1',
      COUNTERSIGN_METRICS_PORT: String(metricsPort),
      COUNTERSIGN_REAPER_EXPIRE_INTERVAL: '1s',
      COUNTERSIGN_REAPER_GAUGE_INTERVAL: '1s',
      COUNTERSIGN_REAPER_BATCH_SIZE: '2',
      COUNTERSIGN_LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  for (const s of [child.stdout, child.stderr]) s?.on('data', (d: Buffer) => output.push(d.toString()));
  children.push(child);
  return child;
}

async function scrape(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  return res.text();
}

/** Sum of a metric's samples whose label set contains every `needle`. */
function sample(text: string, name: string, needles: string[]): number {
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`) && needles.every((n) => l.includes(n)))
    .reduce((a, l) => a + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

describe('two reaper processes', () => {
  it('expire each stale request once between them, export the gauges, and stop cleanly on SIGTERM', async () => {
    const profileId = await p.gatedProfile({ approval_timeout_seconds: 1 });
    const other = await p.gatedProfile({});
    const ids: string[] = [];
    for (let i = 0; i < 10; i++)
      ids.push((await p.submit(p.org.requester, profileId, `proc${i}.example.test`)).approvalId);
    await p.submit(p.org.requester, other, 'stays.example.test');
    await sleep(1_100);

    const ports = [await freePort(), await freePort()];
    const output: string[] = [];
    const reapers = ports.map((port) => startReaperProcess(port, output));
    await eventually(
      'all ten expired',
      async () =>
        Number(
          (await p.tdb.superuser<{ n: string }>(`SELECT count(*) n FROM approval_requests WHERE state = 'expired'`))
            .rows[0]?.n,
        ) === 10,
      30_000,
    ).catch((err: unknown) => {
      throw new Error(`${String(err)}\n${output.join('')}`);
    });
    const audit = await p.tdb.superuser<{ resource_id: string; n: string }>(
      `SELECT resource_id, count(*) n FROM audit_records WHERE action = 'approval_expired' GROUP BY resource_id`,
    );
    expect(audit.rows.map((r) => r.resource_id).sort()).toEqual([...ids].sort());
    expect(audit.rows.every((r) => r.n === '1')).toBe(true);

    await sleep(1_500); // a gauge refresh on both
    const texts = await Promise.all(ports.map(scrape));
    const expired = texts.map((t) =>
      sample(t, 'countersign_approval_decisions_total', ['outcome="expired"', `profile_id="${profileId}"`]),
    );
    expect(expired[0]! + expired[1]!).toBe(10);
    for (const t of texts) {
      expect(sample(t, 'countersign_approvals_pending', [`profile_id="${other}"`])).toBe(1);
      expect(sample(t, 'countersign_approvals_pending', [`profile_id="${profileId}"`])).toBe(0);
      expect(t).toMatch(/countersign_queue_jobs\{[^}]*queue="notifications"[^}]*state="waiting"[^}]*\} \d+/);
      expect(sample(t, 'countersign_audit_chain_ok', [])).toBe(1);
    }

    for (const r of reapers) r.kill('SIGTERM');
    await Promise.all(
      reapers.map((r) => new Promise((res) => (r.exitCode !== null ? res(null) : r.once('exit', res)))),
    );
    expect(reapers.map((r) => r.exitCode)).toEqual([0, 0]);
  });
});
