import { hash } from 'node:crypto';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { ByteSink } from '../src/audit-canonical.ts';
import { BODY_OFFSET, ChainWalk } from '../src/audit-chain.ts';
import { CopyRowParser, RecordBodyWriter, type TupleHandler, tupleSeq } from '../src/audit-copy.ts';
import { copyRecords, verifyAuditChain } from '../src/audit-verify.ts';
import { copyOut } from '../src/copy-out.ts';
import { benchDatabase, seedChain } from './bench-db.ts';

/**
 * How fast the audit chain verifies, and where the time goes.
 *
 *   pnpm exec tsx packages/db/bench/audit-verify.bench.ts [--records 1000000] [--runs 3]
 *
 * Uses COUNTERSIGN_BENCH_DATABASE_URL (superuser) or starts a local PostgreSQL.
 * Prints, for the whole pipeline (PostgreSQL and Node on their own cores):
 *   transfer  COPY protocol read (copy-out.ts), rows not parsed
 *   parse     + binary tuples split into fields
 *   body      + canonical RFC 8785 body written from the bytes
 *   verify    the real verifier: + SHA-256, link, sequence and head checks
 * and then the Node-side CPU cost per record of each step on records already
 * in memory (so the server's share is out of the picture).
 */
const { values } = parseArgs({
  options: { records: { type: 'string', default: '1000000' }, runs: { type: 'string', default: '3' } },
});
const records = Number(values.records);
const runs = Number(values.runs);
const log = (m: string) => process.stdout.write(`${m}\n`);

const bdb = await benchDatabase('countersign_bench_verify');
const orgId = await seedChain(bdb.superuserUrl, records, log);
const pool = new pg.Pool({ connectionString: bdb.appUrl, max: 2 });

type Stage = 'transfer' | 'parse' | 'body';
async function stage(kind: Stage): Promise<number> {
  const client = await pool.connect();
  try {
    const body = new RecordBodyWriter(orgId);
    const sink = new ByteSink();
    let n = 0;
    const rows = new CopyRowParser((buf, field) => {
      if (kind === 'body') {
        sink.pos = BODY_OFFSET;
        body.write(buf, field, sink);
      }
      n++;
      return true;
    });
    let payloads = 0;
    await copyOut(client, copyRecords(orgId, 1), (buf, start, end) => {
      payloads++;
      return kind === 'transfer' || rows.payload(buf, start, end);
    });
    return kind === 'transfer' ? payloads : n;
  } finally {
    client.release();
  }
}

const rate = (n: number, ms: number) => Math.round((n / ms) * 1000);
const results: Record<string, number[]> = { transfer: [], parse: [], body: [], verify: [] };
for (let r = 0; r < runs; r++) {
  for (const kind of ['transfer', 'parse', 'body'] as const) {
    const t = performance.now();
    await stage(kind);
    results[kind]?.push(rate(records, performance.now() - t));
  }
  const t = performance.now();
  const report = await verifyAuditChain({ pool }, orgId, { mode: 'full' });
  const ms = performance.now() - t;
  if (!report.ok || report.checked !== records) throw new Error(`verification failed: ${JSON.stringify(report)}`);
  results.verify?.push(rate(records, ms));
  log(`run ${r + 1}: verified ${report.checked} records in ${ms.toFixed(0)} ms = ${rate(records, ms)} records/s`);
}
const best = (k: string) => Math.max(...(results[k] ?? [0]));
log('\npipeline (best of runs, records/s):');
for (const k of ['transfer', 'parse', 'body', 'verify']) log(`  ${k.padEnd(9)} ${String(best(k)).padStart(9)}`);

// Node-side CPU per record, on 200k records held in memory.
const sample = Math.min(records, 200_000);
// Payloads kept back to back in one buffer, as they sit in the socket's chunks
// (one small Buffer each would make every copy set up a new view).
let store = Buffer.alloc(64 * 1024 * 1024);
let used = 0;
const spans: number[] = [];
{
  const client = await pool.connect();
  await copyOut(client, copyRecords(orgId, records - sample + 1), (buf, start, end) => {
    if (used + end - start > store.length) {
      const bigger = Buffer.alloc(store.length * 2);
      store.copy(bigger, 0, 0, used);
      store = bigger;
    }
    buf.copy(store, used, start, end);
    spans.push(used, used + end - start);
    used += end - start;
    return true;
  });
  client.release();
}
const eachTuple = (onTuple: TupleHandler) => {
  const rows = new CopyRowParser(onTuple);
  for (let i = 0; i < spans.length; i += 2) rows.payload(store, spans[i] as number, spans[i + 1] as number);
};
// CPU time of this process (not wall time), best of 5: other work on the machine does not count.
const cpu = (fn: () => void) => {
  let best = Number.POSITIVE_INFINITY;
  for (let k = 0; k < 5; k++) {
    const t = process.cpuUsage();
    fn();
    const u = process.cpuUsage(t);
    best = Math.min(best, (u.user + u.system) / sample);
  }
  return best;
};
const parseUs = cpu(() => {
  eachTuple(() => true);
});
const sink = new ByteSink();
const bodyUs = cpu(() => {
  const body = new RecordBodyWriter(orgId);
  eachTuple((buf, field) => {
    sink.pos = BODY_OFFSET;
    body.write(buf, field, sink);
    return true;
  });
});
// Records stored before migration 0010 hold jsonb's rendering: their details are re-canonicalised.
const canonicalBodyUs = cpu(() => {
  const body = new RecordBodyWriter(orgId);
  eachTuple((buf, field) => {
    sink.pos = BODY_OFFSET;
    body.write(buf, field, sink, true);
    return true;
  });
});
const hashUs = cpu(() => {
  const body = new RecordBodyWriter(orgId);
  eachTuple((buf, field) => {
    sink.pos = BODY_OFFSET;
    body.write(buf, field, sink);
    hash('sha256', sink.buf.subarray(0, sink.pos), 'binary');
    return true;
  });
});
const walkUs = cpu(() => {
  const body = new RecordBodyWriter(orgId);
  const walk = new ChainWalk({ fromSeq: records - sample + 1, prevHash: null });
  eachTuple((buf, f) => {
    body.write(buf, f, walk.startBody());
    return walk.record(
      tupleSeq(buf, f),
      buf,
      f[0] as number,
      buf,
      f[16] as number,
      f[17] as number,
      f[18] as number,
      f[19] as number,
    );
  });
  if (walk.checked !== sample) throw new Error('in-memory walk failed');
});
const jsonUs = cpu(() => {
  eachTuple((buf, field) => {
    const o = field[14] as number;
    JSON.parse(buf.toString('utf8', o, o + (field[15] as number)));
    return true;
  });
});
log(`\nNode CPU per record (${sample} records in memory):`);
log(`  binary tuple parsing           ${parseUs.toFixed(2)} us`);
log(`  canonical body from bytes      ${(bodyUs - parseUs).toFixed(2)} us (details as stored)`);
log(
  `    with details re-canonicalised ${(canonicalBodyUs - parseUs).toFixed(2)} us (records stored before migration 0010)`,
);
log(`  SHA-256 (one native call)      ${(hashUs - bodyUs).toFixed(2)} us`);
log(`  links, sequence, compare        ${(walkUs - hashUs).toFixed(2)} us`);
log(`  total Node CPU per record        ${walkUs.toFixed(2)} us (= ${Math.round(1e6 / walkUs)} records/s per core)`);
log(`  for comparison: JSON.parse of details alone ${(jsonUs - parseUs).toFixed(2)} us`);
log(`\nverify: ${best('verify')} records/s (target 250000)`);

await pool.end();
await bdb.stop();
