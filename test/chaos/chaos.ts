import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { type ChaosReport, runChaos } from './harness.ts';

/**
 * `pnpm chaos --seed N --requests M [--profile ci|full] [--concurrency C] [--json FILE] [--keep]`
 * Prints a summary and exits 1 on any violation (2 on bad arguments).
 */
const { values } = parseArgs({
  options: {
    seed: { type: 'string', default: '1' },
    requests: { type: 'string', default: '200' },
    profile: { type: 'string', default: 'full' },
    concurrency: { type: 'string', default: '12' },
    json: { type: 'string' },
    'data-dir': { type: 'string' },
    keep: { type: 'boolean', default: false },
    quiet: { type: 'boolean', default: false },
  },
});

const int = (name: string, v: string | undefined, min: number): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) {
    process.stderr.write(`chaos: --${name} must be an integer >= ${min} (got "${v}")\n`);
    process.exit(2);
  }
  return n;
};
const profile = values.profile;
if (profile !== 'ci' && profile !== 'full') {
  process.stderr.write(`chaos: --profile must be ci or full (got "${profile}")\n`);
  process.exit(2);
}

const started = Date.now();
const log = (line: string) => {
  if (!values.quiet) process.stdout.write(`[chaos +${((Date.now() - started) / 1000).toFixed(1)}s] ${line}\n`);
};

const abort = new AbortController();
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => abort.abort());

const report = await runChaos({
  seed: int('seed', values.seed, 0),
  requests: int('requests', values.requests, 1),
  profile,
  concurrency: int('concurrency', values.concurrency, 1),
  keep: values.keep,
  dataDir: values['data-dir'],
  log,
  signal: abort.signal,
});
process.stdout.write(summary(report));
if (values.json) await writeFile(values.json, `${JSON.stringify(report, null, 2)}\n`);
process.exit(report.violations.length > 0 ? 1 : 0);

function summary(r: ChaosReport): string {
  const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  const f = r.figures;
  const lines = [
    '',
    `chaos run: seed ${r.seed}, ${r.requests} requests, profile ${r.profile}, concurrency ${r.concurrency}`,
    `  time: total ${s(r.durationsMs.total)} (startup ${s(r.durationsMs.startup)}, load ${s(r.durationsMs.load)}, quiescence ${s(r.durationsMs.quiescence)}, checks ${s(r.durationsMs.checks)})`,
    `  accepted: ${r.accepted.http} over HTTP, ${r.accepted.queue} through the queue (${r.accepted.renewals} renewals); ${r.accepted.refused} refused as expected`,
    `  client: ${r.client.decisions} decision calls (${r.client.decisions200} answered 200), ${r.client.httpRetries} HTTP retries, ${r.client.queueResubmits} queue re-submissions`,
    `  refused attempts made on purpose: ${
      Object.entries(r.client.noise ?? {})
        .map(([k, v]) => `${k} ${v}`)
        .join(', ') || 'none'
    }`,
  ];
  if (f) {
    const kv = (o: Record<string, number>) =>
      Object.entries(o)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ');
    lines.push(
      `  approvals: ${kv(f.approvals)}; jobs: ${kv(f.jobs)}; certificates ${f.certificates}`,
      `  release to issued: p50 ${f.approvedToIssuedMs.p50} ms, p95 ${f.approvedToIssuedMs.p95} ms, max ${f.approvedToIssuedMs.max} ms; latest after the last fault ${s(f.maxIssuedAfterLastFaultMs)}`,
      `  mail: ${f.mails.sinkMessages} received, ${f.mails.sent} deliveries sent, ${f.mails.skipped} skipped, ${f.mails.resendsSameMessageId} resends after a notifier died mid-send, ${f.mails.resendsUnanswered ?? 0} after an SMTP reply never came (all with the same Message-ID)`,
      `  audit: ${f.audit.records} records verified, ${f.audit.decisionRecords} decision records`,
    );
    if (f.gate) {
      lines.push(
        `  no single person: ${f.gate.votes} votes and ${f.gate.decisions} decisions checked for the decider's own credential and provenance, ${f.gate.configRequests} approved configuration requests; ${f.gate.certificateNames} certificates' names checked against the approved names`,
      );
    }
  }
  const byKind = Object.entries(r.faults.byKind)
    .filter(([, n]) => n > 0)
    .map(([k, n]) => {
      const rec = r.faults.recoveryMs[k as keyof typeof r.faults.recoveryMs];
      return `${k} ${n}${rec ? ` (ready again: median ${s(rec.median)}, max ${s(rec.max)})` : ''}`;
    });
  lines.push(
    `  faults: ${r.faults.list.length} — ${byKind.join('; ')}`,
    `  last fault to quiescence: ${s(r.lastFaultToQuiescenceMs)}${r.quiescent ? '' : ' (NOT quiescent)'}`,
    `  violations: ${r.violations.length}`,
    ...r.violations.map((v) => `    - ${v}`),
    r.kept ? `  data kept in ${r.dataDir}` : '',
    '',
  );
  return lines.join('\n');
}
