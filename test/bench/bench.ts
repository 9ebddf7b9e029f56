import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadOrCreateLocalCa } from '@countersign/ca';
import { generateKeyAndCsr } from '@countersign/ca/csr-generate';
import { databaseUrl, encodeCursor } from '@countersign/db';
import { ensureLocalBinaries } from '@countersign/devstack';
import { createRedis, jobIds, QUEUE_NAMES } from '@countersign/queues';
import { type Stack, startStack } from '@countersign/stack';
import { Queue, QueueEvents } from 'bullmq';
import pg from 'pg';
import { pgbenchTps, rawSignRate, redisRoundTrips } from './ceilings.ts';
import { jsonClient } from './http-client.ts';
import { writeLatencyPlot } from './plot.ts';
import { seedPendingApprovals } from './seed.ts';
import { closedLoop, openLoop, Samples, sleep } from './stats.ts';

/**
 * `pnpm bench [--quick]`: the pipeline measured against this machine's own
 * ceilings in the same run (issue 7). Starts PostgreSQL, Redis and the five
 * services as processes, loads them through the public API, prints one table
 * and writes bench.json and latency.png under test-results/bench/.
 * --quick is the CI profile: small and fast, fails only on errors.
 */
const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, out: { type: 'string' } } });
const quick = values.quick ?? false;
const outDir = values.out ?? join(process.cwd(), 'test-results', 'bench');
const P = quick
  ? {
      pgbench: 5,
      lifecycleSeconds: 5,
      concurrency: 8,
      steadySeconds: 4,
      submitSeconds: 3,
      listRows: 20_000,
      reaperRows: 5_000,
      listRequests: 100,
    }
  : {
      pgbench: 15,
      lifecycleSeconds: 30,
      concurrency: 32,
      steadySeconds: 20,
      submitSeconds: 10,
      listRows: 1_000_000,
      reaperRows: 100_000,
      listRequests: 1_000,
    };

const say = (s = '') => process.stdout.write(`${s}\n`);
const fmt = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');

interface Row {
  metric: string;
  value: string;
  goal: string;
  ratio: string;
  verdict: 'PASS' | 'MISS' | '';
}
const rows: Row[] = [];
const results: Record<string, unknown> = { quick, started_at: new Date().toISOString() };
let errors = 0;

const dataDir = await mkdtemp(join(tmpdir(), 'countersign-bench-'));
say(`bench: ${quick ? 'quick' : 'full'} profile; data in ${dataDir}`);
const bins = await ensureLocalBinaries({});
let stack: Stack | null = null;
const rss = new Map<string, number>();
let rssTimer: NodeJS.Timeout | undefined;
let eventsRedis: ReturnType<typeof createRedis> | null = null;
let suPool: pg.Pool | null = null;
let closeClient: (() => void) | null = null;

