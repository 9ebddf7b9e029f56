import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateIntakeKeyPair } from '@countersign/client/queue';
import { createRedis, openQueue } from '@countersign/queues';
import { type Stack, startStack } from '@countersign/stack';
import pg from 'pg';
import { type CheckResult, runChecks } from './checks.ts';
import { Driver, type IntakeAccounts, type Principal, type Principals, type ProfileIds } from './driver.ts';
import { FaultInjector, type FaultRecord } from './faults.ts';
import {
  FAULT_KINDS,
  FAULT_PROFILES,
  type FaultKind,
  type PrincipalName,
  planWorkload,
  SHORT_TIMEOUT_MS,
} from './plan.ts';
import { createPrng } from './prng.ts';

/**
 * One chaos run: the real stack (two replicas of every worker, PostgreSQL
 * with fsync on, Redis with AOF, the SMTP sink), a seeded workload through
 * HTTP and the intake queue, faults injected meanwhile, then quiescence and
 * the checks of checks.ts.
 */
export interface ChaosOptions {
  readonly seed: number;
  readonly requests: number;
  readonly profile: 'ci' | 'full';
  readonly concurrency: number;
  /** Keep the data directory (logs, databases, mail) even when the run is clean. */
  readonly keep: boolean;
  readonly dataDir?: string | undefined;
  readonly log: (line: string) => void;
  /** Aborting (Ctrl-C) stops the stack and ends the process. */
  readonly signal?: AbortSignal | undefined;
}

