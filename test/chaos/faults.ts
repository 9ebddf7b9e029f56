import { readFile } from 'node:fs/promises';
import { createRedis } from '@countersign/queues';
import type { ServiceProcess, Stack } from '@countersign/stack';
import type pg from 'pg';
import type { FaultKind, FaultProfile } from './plan.ts';
import type { Prng } from './prng.ts';

/**
 * Injects the faults of a run, one after another (a SIGSTOP runs beside the
 * others, since it has to outlast a lock), and measures how long the stack
 * takes to answer ready again after each: every service's /readyz and the
 * api's. The mandatory faults always happen; extra ones follow while the
 * workload runs.
 */
export interface FaultRecord {
  readonly kind: FaultKind;
  readonly target: string;
  readonly detail: string;
  readonly startedAt: number;
  /** When the fault was over: the process restarted or resumed, the server back. */
  endedAt: number;
  /** When every service answered ready again (null: not within the limit). */
  recoveredAt: number | null;
}

export interface FaultOptions {
  readonly stack: Stack;
  readonly rng: Prng;
  readonly profile: FaultProfile;
  /** Superuser pool on the stack's database. */
  readonly su: pg.Pool;
  /** True once the workload has finished: no extra faults after that. */
  readonly loadDone: () => boolean;
  readonly log: (line: string) => void;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** BullMQ's default lock (issuer, reaper, api intake); the notifier's is its delivery lease (4 x SMTP timeout). */
export const LOCK_MS: Record<string, number> = { issuer: 30_000, reaper: 30_000, notifier: 20_000 };

/** A service that exited without being killed: a violation, restarted as a supervisor would. */
export interface Crash {
  readonly id: string;
  readonly at: number;
  readonly tail: string;
}

export class FaultInjector {
  readonly records: FaultRecord[] = [];
  readonly crashes: Crash[] = [];
  private readonly stopped = new Set<ServiceProcess>();
  /** Killed on purpose and not restarted yet. */
  private readonly killed = new Set<ServiceProcess>();
  private stopTask: Promise<void> | null = null;
  private watchdog: NodeJS.Timeout | null = null;

  constructor(private readonly o: FaultOptions) {}

  async run(): Promise<void> {
    const { rng, profile } = this.o;
    const mandatory = rng.shuffle(profile.mandatory);
    const hasExtra = Object.values(profile.extra).some((w) => (w ?? 0) > 0);
    await sleep(rng.int(1_000, 3_000));
    for (let n = 0; n < profile.maxFaults; n++) {
      let kind = mandatory.shift();
      if (!kind) {
        if (!hasExtra || this.o.loadDone()) break;
        kind = rng.weighted(profile.extra as Record<FaultKind, number>);
      }
      await this.inject(kind);
      await sleep(rng.int(profile.gapMs[0], profile.gapMs[1]));
    }
    await this.stopTask;
  }

  /** Restarts (and records) any service that died on its own, until unwatch(). */
  watch(): void {
    const { stack } = this.o;
    let checking = false;
    this.watchdog = setInterval(() => {
      if (checking) return;
      checking = true;
      void (async () => {
        for (const s of stack.services) {
          if (s.running() || this.killed.has(s)) continue;
          const log = s.logFile ? await readFile(s.logFile, 'utf8').catch(() => '') : '';
          const tail = log
            .split('\n')
            .filter((l) => l.trim() && !l.startsWith('{'))
            .slice(0, 6)
            .join(' | ');
          this.crashes.push({ id: s.id, at: Date.now(), tail: tail.slice(0, 600) });
          this.o.log(`CRASH: ${s.id} exited on its own (${tail.slice(0, 300)}); restarting it`);
          s.start();
        }
      })().finally(() => {
        checking = false;
      });
    }, 500);
  }

  unwatch(): void {
    if (this.watchdog) clearInterval(this.watchdog);
  }

  /** End of the last fault (0 when none). */
  get lastFaultEnd(): number {
    return Math.max(0, ...this.records.map((r) => r.endedAt));
  }

