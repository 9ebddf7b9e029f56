import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChaosReport } from '../chaos/harness.ts';

/**
 * The chaos harness's short profile, as CI runs it: `pnpm chaos --seed 1
 * --requests 150 --profile ci` against its own stack (PostgreSQL with fsync,
 * Redis with AOF, two replicas of every worker), with SIGKILLs,
 * pg_terminate_backend, a Redis restart without its data, a FLUSHALL and a
 * PostgreSQL restart while the workload runs. The run must end clean (exit 0,
 * no violation), and the faults and outcomes it promises must really have
 * happened, so a run that silently did nothing cannot pass: among them the
 * refused attempts to decide with an enrollment key and by the requester's
 * creator (SPEC §1.6), and the checks of votes, decisions and issued names
 * on real rows.
 */
const ROOT = resolve(import.meta.dirname, '..', '..');
const SEED = process.env.CHAOS_SEED ?? '1';
const REQUESTS = process.env.CHAOS_REQUESTS ?? '150';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'countersign-chaos-e2e-'));
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

function runCli(args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((res) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'test', 'chaos', 'chaos.ts'), ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH, HOME: process.env.HOME },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (c: Buffer) => {
      output += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      output += c.toString();
    });
    child.on('exit', (code) => res({ code, output }));
  });
}

describe('chaos harness (CI profile)', () => {
  it(`seed ${SEED}, ${REQUESTS} requests under faults: no violation`, { timeout: 240_000 }, async () => {
    const json = join(dir, 'report.json');
    const { code, output } = await runCli(['--seed', SEED, '--requests', REQUESTS, '--profile', 'ci', '--json', json]);
    const summary = output.slice(output.indexOf('\nchaos run:'));
    console.info(summary);
    const report = JSON.parse(await readFile(json, 'utf8')) as ChaosReport;
    expect(report.violations, summary).toEqual([]);
    expect(code).toBe(0);

    // The faults really happened...
    const f = report.faults.byKind;
    expect(f.kill).toBeGreaterThanOrEqual(3);
    expect(f['pg-terminate']).toBeGreaterThanOrEqual(1);
    expect(f['redis-wipe']).toBe(1);
    expect(f.flushall).toBe(1);
    expect(f['pg-restart']).toBe(1);
    expect(report.faults.notRecovered).toBe(0);
    // ...while requests went through both channels and reached every kind of end.
    expect(report.accepted.http).toBeGreaterThan(0);
    expect(report.accepted.queue).toBeGreaterThan(0);
    expect(report.accepted.http + report.accepted.queue + report.accepted.refused).toBe(Number(REQUESTS));
    const a = report.figures?.approvals ?? {};
    for (const state of ['approved', 'rejected', 'voided', 'expired']) expect(a[state] ?? 0, state).toBeGreaterThan(0);
    expect(report.figures?.certificates).toBeGreaterThan(0);
    expect(report.figures?.mails.sinkMessages).toBeGreaterThan(0);
    expect(report.figures?.audit.decisionRecords).toBeGreaterThan(0);
    expect(report.quiescent).toBe(true);
    // ...with every kind of refused decision attempt made (each answer checked by the driver)...
    const noise = report.client.noise ?? {};
    for (const kind of ['self', 'outsider', 'enrollment', 'related']) expect(noise[kind] ?? 0, kind).toBeGreaterThan(0);
    // ...and the no-single-person and approved-names checks ran on real rows.
    const gate = report.figures?.gate;
    expect(gate?.votes).toBeGreaterThan(0);
    expect(gate?.decisions).toBeGreaterThan(0);
    expect(gate?.certificateNames).toBe(report.figures?.certificates);
  });
});