export interface ChaosReport {
  seed: number;
  requests: number;
  profile: string;
  concurrency: number;
  dataDir: string;
  kept: boolean;
  durationsMs: { startup: number; load: number; quiescence: number; checks: number; total: number };
  accepted: { http: number; queue: number; renewals: number; refused: number };
  client: {
    decisions: number;
    decisions200: number;
    httpRetries: number;
    queueResubmits: number;
    /** Decision attempts that must be refused, by kind (self, outsider, double-vote, enrollment, related). */
    noise?: Record<string, number>;
  };
  faults: {
    byKind: Record<FaultKind, number>;
    recoveryMs: Partial<Record<FaultKind, { n: number; median: number; max: number }>>;
    notRecovered: number;
    list: FaultRecord[];
  };
  lastFaultToQuiescenceMs: number;
  quiescent: boolean;
  figures: CheckResult['figures'] | null;
  violations: string[];
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function call(apiUrl: string, key: string, method: string, path: string, body?: unknown) {
  const res = await fetch(`${apiUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = (await res.json()) as Record<string, unknown>;
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
  return json;
}

/**
 * erin (operator) and frank (requester) join the demo org; a 2-of-3 profile and a 5 s profile join its two.
 * As in a real deployment (SPEC §1.6), the admin creates each principal and an enrollment key for it, and the
 * principal mints its own key with that (POST /api/v1/me/api-keys, what `countersign enroll` does): only the
 * own key decides. The demo org has one admin, who created everyone else, so it is not two-person ready and
 * these changes apply at once (no configuration requests).
 */
async function setUpOrg(
  stack: Stack,
): Promise<{ principals: Principals; intake: IntakeAccounts; profiles: ProfileIds; domain: string }> {
  const demo = stack.demo;
  if (!demo) throw new Error('the chaos stack seeds the demo org');
  const { admin, alice, bob, carol, dave } = demo.principals;
  const adminKey = admin.key;
  /** An admin-made key for the principal: an enrollment key (a configuration request would mean a second admin). */
  const enrollmentKey = async (principalId: string) => {
    const k = await call(stack.apiUrl, adminKey, 'POST', `/api/v1/principals/${principalId}/api-keys`, {
      name: 'chaos enrollment',
    });
    if (k.purpose !== 'enrollment' || typeof k.key !== 'string') {
      throw new Error(`an admin-made key for ${principalId} is not an enrollment key: ${JSON.stringify(k)}`);
    }
    return k.key;
  };
  /** The principal mints its own key with its enrollment key; the api must see it as own. */
  const enroll = async (enrollment: string) => {
    const own = await call(stack.apiUrl, enrollment, 'POST', '/api/v1/me/api-keys', { name: 'chaos' });
    const me = await call(stack.apiUrl, String(own.key), 'GET', '/api/v1/me');
    const credential = me.credential as { own?: unknown } | undefined;
    if (own.purpose !== 'own' || credential?.own !== true) {
      throw new Error(`the key ${String(me.name)} minted for itself is not its own: ${JSON.stringify(me)}`);
    }
    return String(own.key);
  };
  const make = async (name: string, role: string, kind: 'user' | 'service' = 'user'): Promise<Principal> => {
    const p = await call(stack.apiUrl, adminKey, 'POST', '/api/v1/principals', {
      name,
      role,
      kind,
      email: `${name}@${demo.domain}`,
    });
    if (typeof p.id !== 'string') throw new Error(`creating ${name} did not create it: ${JSON.stringify(p)}`);
    const enrollment = await enrollmentKey(p.id);
    return { id: p.id, key: await enroll(enrollment), enrollmentKey: enrollment, email: `${name}@${demo.domain}` };
  };
  const erin = await make('erin', 'operator');
  const frank = await make('frank', 'requester');
  const fromDemo = (p: { id: string; key: string; name: string }, enrollment?: string): Principal => ({
    id: p.id,
    key: p.key,
    email: `${p.name}@${demo.domain}`,
    enrollmentKey: enrollment,
  });
  const principals: Principals = {
    admin: fromDemo(admin),
    // The demo's approvers enrolled at seeding; the admin makes them a fresh enrollment key (as for a lost key),
    // left unspent: the enrollment noise tries to decide with it.
    alice: fromDemo(alice, await enrollmentKey(alice.id)),
    bob: fromDemo(bob, await enrollmentKey(bob.id)),
    carol: fromDemo(carol),
    dave: fromDemo(dave),
    erin,
    frank,
  };
  // Queue submissions are signed by a service principal (SPEC §4): each submitter files them through its own
  // service account `<name>-intake`, with the submitter's role and an intake key the admin registered for it.
  const intakeAccount = async (name: string, role: string) => {
    const account = await make(`${name}-intake`, role, 'service');
    const pair = generateIntakeKeyPair();
    const k = await call(stack.apiUrl, adminKey, 'POST', `/api/v1/principals/${account.id}/intake-keys`, {
      public_key: pair.publicJwk,
      name: 'chaos',
    });
    return {
      ...account,
      signer: { keyId: String(k.id), principalId: account.id, orgId: String(k.org_id), privateKey: pair.privateKey },
    };
  };
  const intake: IntakeAccounts = {
    carol: await intakeAccount('carol', 'requester'),
    frank: await intakeAccount('frank', 'requester'),
    alice: await intakeAccount('alice', 'operator'),
    erin: await intakeAccount('erin', 'operator'),
  };
  const domains = [demo.domain, `*.${demo.domain}`];
  const mofn = await call(stack.apiUrl, adminKey, 'POST', '/api/v1/profiles', {
    name: 'chaos-two-of-three',
    environment: 'production',
    requires_approval: true,
    approvals_required: 2,
    approvers: [alice.id, bob.id, erin.id],
    allowed_domains: domains,
  });
  const short = await call(stack.apiUrl, adminKey, 'POST', '/api/v1/profiles', {
    name: 'chaos-short-timeout',
    environment: 'staging',
    requires_approval: true,
    approvers: [alice.id, bob.id],
    approval_timeout: `${SHORT_TIMEOUT_MS / 1000}s`,
    allowed_domains: domains,
  });
  return {
    principals,
    intake,
    profiles: {
      single: demo.profiles.production,
      mofn: String(mofn.id),
      short: String(short.id),
      open: demo.profiles.development,
    },
    domain: demo.domain,
  };
}

/** Nothing left to do: outbox drained, no released job unfinished, nothing overdue, every mail settled, the sink quiet. */
async function waitForQuiescence(stack: Stack, su: pg.Pool, limitMs: number, log: (l: string) => void) {
  const deadline = Date.now() + limitMs;
  const redis = createRedis(stack.redisUrl, 'producer');
  redis.on('error', () => {});
  const notifications = openQueue('notifications', {
    connection: redis,
    prefix: stack.env.COUNTERSIGN_QUEUE_PREFIX ?? '{countersign}',
  });
  notifications.on('error', () => {});
  let lastCount = -1;
  let stableSince = Date.now();
  let lastState = '';
  try {
    while (Date.now() < deadline) {
      try {
        const { rows } = await su.query<{ outbox: number; open_jobs: number; overdue: number; deliveries: number }>(
          `SELECT (SELECT count(*) FROM outbox)::int AS outbox,
                  (SELECT count(*) FROM jobs WHERE status IN ('pending', 'running'))::int AS open_jobs,
                  (SELECT count(*) FROM approval_requests WHERE state = 'pending' AND expires_at <= now())::int AS overdue,
                  (SELECT count(*) FROM notification_deliveries WHERE status = 'pending')::int AS deliveries`,
        );
        const counts = await notifications.getJobCounts('waiting', 'active', 'prioritized');
        // Escalation reminders wait a day (COUNTERSIGN_ESCALATION_AFTER): they are not work left over; retries are.
        const delayed = (await notifications.getJobs(['delayed'], 0, -1)).filter(
          (j) => (j.data as { kind?: string }).kind !== 'approval_escalation',
        ).length;
        const queued = Object.values(counts).reduce((s, n) => s + n, delayed);
        const sink = stack.sink?.messages().length ?? 0;
        if (sink !== lastCount) {
          lastCount = sink;
          stableSince = Date.now();
        }
        const r = rows[0];
        lastState = `outbox ${r?.outbox} open jobs ${r?.open_jobs} overdue ${r?.overdue} pending deliveries ${r?.deliveries} queued mails ${queued} sink ${sink}`;
        if (r && r.outbox + r.open_jobs + r.overdue + r.deliveries + queued === 0 && Date.now() - stableSince > 3_000) {
          return true;
        }
      } catch (err) {
        lastState = (err as Error).message;
      }
      await sleep(500);
    }
    log(`no quiescence within ${limitMs} ms: ${lastState}`);
    return false;
  } finally {
    await notifications.close().catch(() => {});
    redis.disconnect();
  }
}

export async function runChaos(o: ChaosOptions): Promise<ChaosReport> {
  const t0 = Date.now();
  const rng = createPrng(o.seed);
  const ops = planWorkload(rng.fork('workload'), o.seed, o.requests);
  const faultRng = rng.fork('faults');
  const dataDir = o.dataDir ?? (await mkdtemp(join(tmpdir(), `countersign-chaos-${o.seed}-`)));
  o.log(`seed ${o.seed}, ${o.requests} requests, profile ${o.profile}, data in ${dataDir}`);
  const stack = await startStack({
    dataDir,
    smtp: 'sink',
    seedDemo: true,
    replicas: { approval: 2, issuer: 2, notifier: 2, reaper: 2 },
    redisPersistence: 'aof',
    fsyncOff: false,
    queuePrefix: `{cs-chaos-${randomBytes(3).toString('hex')}}`,
    // The sink logs every message it takes; the summary counts them instead.
    log: (m) => {
      if (!m.startsWith('smtp-sink: #')) o.log(`stack: ${m}`);
    },
    env: {
      COUNTERSIGN_REAPER_EXPIRE_INTERVAL: '1s',
      COUNTERSIGN_REAPER_RECONCILE_INTERVAL: '2s',
      COUNTERSIGN_RECONCILE_GRACE: '3s',
      COUNTERSIGN_RATE_LIMIT_SUBMIT: '1000000',
      COUNTERSIGN_RATE_LIMIT_DECIDE: '1000000',
      COUNTERSIGN_MAX_OPEN_REQUESTS: '1000000',
      // A notifier that dies mid-send holds its claims for 4 x this: short, so takeovers happen within the run.
      COUNTERSIGN_SMTP_TIMEOUT: '5s',
    },
  });
  o.signal?.addEventListener('abort', () => {
    o.log('aborted: stopping the stack');
    void stack.stop().finally(() => process.exit(130));
  });
  const startup = Date.now() - t0;
  o.log(`stack ready in ${startup} ms: ${stack.services.map((s) => s.id).join(', ')}`);
  const dbUrl = new URL(stack.superuserUrl);
  dbUrl.pathname = new URL(stack.appDatabaseUrl).pathname;
  const su = new pg.Pool({ connectionString: dbUrl.toString(), max: 3, application_name: 'chaos-harness' });
  su.on('error', () => {});
  const report: ChaosReport = {
    seed: o.seed,
    requests: o.requests,
    profile: o.profile,
    concurrency: o.concurrency,
    dataDir,
    kept: true,
    durationsMs: { startup, load: 0, quiescence: 0, checks: 0, total: 0 },
    accepted: { http: 0, queue: 0, renewals: 0, refused: 0 },
    client: { decisions: 0, decisions200: 0, httpRetries: 0, queueResubmits: 0, noise: {} },
    faults: {
      byKind: Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<FaultKind, number>,
      recoveryMs: {},
      notRecovered: 0,
      list: [],
    },
    lastFaultToQuiescenceMs: 0,
    quiescent: false,
    figures: null,
    violations: [],
  };
  let driver: Driver | null = null;
  try {
    const org = await setUpOrg(stack);
    driver = new Driver({
      apiUrl: stack.apiUrl,
      redisUrl: stack.redisUrl,
      queuePrefix: stack.env.COUNTERSIGN_QUEUE_PREFIX ?? '{countersign}',
      seed: o.seed,
      principals: org.principals,
      intake: org.intake,
      profiles: org.profiles,
      domain: org.domain,
      concurrency: o.concurrency,
      callDeadlineMs: 180_000,
      log: o.log,
    });
    let loadDone = false;
    const faults = new FaultInjector({
      stack,
      rng: faultRng,
      profile: FAULT_PROFILES[o.profile],
      su,
      loadDone: () => loadDone,
      log: o.log,
    });
    const tLoad = Date.now();
    const d = driver;
    const progress = setInterval(
      () => o.log(`progress: ${d.completed}/${o.requests} ops, ${faults.records.length} faults`),
      15_000,
    );
    const load = driver.run(ops).finally(() => {
      loadDone = true;
      report.durationsMs.load = Date.now() - tLoad;
      o.log(`workload done in ${report.durationsMs.load} ms`);
    });
    faults.watch();
    await Promise.all([load, faults.run()]);
    clearInterval(progress);
    const tQuiet = Date.now();
    report.quiescent = await waitForQuiescence(stack, su, 240_000, o.log);
    faults.unwatch();
    if (faults.crashes.length) {
      report.violations.push(
        `services that crashed on their own (restarted): ${faults.crashes.length} — ${faults.crashes
          .slice(0, 10)
          .map((c) => `${c.id}: ${c.tail}`)
          .join('; ')}`,
      );
    }
    report.durationsMs.quiescence = Date.now() - tQuiet;
    report.lastFaultToQuiescenceMs = Date.now() - faults.lastFaultEnd;
    if (!report.quiescent) report.violations.push('the stack did not reach quiescence within 240 s');

    const tChecks = Date.now();
    const names = new Map<string, string>(Object.entries(org.principals).map(([n, p]) => [p.id, n as PrincipalName]));
    for (const [n, a] of Object.entries(org.intake)) names.set(a.id, `${n}-intake`);
    const result = await runChecks({
      su,
      record: driver.record,
      faults: faults.records,
      lastFaultEnd: faults.lastFaultEnd,
      messages: stack.sink?.messages() ?? [],
      principalNames: names,
      processesOf: stack.services.reduce(
        (m, svc) => m.set(svc.name, (m.get(svc.name) ?? 0) + 1),
        new Map<string, number>(),
      ),
    });
    report.durationsMs.checks = Date.now() - tChecks;
    report.violations.push(...result.violations);
    report.figures = result.figures;
    const rec = driver.record;
    report.accepted = {
      http: rec.accepted.filter((a) => a.channel === 'http').length,
      queue: rec.accepted.filter((a) => a.channel === 'queue').length,
      renewals: rec.accepted.filter((a) => a.renewal).length,
      refused: rec.refused.length,
    };
    report.client = {
      decisions: rec.decisions.length,
      decisions200: rec.decisions.filter((x) => x.status === 200).length,
      httpRetries: rec.httpRetries,
      queueResubmits: rec.queueResubmits,
      noise: rec.decisions
        .filter((x) => x.role !== 'step')
        .reduce<Record<string, number>>((m, x) => {
          m[x.role] = (m[x.role] ?? 0) + 1;
          return m;
        }, {}),
    };
    report.faults.list = faults.records;
    for (const f of faults.records) report.faults.byKind[f.kind]++;
    for (const kind of FAULT_KINDS) {
      const times = faults.records
        .filter((f) => f.kind === kind && f.recoveredAt !== null)
        .map((f) => (f.recoveredAt as number) - f.endedAt)
        .sort((a, b) => a - b);
      if (times.length)
        report.faults.recoveryMs[kind] = {
          n: times.length,
          median: times[Math.floor(times.length / 2)] ?? 0,
          max: times.at(-1) ?? 0,
        };
    }
    report.faults.notRecovered = faults.records.filter((f) => f.recoveredAt === null).length;
    if (report.faults.notRecovered) {
      report.violations.push(
        `${report.faults.notRecovered} fault(s) after which the stack was not ready again within 120 s`,
      );
    }
    const dead = stack.services.filter((s) => !s.running());
    if (dead.length) report.violations.push(`services not running at the end: ${dead.map((s) => s.id).join(', ')}`);
  } catch (err) {
    report.violations.push(`harness error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  } finally {
    await driver?.close();
    await su.end().catch(() => {});
    await stack.stop().catch((err: unknown) => o.log(`stack stop: ${String(err)}`));
  }
  report.kept = o.keep || report.violations.length > 0;
  if (!report.kept) await rm(dataDir, { recursive: true, force: true });
  report.durationsMs.total = Date.now() - t0;
  return report;
}
