import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPostgres } from '@countersign/devstack';
import pg from 'pg';
import { canonicalAuditBody, chainHash, GENESIS_HASH } from '../src/audit-ledger.ts';
import { canonicalJson } from '../src/canonical-json.ts';
import { migrateToLatest } from '../src/migrate.ts';
import { APP_ROLE, databaseUrl, ensureRoles, OWNER_ROLE } from '../src/provision.ts';

/**
 * A PostgreSQL for the benchmarks: COUNTERSIGN_BENCH_DATABASE_URL (a
 * superuser URL) or a throw-away local server (devstack), with the roles and
 * a migrated database of its own.
 */
export interface BenchDatabase {
  readonly superuserUrl: string;
  readonly appUrl: string;
  readonly ownerUrl: string;
  stop(): Promise<void>;
}

export async function benchDatabase(name: string): Promise<BenchDatabase> {
  let base = process.env.COUNTERSIGN_BENCH_DATABASE_URL;
  let stopServer = async () => {};
  if (!base) {
    const dir = await mkdtemp(join(tmpdir(), 'countersign-bench-'));
    // mkdtemp makes 0700 dirs; postgres (its own user when we are root) must traverse it.
    await chmod(dir, 0o755);
    const server = await startPostgres({
      dataDir: join(dir, 'data'),
      fsyncOff: false,
      settings: { max_connections: 200 },
    });
    base = server.url;
    stopServer = async () => {
      await server.stop();
      await rm(dir, { recursive: true, force: true });
    };
  }
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  try {
    await ensureRoles(admin, 'bench-owner', 'bench-app');
    const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
    if (!exists.rowCount) await admin.query(`CREATE DATABASE ${name} OWNER ${OWNER_ROLE}`);
  } finally {
    await admin.end();
  }
  const ownerUrl = databaseUrl(base, OWNER_ROLE, 'bench-owner', name);
  await migrateToLatest(ownerUrl);
  const su = new URL(base);
  return {
    superuserUrl: databaseUrl(base, su.username || 'postgres', decodeURIComponent(su.password), name),
    appUrl: databaseUrl(base, APP_ROLE, 'bench-app', name),
    ownerUrl,
    stop: stopServer,
  };
}

/** Details shaped like the workflow's (approval_requested, certificate_issued, votes). */
export function sampleDetails(seq: number, at: Date): Record<string, unknown> {
  switch (seq % 3) {
    case 0:
      return {
        job_id: '7d6f2c4e-9a1b-4c3d-8e2f-1a2b3c4d5e6f',
        state: 'pending',
        domains: ['web1.example.test', 'www.example.test'],
        environment: 'production',
        approvals_required: 2,
        justification: `new web frontend, change ticket CHG-${seq}`,
        expires_at: at.toISOString(),
      };
    case 1:
      return {
        job_id: '7d6f2c4e-9a1b-4c3d-8e2f-1a2b3c4d5e6f',
        version_id: '5e4d3c2b-1a09-4f8e-9d7c-6b5a49382716',
        serial: '4f1c2a9be07d3c55a1e2f3b4c5d6e7f8',
        fingerprint_sha256: 'c3ab8ff13720e8ad9047dd39466b3c8974e592c2fa383d4a3960714caef0c4f2',
        not_after: at.toISOString(),
        issuer: 'local',
        status: 'completed',
      };
    default:
      return { state: 'pending', note: 'looks right to me', votes: 1, approvals_required: 2 };
  }
}

const ACTIONS = ['approval_requested', 'certificate_issued', 'approval_vote_cast'];

/**
 * Gives the bench org a chain of exactly `records` valid records (written
 * directly as the superuser, in batches, with hashes computed by the ledger's
 * own functions); reuses an existing chain of that length.
 */
export async function seedChain(superuserUrl: string, records: number, log: (m: string) => void): Promise<string> {
  const c = new pg.Client({ connectionString: superuserUrl });
  await c.connect();
  try {
    const found = await c.query<{ id: string; seq: string }>(
      `SELECT o.id, h.seq FROM orgs o JOIN audit_heads h ON h.org_id = o.id WHERE o.name = 'bench-verify'`,
    );
    const row = found.rows[0];
    if (row && Number(row.seq) === records) return row.id;
    if (row) throw new Error(`the bench org already has ${row.seq} records; drop the bench database to reseed`);
    const org = (await c.query<{ id: string }>(`INSERT INTO orgs(name) VALUES ('bench-verify') RETURNING id`)).rows[0]
      ?.id as string;
    let prev: Buffer = GENESIS_HASH;
    const t0 = Date.now();
    const BATCH = 10_000;
    for (let start = 1; start <= records; start += BATCH) {
      const cols: unknown[][] = Array.from({ length: 10 }, () => []);
      for (let seq = start; seq < start + BATCH && seq <= records; seq++) {
        const at = new Date(1_700_000_000_000 + seq * 250);
        const details = sampleDetails(seq, at);
        const f = {
          orgId: org,
          at,
          actorId: 'b1c2d3e4-f5a6-4b7c-8d9e-0f1a2b3c4d5e',
          actorType: 'user',
          action: ACTIONS[seq % 3] as string,
          resourceType: seq % 3 === 1 ? 'certificate' : 'approval',
          resourceId: '0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d',
          details,
        };
        const h = chainHash(prev, BigInt(seq), canonicalAuditBody(f));
        const vals: unknown[] = [seq, at, f.actorId, f.actorType, f.action, f.resourceType, f.resourceId];
        vals.push(canonicalJson(details), prev, h);
        vals.forEach((v, i) => {
          cols[i]?.push(v);
        });
        prev = h;
      }
      await c.query(
        `INSERT INTO audit_records(org_id, seq, at, actor_id, actor_type, action, resource_type, resource_id, details, prev_hash, hash)
         SELECT $1, * FROM unnest($2::bigint[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[],
           $8::text[], $9::json[], $10::bytea[], $11::bytea[])`,
        [org, ...cols],
      );
      if ((start - 1) % 200_000 === 0) log(`seeding: ${start - 1 + BATCH} of ${records}`);
    }
    await c.query('UPDATE audit_heads SET seq = $2, hash = $3 WHERE org_id = $1', [org, records, prev]);
    await c.query('VACUUM ANALYZE audit_records');
    log(`seeded ${records} records in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    return org;
  } finally {
    await c.end();
  }
}