try {
  stack = await startStack({
    dataDir,
    // Mail goes to a sink that accepts and drops it, as a relay on another host would: parsing every
    // mail in this process took CPU from the services being measured.
    smtp: 'discard',
    seedDemo: true,
    redisPersistence: 'aof',
    // As in production: the bundles of scripts/build-services.ts on plain node (pnpm bench builds them first).
    bundled: true,
    env: {
      COUNTERSIGN_LOG_LEVEL: 'warn',
      // The benchmark is one requester and one approver at full speed: abuse limits off.
      COUNTERSIGN_RATE_LIMIT_SUBMIT: '0',
      COUNTERSIGN_RATE_LIMIT_DECIDE: '0',
      COUNTERSIGN_MAX_OPEN_REQUESTS: '0',
      COUNTERSIGN_REAPER_EXPIRE_INTERVAL: '1s',
      COUNTERSIGN_REAPER_BATCH_SIZE: '2000',
    },
  });
  const s = stack;
  const demo = s.demo;
  if (!demo) throw new Error('demo org missing');
  const { carol, alice } = demo.principals;

  // Peak RSS of every service process, sampled from /proc.
  const sampleRss = async () => {
    for (const p of s.services) {
      const pid = p.pid();
      if (!pid) continue;
      try {
        const status = await readFile(`/proc/${pid}/status`, 'utf8');
        const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
        rss.set(p.id, Math.max(rss.get(p.id) ?? 0, kb / 1024));
      } catch {
        // process restarting
      }
    }
  };
  rssTimer = setInterval(() => void sampleRss(), 250);

  // 1. Ceilings.
  say('bench: measuring ceilings (pgbench, crypto.sign, Redis) ...');
  const tps = await pgbenchTps(s.superuserUrl, bins.postgres.binDir, P.pgbench);
  const signRate = rawSignRate(2);
  const redisRate = await redisRoundTrips(s.redisUrl, 2);
  results.ceilings = { pgbench_tps: tps, crypto_sign_per_s: signRate, redis_round_trips_per_s: redisRate };
  rows.push({
    metric: 'ceiling: pgbench TPC-B (-c 8 -j 2)',
    value: `${fmt(tps, 0)} tps`,
    goal: '',
    ratio: '',
    verdict: '',
  });
  rows.push({
    metric: 'ceiling: ECDSA P-256 crypto.sign',
    value: `${fmt(signRate, 0)} /s`,
    goal: '',
    ratio: '',
    verdict: '',
  });
  rows.push({
    metric: 'ceiling: Redis round trips',
    value: `${fmt(redisRate, 0)} /s`,
    goal: '',
    ratio: '',
    verdict: '',
  });

  // Completion events of the issuance queue tell when a certificate was committed.
  const prefix = s.env.COUNTERSIGN_QUEUE_PREFIX ?? '{countersign}';
  // Ours to close: QueueEvents leaves a connection it was given open.
  eventsRedis = createRedis(s.redisUrl, 'worker');
  const events = new QueueEvents('issuance', { connection: eventsRedis, prefix });
  await events.waitUntilReady();
  const waiting = new Map<string, (at: number) => void>();
  const early = new Map<string, number>();
  events.on('completed', ({ jobId }) => {
    const now = performance.now();
    const w = waiting.get(jobId);
    if (w) {
      waiting.delete(jobId);
      w(now);
    } else early.set(jobId, now);
  });
  const issuedAt = (jobId: string, timeoutMs = 30_000) =>
    new Promise<number>((resolve, reject) => {
      const id = jobIds.issuance(jobId);
      const seen = early.get(id);
      if (seen !== undefined) {
        early.delete(id);
        resolve(seen);
        return;
      }
      const t = setTimeout(() => {
        waiting.delete(id);
        reject(new Error(`job ${jobId} not issued within ${timeoutMs} ms`));
      }, timeoutMs);
      waiting.set(id, (at) => {
        clearTimeout(t);
        resolve(at);
      });
    });

  const suUrl = databaseUrl(s.superuserUrl, new URL(s.superuserUrl).username || 'postgres', '', 'countersign');
  const outboxPool = new pg.Pool({ connectionString: suUrl, max: 1 });
  suPool = outboxPool; // closed in the finally below
  const queues = [QUEUE_NAMES.issuance, QUEUE_NAMES.notifications].map(
    (name) => new Queue(name, { connection: eventsRedis as NonNullable<typeof eventsRedis>, prefix }),
  );
  /**
   * Waits until the work a phase left behind (issuance, mail, outbox relay)
   * has drained, so the next measurement sees a system in steady state
   * rather than the previous phase's backlog.
   */
  const settle = async (label: string, timeoutMs = 120_000) => {
    const t0 = performance.now();
    for (;;) {
      let backlog = 0;
      for (const q of queues) {
        const c = await q.getJobCounts('waiting', 'active', 'prioritized');
        backlog += (c.waiting ?? 0) + (c.active ?? 0) + (c.prioritized ?? 0);
      }
      // Published outbox rows are deleted: what is left is still to be relayed.
      const outbox = await outboxPool.query<{ n: number }>('SELECT count(*)::int AS n FROM outbox');
      backlog += outbox.rows[0]?.n ?? 0;
      if (backlog === 0) break;
      if (performance.now() - t0 > timeoutMs) {
        say(`bench: ${label}: ${backlog} items still queued after ${timeoutMs / 1000} s; measuring anyway`);
        break;
      }
      await sleep(250);
    }
    say(`bench: ${label}: pipeline drained in ${fmt((performance.now() - t0) / 1000)} s`);
  };

  const csrs = await Promise.all(
    Array.from({ length: 16 }, (_, i) =>
      generateKeyAndCsr({ commonName: `bench-${i}.${demo.domain}`, dnsNames: [`bench-${i}.${demo.domain}`] }),
    ),
  );
  let next = 0;
  // Keep-alive sockets for every concurrent loop; the client is closed with the stack below.
  const http = jsonClient(s.apiUrl);
  closeClient = http.close;
  const call = async (key: string, method: string, path: string, body?: unknown) => {
    const { status, json } = await http.request(key, method, path, body);
    if (status >= 300) throw new Error(`${method} ${path}: ${status} ${JSON.stringify(json)}`);
    return json;
  };
  const submit = async () => {
    const i = next++ % csrs.length;
    return (await call(carol.key, 'POST', '/api/v1/certificates', {
      profile_id: demo.profiles.production,
      common_name: `bench-${i}.${demo.domain}`,
      csr: csrs[i]?.csrPem,
      justification: 'benchmark',
    })) as { job: { id: string }; approval: { id: string } };
  };
  // Where a lifecycle's time goes (printed after the closed loop, for diagnosis).
  const newPhases = () => ({ submit: new Samples(), approve: new Samples(), issue: new Samples() });
  let phases = newPhases();
  /** One lifecycle; returns approve-response-to-issued latency in ms. */
  const lifecycle = async () => {
    const t0 = performance.now();
    const r = await submit();
    const t1 = performance.now();
    await call(alice.key, 'POST', `/api/v1/approvals/${r.approval.id}/approve`, {});
    const approvedAt = performance.now();
    const ms = (await issuedAt(r.job.id)) - approvedAt;
    phases.submit.add(t1 - t0);
    phases.approve.add(approvedAt - t1);
    phases.issue.add(ms);
    return ms;
  };

  // 2. Lifecycle throughput, closed loop.
  say(`bench: lifecycle throughput, ${P.concurrency} concurrent loops for ${P.lifecycleSeconds} s ...`);
  await closedLoop(4, 1, async () => void (await lifecycle())); // warm-up
  phases = newPhases();
  await settle('before the lifecycle loop');
  const closed = await closedLoop(P.concurrency, P.lifecycleSeconds, async () => void (await lifecycle()));
  const throughput = closed.done / closed.seconds;
  errors += closed.errors;
  const inLoop = { submit: phases.submit.summary(), approve: phases.approve.summary(), issue: phases.issue.summary() };
  results.lifecycle = {
    per_s: throughput,
    done: closed.done,
    errors: closed.errors,
    concurrency: P.concurrency,
    phases_ms: { submit: inLoop.submit, approve: inLoop.approve, approve_to_issued: inLoop.issue },
  };
  say(
    `bench: in the loop, p50 submit ${fmt(inLoop.submit.p50)} ms, approve ${fmt(inLoop.approve.p50)} ms, approve->issued ${fmt(inLoop.issue.p50)} ms`,
  );
  phases = newPhases();
  const tGoal = tps / 8;
  rows.push({
    metric: 'lifecycles/s (request, approve, issued)',
    value: `${fmt(throughput)} /s (${closed.errors} errors)`,
    goal: `>= pgbench/8 = ${fmt(tGoal)}`,
    ratio: `${fmt((throughput / tps) * 100)}% of pgbench`,
    verdict: throughput >= tGoal && closed.errors === 0 ? 'PASS' : 'MISS',
  });

  // 3. Approve-to-issued latency at steady rates.
  const steady = async (rate: number) => {
    await settle(`before ${rate} lifecycles/s`);
    const samples = new Samples();
    const times: { t: number; ms: number }[] = [];
    const t0 = performance.now();
    const r = await openLoop(rate, P.steadySeconds, async () => {
      const ms = await lifecycle();
      samples.add(ms);
      times.push({ t: (performance.now() - t0) / 1000, ms });
    });
    errors += r.errors;
    return { samples, times, errors: r.errors };
  };
  say('bench: approve-to-issued latency at 50 lifecycles/s ...');
  const at50 = await steady(50);
  const half = Math.max(1, Math.floor(throughput / 2));
  say(`bench: approve-to-issued latency at half the maximum (${half}/s) ...`);
  const atHalf = await steady(half);
  results.approve_to_issued = { at_50: at50.samples.summary(), at_half: { rate: half, ...atHalf.samples.summary() } };
  for (const [label, run, goal] of [
    ['approve->issued p99 @ 50/s', at50, 25],
    [`approve->issued p99 @ ${half}/s (half max)`, atHalf, 100],
  ] as const) {
    const sm = run.samples.summary();
    rows.push({
      metric: label,
      value: `p50 ${fmt(sm.p50)} / p99 ${fmt(sm.p99)} / max ${fmt(sm.max)} ms`,
      goal: `p99 <= ${goal} ms`,
      ratio: `${fmt((sm.p99 / goal) * 100, 0)}% of goal`,
      verdict: sm.p99 <= goal && run.errors === 0 ? 'PASS' : 'MISS',
    });
  }

  // 4a. Submission latency at 200 req/s.
  say('bench: submission latency at 200 requests/s ...');
  await settle('before the submission load');
  const submitLat = new Samples();
  const sub = await openLoop(200, P.submitSeconds, async () => {
    const t = performance.now();
    await submit();
    submitLat.add(performance.now() - t);
  });
  errors += sub.errors;
  const subSum = submitLat.summary();
  results.submission = { rate: 200, ...subSum, errors: sub.errors };
  rows.push({
    metric: 'submission p99 @ 200 req/s',
    value: `p50 ${fmt(subSum.p50)} / p99 ${fmt(subSum.p99)} ms`,
    goal: 'p99 <= 20 ms',
    ratio: `${fmt((subSum.p99 / 20) * 100, 0)}% of goal`,
    verdict: subSum.p99 <= 20 && sub.errors === 0 ? 'PASS' : 'MISS',
  });

  // 4b. Pending list with many rows.
  say(`bench: seeding ${P.listRows.toLocaleString()} approval requests ...`);
  const seedStart = performance.now();
  await seedPendingApprovals(suUrl, {
    orgId: demo.org_id,
    profileId: demo.profiles.production,
    ownerId: carol.id,
    count: P.listRows,
    expired: false,
  });
  say(`bench: seeded in ${fmt((performance.now() - seedStart) / 1000)} s`);
  await settle('before the pending-list reads');
  const su = new pg.Client({ connectionString: suUrl });
  await su.connect();
  const deep = await su.query<{ requested_at: Date; id: string }>(
    `SELECT requested_at, id FROM approval_requests WHERE org_id = $1 AND state = 'pending'
     ORDER BY requested_at DESC, id DESC OFFSET $2 LIMIT 1`,
    [demo.org_id, Math.floor(P.listRows * 0.9)],
  );
  const deepRow = deep.rows[0];
  const deepCursor = deepRow ? encodeCursor({ at: deepRow.requested_at, id: deepRow.id }) : '';
  const listLatency = async (path: string) => {
    // Steady state, as for the other phases: the first requests of a route pay for V8 compiling
    // its code and for the index pages coming into the buffer cache; 50 unmeasured ones first.
    for (let i = 0; i < 50; i++) await call(alice.key, 'GET', path);
    const lat = new Samples();
    const r = await openLoop(100, P.listRequests / 100, async () => {
      const t = performance.now();
      await call(alice.key, 'GET', path);
      lat.add(performance.now() - t);
    });
    errors += r.errors;
    return lat.summary();
  };
  const first = await listLatency('/api/v1/approvals?state=pending&limit=50');
  const deepLat = await listLatency(`/api/v1/approvals?state=pending&limit=50&cursor=${deepCursor}`);
  results.pending_list = { rows: P.listRows, first_page: first, deep_cursor: deepLat };
  for (const [label, sm] of [
    [`pending list p99, first page (${P.listRows.toLocaleString()} rows)`, first],
    ['pending list p99, deep cursor (90% in)', deepLat],
  ] as const) {
    rows.push({
      metric: label,
      value: `p50 ${fmt(sm.p50)} / p99 ${fmt(sm.p99)} ms`,
      goal: 'p99 <= 15 ms',
      ratio: `${fmt((sm.p99 / 15) * 100, 0)}% of goal`,
      verdict: sm.p99 <= 15 ? 'PASS' : 'MISS',
    });
  }

  // 5. The local CA alone, one core.
  const ca = await loadOrCreateLocalCa({ dir: join(dataDir, 'bench-ca') });
  const spki = (await generateKeyAndCsr({ commonName: 'ca.bench.example', dnsNames: ['ca.bench.example'] }))
    .publicKeySpki;
  const caEnd = performance.now() + 2_000;
  let issued = 0;
  while (performance.now() < caEnd) {
    ca.issue({ commonName: 'ca.bench.example', dnsNames: ['ca.bench.example'], publicKeySpki: spki, validityDays: 90 });
    issued++;
  }
  const caRate = issued / 2;
  results.local_ca = { certs_per_s: caRate, ratio_to_sign: caRate / signRate };
  rows.push({
    metric: 'local CA issuance, one core',
    value: `${fmt(caRate, 0)} certs/s`,
    goal: '>= 25% of crypto.sign',
    ratio: `${fmt((caRate / signRate) * 100)}% of crypto.sign`,
    verdict: caRate >= 0.25 * signRate ? 'PASS' : 'MISS',
  });

  // 6. Reaper: expire stale requests while the api serves the queue.
  say(`bench: seeding ${P.reaperRows.toLocaleString()} stale requests and timing the reaper ...`);
  await seedPendingApprovals(
    suUrl,
    {
      orgId: demo.org_id,
      profileId: demo.profiles.production,
      ownerId: carol.id,
      count: P.reaperRows,
      expired: true,
    },
    false,
  );
  const reapStart = performance.now();
  const reapLat = new Samples();
  let reaping = true;
  const probe = (async () => {
    while (reaping) {
      const t = performance.now();
      try {
        await call(alice.key, 'GET', '/api/v1/approvals?state=pending&limit=50');
      } catch {
        errors++;
      }
      reapLat.add(performance.now() - t);
      await sleep(20);
    }
  })();
  // Polls "is any still due" (one index probe): counting the backlog every 100 ms took a
  // PostgreSQL backend's full time (100 ms per count at 100,000 rows) from the reaper measured.
  const due = `FROM approval_requests WHERE state = 'pending' AND expires_at <= now()`;
  const reapDeadline = reapStart + 120_000;
  let anyDue = true;
  while (anyDue && performance.now() < reapDeadline) {
    anyDue = (await su.query(`SELECT 1 ${due} LIMIT 1`)).rowCount !== 0;
    if (anyDue) await sleep(100);
  }
  const remaining = anyDue ? Number((await su.query<{ c: string }>(`SELECT count(*) c ${due}`)).rows[0]?.c ?? 0) : 0;
  reaping = false;
  await probe;
  const reapSeconds = (performance.now() - reapStart) / 1000;
  const reapSum = reapLat.summary();
  results.reaper = { rows: P.reaperRows, seconds: reapSeconds, remaining, api_during: reapSum };
  rows.push({
    metric: `reaper: expire ${P.reaperRows.toLocaleString()} stale requests`,
    value: remaining === 0 ? `${fmt(reapSeconds)} s` : `${remaining} left after ${fmt(reapSeconds)} s`,
    goal: '<= 10 s',
    ratio: `${fmt((reapSeconds / 10) * 100, 0)}% of goal`,
    verdict: remaining === 0 && reapSeconds <= 10 ? 'PASS' : 'MISS',
  });
  rows.push({
    metric: 'api p99 while the reaper runs',
    value: `p99 ${fmt(reapSum.p99)} ms`,
    goal: 'p99 <= 50 ms',
    ratio: `${fmt((reapSum.p99 / 50) * 100, 0)}% of goal`,
    verdict: reapSum.p99 <= 50 ? 'PASS' : 'MISS',
  });
  await su.end();

  // 7. Memory.
  await sampleRss();
  results.peak_rss_mb = Object.fromEntries(rss);
  for (const [id, mb] of rss) {
    rows.push({
      metric: `peak RSS ${id}`,
      value: `${fmt(mb)} MB`,
      goal: '<= 150 MB',
      ratio: `${fmt((mb / 150) * 100, 0)}% of goal`,
      verdict: mb <= 150 ? 'PASS' : 'MISS',
    });
  }

  await events.close();
  for (const q of queues) await q.close();
  await mkdir(outDir, { recursive: true });
  await writeLatencyPlot(join(outDir, 'latency.png'), [
    { label: 'approve->issued @ 50/s', points: at50.times },
    { label: `approve->issued @ ${half}/s`, points: atHalf.times },
  ]);
} finally {
  if (rssTimer) clearInterval(rssTimer);
  closeClient?.();
  await suPool?.end();
  eventsRedis?.disconnect();
  await stack?.stop();
  await rm(dataDir, { recursive: true, force: true });
}

results.errors = errors;
results.rows = rows;
await mkdir(outDir, { recursive: true });
await writeFile(join(outDir, 'bench.json'), `${JSON.stringify(results, null, 2)}\n`);

const widths = [48, 40, 26, 22, 7];
const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i] ?? 10)).join(' | ');
say();
say(line(['metric', 'value', 'goal', 'ratio', 'result']));
say(widths.map((w) => '-'.repeat(w)).join('-|-'));
for (const r of rows) say(line([r.metric, r.value, r.goal, r.ratio, r.verdict]));
say();
say(`errors: ${errors}; JSON and latency.png in ${outDir}`);
if (errors > 0) {
  say('bench: FAILED: requests failed during the run');
  process.exit(1);
}
if (!quick && rows.some((r) => r.verdict === 'MISS')) say('bench: some goals were missed (see MISS rows)');
process.exit(0);
