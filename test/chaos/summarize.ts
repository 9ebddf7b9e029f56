import { readFile } from 'node:fs/promises';
import type { ChaosReport } from './harness.ts';
import { FAULT_KINDS } from './plan.ts';

/**
 * `tsx test/chaos/summarize.ts chaos-*.json`: one line per run and the totals,
 * for the long-run figures (seeds x requests, faults by kind, violations,
 * recovery times, wall time per run).
 */
const files = process.argv.slice(2);
if (files.length === 0) {
  process.stderr.write('usage: tsx test/chaos/summarize.ts <report.json>...\n');
  process.exit(2);
}
const reports: ChaosReport[] = [];
for (const f of files) reports.push(JSON.parse(await readFile(f, 'utf8')) as ChaosReport);
reports.sort((a, b) => a.seed - b.seed);

const s = (ms: number) => (ms / 1000).toFixed(1);
const header = [
  'seed',
  'requests',
  'accepted',
  'faults',
  ...FAULT_KINDS,
  'maxReady s',
  'quiet s',
  'run s',
  'violations',
];
const rows = reports.map((r) => {
  const maxReady = Math.max(0, ...Object.values(r.faults.recoveryMs).map((x) => x?.max ?? 0));
  return [
    r.seed,
    r.requests,
    r.accepted.http + r.accepted.queue,
    r.faults.list.length,
    ...FAULT_KINDS.map((k) => r.faults.byKind[k]),
    s(maxReady),
    s(r.lastFaultToQuiescenceMs),
    s(r.durationsMs.total),
    r.violations.length,
  ].map(String);
});
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i] ?? 0)).join('  ');
const out = [line(header), ...rows.map(line)];
const sum = (f: (r: ChaosReport) => number) => reports.reduce((a, r) => a + f(r), 0);
const recovery = FAULT_KINDS.map((k) => {
  const all = reports.flatMap((r) =>
    r.faults.list
      .filter((x) => x.kind === k && x.recoveredAt !== null)
      .map((x) => (x.recoveredAt as number) - x.endedAt),
  );
  all.sort((a, b) => a - b);
  return all.length
    ? `${k} median ${s(all[Math.floor(all.length / 2)] ?? 0)} s, max ${s(all.at(-1) ?? 0)} s`
    : `${k} -`;
});
out.push(
  '',
  `runs ${reports.length}, requests ${sum((r) => r.requests)}, accepted ${sum((r) => r.accepted.http + r.accepted.queue)}, certificates ${sum((r) => r.figures?.certificates ?? 0)}, mails ${sum((r) => r.figures?.mails.sinkMessages ?? 0)}`,
  `faults ${sum((r) => r.faults.list.length)}: ${FAULT_KINDS.map((k) => `${k} ${sum((r) => r.faults.byKind[k])}`).join(', ')}`,
  `ready again after a fault: ${recovery.join('; ')}`,
  `latest issuance after the last fault: ${s(Math.max(0, ...reports.map((r) => r.figures?.maxIssuedAfterLastFaultMs ?? 0)))} s; last fault to quiescence max ${s(Math.max(...reports.map((r) => r.lastFaultToQuiescenceMs)))} s`,
  `resends after a notifier died mid-send (same Message-ID): ${sum((r) => r.figures?.mails.resendsSameMessageId ?? 0)}`,
  `resends after an SMTP reply never came (same Message-ID, counted on the delivery record): ${sum((r) => r.figures?.mails.resendsUnanswered ?? 0)}`,
  `wall time per run: median ${s([...reports.map((r) => r.durationsMs.total)].sort((a, b) => a - b)[Math.floor(reports.length / 2)] ?? 0)} s, total ${s(sum((r) => r.durationsMs.total))} s`,
  `violations: ${sum((r) => r.violations.length)}`,
  ...reports.flatMap((r) => r.violations.map((v) => `  seed ${r.seed}: ${v}`)),
);
process.stdout.write(`${out.join('\n')}\n`);
process.exit(reports.some((r) => r.violations.length > 0) ? 1 : 0);
