import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { sql } from 'kysely';
import { appendAuditMany } from '../src/audit-ledger.ts';
import { verifyAuditChain } from '../src/audit-verify.ts';
import { createDatabase, type Executor } from '../src/database.ts';
import { addOutboxEvents } from '../src/outbox.ts';
import { benchDatabase, sampleDetails } from './bench-db.ts';

/**
 * Are audit appends the pipeline's bottleneck? Runs the same business
 * transaction (two row writes, as the workflow's use cases do) from N concurrent clients, with and without the audit append, on
 * one org (the worst case: appends to one chain serialize on its head row
 * until commit) and spread over several orgs.
 *
 *   pnpm exec tsx packages/db/bench/audit-append.bench.ts [--concurrency 32] [--transactions 4000] [--orgs 4] [--records 1]
 *
 * Uses COUNTERSIGN_BENCH_DATABASE_URL (superuser) or starts a local
 * PostgreSQL with default durability (fsync and synchronous_commit on).
 */
const { values } = parseArgs({
  options: {
    concurrency: { type: 'string', default: '32' },
    transactions: { type: 'string', default: '4000' },
    orgs: { type: 'string', default: '4' },
    // A lifecycle's transactions write one to three records each.
    records: { type: 'string', default: '1' },
  },
});
const concurrency = Number(values.concurrency);
const total = Number(values.transactions);
const orgCount = Number(values.orgs);
const recordsPerTx = Number(values.records);
const log = (m: string) => process.stdout.write(`${m}\n`);

const bdb = await benchDatabase('countersign_bench_append');
const handle = createDatabase({ url: bdb.appUrl, poolSize: concurrency, applicationName: 'bench-append' });
const db = handle.db;

async function newOrg(): Promise<string> {
  const { rows } = await sql<{
    id: string;
  }>`INSERT INTO orgs(name) VALUES (${`bench-${randomUUID()}`}) RETURNING id`.execute(db);
  return rows[0]?.id as string;
}

/**
 * The business part, without contention of its own (each real transaction
 * writes its own job/approval rows): two row writes, like a decision's
 * request update and its outbox event.
 */
async function business(tx: Executor, orgId: string) {
  await addOutboxEvents(tx, orgId, [
    { topic: 'approval.decided', payload: { approval_id: randomUUID(), outcome: 'approved' } },
    { topic: 'job.released', payload: { job_id: randomUUID() } },
  ]);
}

async function run(label: string, orgs: string[], withAudit: boolean): Promise<number> {
  let next = 0;
  const latencies: number[] = [];
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (;;) {
        const i = next++;
        if (i >= total) return;
        const orgId = orgs[i % orgs.length] as string;
        const t = performance.now();
        await db.transaction().execute(async (tx) => {
          await business(tx, orgId);
          if (withAudit) {
            const at = new Date();
            await appendAuditMany(
              tx,
              Array.from({ length: recordsPerTx }, () => ({
                orgId,
                actor: { id: 'system-bench', type: 'system' } as const,
                action: 'job_released',
                resourceType: 'job',
                resourceId: randomUUID(),
                details: sampleDetails(i, at),
              })),
              at,
            );
          }
        });
        latencies.push(performance.now() - t);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const p = (q: number) => (latencies[Math.floor(q * (latencies.length - 1))] ?? 0).toFixed(1);
  const rate = Math.round(total / seconds);
  log(`  ${label.padEnd(40)} ${String(rate).padStart(6)} tx/s   p50 ${p(0.5)} ms   p99 ${p(0.99)} ms`);
  return rate;
}

// Orgs without a chain conflict: the business rows are per org, like the real ones.
const one = [await newOrg()];
const several = await Promise.all(Array.from({ length: orgCount }, () => newOrg()));
log(`${total} transactions of ${recordsPerTx} audit record(s) from ${concurrency} concurrent clients:`);
await run('warm-up', one, true);
const plainOne = await run('one org, without audit append', one, false);
const auditOne = await run('one org, with audit append', one, true);
const plainMany = await run(`${orgCount} orgs, without audit append`, several, false);
const auditMany = await run(`${orgCount} orgs, with audit append`, several, true);
log(
  `\nappend cost: one org ${((1 - auditOne / plainOne) * 100).toFixed(0)}% fewer tx/s; ${orgCount} orgs ${((1 - auditMany / plainMany) * 100).toFixed(0)}% fewer`,
);

const report = await verifyAuditChain(handle, one[0] as string);
log(`one org's chain after the run: ${report.ok ? 'valid' : `BROKEN: ${report.reason}`}, ${report.checked} records`);

await handle.close();
await bdb.stop();