  private async inject(kind: FaultKind): Promise<void> {
    const { rng, stack, profile } = this.o;
    const startedAt = Date.now();
    const rec = (target: string, detail: string): FaultRecord => {
      const r: FaultRecord = { kind, target, detail, startedAt, endedAt: Date.now(), recoveredAt: null };
      this.records.push(r);
      this.o.log(`fault ${this.records.length}: ${kind} ${target} ${detail}`);
      return r;
    };
    switch (kind) {
      case 'kill': {
        const candidates = stack.services.filter((s) => s.running() && !this.stopped.has(s));
        const target = rng.pick(candidates);
        const down = rng.int(profile.killDownMs[0], profile.killDownMs[1]);
        this.killed.add(target);
        target.signal('SIGKILL');
        await target.exited();
        await sleep(down);
        target.start();
        this.killed.delete(target);
        await this.recovered(rec(target.id, `SIGKILL, restarted after ${down} ms`));
        return;
      }
      case 'stop': {
        if (this.stopTask) return this.inject('kill');
        const candidates = stack.services.filter((s) => s.name in LOCK_MS && s.running() && !this.stopped.has(s));
        const target = rng.pick(candidates);
        const pause = (LOCK_MS[target.name] ?? 30_000) + rng.int(3_000, 8_000);
        this.stopped.add(target);
        target.signal('SIGSTOP');
        this.o.log(`fault: SIGSTOP ${target.id} for ${pause} ms`);
        this.stopTask = (async () => {
          await sleep(pause);
          target.signal('SIGCONT');
          this.stopped.delete(target);
          await this.recovered(rec(target.id, `SIGSTOP for ${pause} ms (past its ${LOCK_MS[target.name]} ms lock)`));
          this.stopTask = null;
        })();
        return;
      }
      case 'redis-wipe': {
        const redis = stack.redis;
        if (!redis) throw new Error('the chaos stack runs its own Redis');
        const down = rng.int(profile.redisDownMs[0], profile.redisDownMs[1]);
        await redis.restart({ wipe: true, downtimeMs: down });
        await this.recovered(rec('redis', `restarted without its AOF after ${down} ms down`));
        return;
      }
      case 'flushall': {
        const client = createRedis(stack.redisUrl, 'worker');
        client.on('error', () => {});
        try {
          await client.flushall();
        } finally {
          client.disconnect();
        }
        await this.recovered(rec('redis', 'FLUSHALL'));
        return;
      }
      case 'pg-terminate': {
        const { rows } = await this.o.su.query<{ n: string }>(
          `SELECT count(pg_terminate_backend(pid))::text AS n FROM pg_stat_activity
           WHERE application_name LIKE 'countersign-%' AND pid <> pg_backend_pid()`,
        );
        await this.recovered(rec('postgres', `pg_terminate_backend of ${rows[0]?.n ?? 0} service connections`));
        return;
      }
      case 'pg-restart': {
        const postgres = stack.postgres;
        if (!postgres) throw new Error('the chaos stack runs its own PostgreSQL');
        const mode = rng.chance(0.5) ? 'immediate' : 'fast';
        const down = rng.int(profile.pgDownMs[0], profile.pgDownMs[1]);
        await postgres.restart({ mode, downtimeMs: down });
        await this.recovered(rec('postgres', `${mode} restart, ${down} ms down`));
        return;
      }
    }
  }

  /** Every running (not stopped) service and the api answer ready; the time is recorded on the fault. */
  private async recovered(r: FaultRecord, limitMs = 120_000): Promise<void> {
    const deadline = Date.now() + limitMs;
    const { stack } = this.o;
    const ready = async (url: string) => {
      try {
        const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
        await res.arrayBuffer();
        return res.ok;
      } catch {
        return false;
      }
    };
    let waiting: string[] = [];
    while (Date.now() < deadline) {
      const targets = [
        { id: 'api (HTTP)', url: `${stack.apiUrl}/readyz` },
        ...stack.services
          .filter((s) => !this.stopped.has(s))
          .map((s) => ({ id: s.id, url: `${stack.metricsUrl(s)}/readyz` })),
      ];
      const answers = await Promise.all(targets.map((t) => ready(t.url)));
      waiting = targets.filter((_, i) => !answers[i]).map((t) => t.id);
      if (waiting.length === 0) {
        r.recoveredAt = Date.now();
        return;
      }
      await sleep(200);
    }
    this.o.log(`fault ${r.kind} ${r.target}: not ready again within ${limitMs} ms (waiting for ${waiting.join(', ')})`);
  }
}
