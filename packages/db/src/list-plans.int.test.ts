import { createTestDatabase, seedOrg, type TestDatabase } from '@countersign/testing';
import { type CompiledQuery, Kysely, PostgresDialect } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApprovalFilter, listApprovals } from './approval.repository.ts';
import { type AuditQuery, listAuditRecords } from './audit-query.ts';
import { listCertificates } from './certificate.repository.ts';
import { listJobs } from './job.repository.ts';
import type { Database } from './schema.ts';

/**
 * Every list endpoint's query, for every combination of its filters, with and
 * without a cursor, must read an index range that matches its filter and its
 * order: a page then costs its own rows, however large the tables grow
 * (issue 20). The SQL explained is what the repository functions the routes
 * call actually send (captured from Kysely). Each is explained twice: as a
 * custom plan (the parameters' values known) and as the generic plan a
 * prepared statement falls back to (the services prepare their statements:
 * database.ts), where the planner must pick an index without the values.
 *
 * The tables hold enough rows (tens of thousands per org, spread over owners,
 * profiles, states, actions and two months) that reading one whole, or
 * sorting a whole org, would be the planner's choice without a fitting index:
 * without migration 0019, jobs without a filter were read with a Seq Scan and
 * a sort, and `GET /audit?from=` walked the org's whole chain by seq.
 */

let tdb: TestDatabase;
let db: Kysely<Database>;
const captured: CompiledQuery[] = [];

const BIG_TABLES = ['certificates', 'jobs', 'approval_requests', 'approval_votes', 'audit_records'];
const N = 40_000;
const AUDIT_N = 100_000;
const OWNERS = 20;
const PROFILES = 10;

interface Fixture {
  orgId: string;
  owners: string[];
  profiles: string[];
  certificateId: string;
  resourceId: string;
  jobCursor: { at: Date; id: string };
  certificateCursor: { at: Date; id: string };
  approvalCursor: { at: Date; id: string };
  auditSeqCursor: string;
  now: Date;
}
let f: Fixture;
const tableOfIndex = new Map<string, string>();

beforeAll(async () => {
  tdb = await createTestDatabase();
  db = new Kysely<Database>({
    dialect: new PostgresDialect({ pool: tdb.handle.pool }),
    log: (event) => {
      if (event.level === 'query') captured.push(event.query);
    },
  });
  const org = await seedOrg(tdb.handle.db);
  const other = await seedOrg(tdb.handle.db);
  const su = new pg.Client({ connectionString: tdb.superuserUrl });
  await su.connect();
  try {
    // Bulk rows straight into the tables: the guards (triggers, foreign keys) check what the
    // services write and are not what is measured here. This database is dropped afterwards.
    await su.query(`SET session_replication_role = replica`);
    for (const t of BIG_TABLES) await su.query(`ALTER TABLE ${t} DISABLE TRIGGER USER`);
    const owners = Array.from({ length: OWNERS }, () => crypto.randomUUID());
    const profiles = Array.from({ length: PROFILES }, () => crypto.randomUUID());
    const voteColumns = await su.query<{ column_name: string }>(
      `SELECT column_name FROM information_schema.columns WHERE table_name = 'approval_votes' AND column_name = 'credential_kind'`,
    );
    const withCredential = voteColumns.rows.length > 0;
    for (const [orgId, n] of [
      [org.orgId, N],
      [other.orgId, N / 4],
    ] as const) {
      await su.query(
        `WITH c AS (
           INSERT INTO certificates (org_id, profile_id, owner_id, common_name, sans, public_key, created_at)
           SELECT $1, ($2::uuid[])[1 + g % $5], ($3::uuid[])[1 + (g / 7) % $6], 'h' || g || '.example.com',
                  ARRAY['h' || g || '.example.com'], '\\x00'::bytea,
                  date_trunc('milliseconds', now()) - make_interval(secs => g * 60)
           FROM generate_series(1, $4) g RETURNING id, profile_id, owner_id, created_at, sans
         ), j AS (
           INSERT INTO jobs (org_id, certificate_id, profile_id, kind, status, requires_approval, requested_by,
                             requester_type, common_name, sans, public_key, created_at)
           SELECT $1, c.id, c.profile_id, 'issuance', 'completed', true, c.owner_id::text, 'user', c.sans[1], c.sans,
                  '\\x00'::bytea, c.created_at
           FROM c RETURNING id, certificate_id, profile_id, requested_by, created_at, sans
         )
         INSERT INTO approval_requests (org_id, job_id, certificate_id, profile_id, requested_by, requester_type,
                                        justification, domains, environment, approvals_required, requested_at,
                                        expires_at, state, decided_by, decided_by_type, decided_at)
         SELECT $1, j.id, j.certificate_id, j.profile_id, j.requested_by, 'user', 'plans', j.sans, 'production', 1,
                j.created_at, j.created_at + interval '7 days', s.state,
                CASE WHEN s.state = 'pending' THEN NULL ELSE 'system-reaper' END,
                CASE WHEN s.state = 'pending' THEN NULL ELSE 'system' END,
                CASE WHEN s.state = 'pending' THEN NULL ELSE j.created_at + interval '1 hour' END
         FROM j, LATERAL (SELECT (ARRAY['pending', 'approved', 'approved', 'approved', 'rejected', 'expired',
                                       'approved', 'approved', 'expired', 'approved'])[1 + (extract(epoch FROM j.created_at)::bigint / 60) % 10] AS state) s`,
        [orgId, profiles, owners, n, PROFILES, OWNERS],
      );
      await su.query(
        `INSERT INTO approval_votes (approval_id, org_id, voter_id, voter_type, requested_by, voted_at
                                     ${withCredential ? ', credential_kind, credential_id' : ''})
         SELECT a.id, a.org_id, $2::uuid, 'user', a.requested_by, a.decided_at
                ${withCredential ? ", 'api_key', gen_random_uuid()" : ''}
         FROM approval_requests a WHERE a.org_id = $1 AND a.state = 'approved'`,
        [orgId, crypto.randomUUID()],
      );
    }
    const actions = [
      'certificate_requested',
      'approval_requested',
      'approval_vote_cast',
      'approval_approved',
      'job_released',
      'certificate_issued',
      'approval_expired',
      'renewal_requested',
    ];
    await su.query(
      `INSERT INTO audit_records (org_id, seq, at, actor_id, actor_type, action, resource_type, resource_id, details,
                                  prev_hash, hash)
       SELECT $1, base.seq + g, date_trunc('milliseconds', now()) - make_interval(secs => ($2 - g) * 60),
              ($3::text[])[1 + g % $4], 'user', ($5::text[])[1 + g % $6], 'approval', md5((g / 4)::text),
              '{}'::jsonb, decode(repeat('00', 32), 'hex'), decode(repeat('00', 32), 'hex')
       FROM generate_series(1, $2) g, (SELECT coalesce(max(seq), 0) AS seq FROM audit_records WHERE org_id = $1) base`,
      [org.orgId, AUDIT_N, owners, OWNERS, actions, actions.length],
    );
    for (const t of BIG_TABLES) await su.query(`ANALYZE ${t}`);
    const indexes = await su.query<{ indexname: string; tablename: string }>(
      `SELECT indexname, tablename FROM pg_indexes WHERE schemaname = 'public'`,
    );
    for (const r of indexes.rows) tableOfIndex.set(r.indexname, r.tablename);
    const pick = async <T extends pg.QueryResultRow>(sqlText: string, values: unknown[]) => {
      const { rows } = await su.query<T>(sqlText, values);
      if (!rows[0]) throw new Error(`fixture query found nothing: ${sqlText}`);
      return rows[0];
    };
    const cert = await pick<{ id: string }>(
      `SELECT certificate_id AS id FROM approval_requests WHERE org_id = $1 ORDER BY requested_at DESC OFFSET 500 LIMIT 1`,
      [org.orgId],
    );
    const jobAt = await pick<{ at: Date; id: string }>(
      `SELECT created_at AS at, id FROM jobs WHERE org_id = $1 ORDER BY created_at DESC, id DESC OFFSET 200 LIMIT 1`,
      [org.orgId],
    );
    const certAt = await pick<{ at: Date; id: string }>(
      `SELECT created_at AS at, id FROM certificates WHERE org_id = $1 ORDER BY created_at DESC, id DESC OFFSET 200 LIMIT 1`,
      [org.orgId],
    );
    const apprAt = await pick<{ at: Date; id: string }>(
      `SELECT requested_at AS at, id FROM approval_requests WHERE org_id = $1 ORDER BY requested_at DESC, id DESC OFFSET 200 LIMIT 1`,
      [org.orgId],
    );
    const auditAt = await pick<{ seq: string; resource_id: string }>(
      `SELECT seq::text AS seq, resource_id FROM audit_records WHERE org_id = $1 ORDER BY seq OFFSET 60000 LIMIT 1`,
      [org.orgId],
    );
    f = {
      orgId: org.orgId,
      owners,
      profiles,
      certificateId: cert.id,
      resourceId: auditAt.resource_id,
      jobCursor: jobAt,
      certificateCursor: certAt,
      approvalCursor: apprAt,
      auditSeqCursor: auditAt.seq,
      now: new Date(),
    };
  } finally {
    await su.end();
  }
}, 300_000);

afterAll(async () => {
  await tdb?.drop();
});

interface PlanNode {
  'Node Type': string;
  'Parent Relationship'?: string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Index Cond'?: string;
  Filter?: string;
  Plans?: PlanNode[];
}

/** Every node, and whether it computes a value the main scan uses (an InitPlan: the cursor's position). */
function flatten(node: PlanNode, initPlan = false): { node: PlanNode; initPlan: boolean }[] {
  const here = initPlan || node['Parent Relationship'] === 'InitPlan';
  return [{ node, initPlan: here }, ...(node.Plans ?? []).flatMap((child) => flatten(child, here))];
}

/** The one statement `run` sends. */
async function sqlOf(run: () => Promise<unknown>): Promise<CompiledQuery> {
  captured.length = 0;
  await run();
  expect(captured).toHaveLength(1);
  return captured[0] as CompiledQuery;
}

const literal = (client: pg.Client, v: unknown): string => {
  if (v === null || v === undefined) return 'NULL';
  if (v instanceof Date) return client.escapeLiteral(v.toISOString());
  if (typeof v === 'number' || typeof v === 'bigint') return String(v);
  if (Array.isArray(v)) return client.escapeLiteral(`{${v.map((x) => JSON.stringify(String(x))).join(',')}}`);
  return client.escapeLiteral(String(v));
};

/** Custom plan (values bound) and generic plan (PREPARE under force_generic_plan) of one statement. */
async function plansOf(q: CompiledQuery): Promise<{ custom: PlanNode; generic: PlanNode }> {
  const client = new pg.Client({ connectionString: tdb.appUrl });
  await client.connect();
  try {
    const custom = await client.query<{ 'QUERY PLAN': { Plan: PlanNode }[] }>(`EXPLAIN (FORMAT JSON) ${q.sql}`, [
      ...q.parameters,
    ]);
    await client.query('SET plan_cache_mode = force_generic_plan');
    await client.query(`PREPARE list_query AS ${q.sql}`);
    const generic = await client.query<{ 'QUERY PLAN': { Plan: PlanNode }[] }>(
      `EXPLAIN (FORMAT JSON) EXECUTE list_query(${q.parameters.map((p) => literal(client, p)).join(', ')})`,
    );
    const plan = (r: typeof custom) => (r.rows[0]?.['QUERY PLAN'][0] as { Plan: PlanNode }).Plan;
    return { custom: plan(custom), generic: plan(generic) };
  } finally {
    await client.end();
  }
}

/**
 * The plan scans no big table whole, and reads `table` through an index range
 * (an Index Cond) of one of `indexes`. With `strict` (no filter or one), every
 * read of `table` is such a range and the rows come in index order (no sort);
 * a combination of filters may also intersect another index's bitmap and sort
 * the few rows that match them all. Lookups in an InitPlan (a cursor's
 * position, by primary key) must be index ranges too.
 */
function expectServed(plan: PlanNode, table: string, indexes: readonly string[], strict: boolean, what: string) {
  const all = flatten(plan);
  const shown = JSON.stringify(plan, null, 1);
  for (const { node: n } of all) {
    if (n['Node Type'] === 'Seq Scan') {
      expect(BIG_TABLES, `${what}: Seq Scan on ${n['Relation Name']}\n${shown}`).not.toContain(n['Relation Name']);
    }
  }
  const tableOf = (n: PlanNode) => n['Relation Name'] ?? tableOfIndex.get(n['Index Name'] ?? '');
  const scans = all.filter(
    ({ node: n }) =>
      ['Index Scan', 'Index Only Scan', 'Bitmap Index Scan'].includes(n['Node Type']) && tableOf(n) === table,
  );
  for (const { node: n } of scans.filter((s) => s.initPlan)) {
    expect(n['Index Cond'], `${what}: ${n['Index Name']} without an Index Cond\n${shown}`).toBeTruthy();
  }
  const main = scans.filter((s) => !s.initPlan).map((s) => s.node);
  const served = main.filter((n) => indexes.includes(n['Index Name'] ?? '') && n['Index Cond']);
  expect(
    served.length,
    `${what}: ${table} is not read from a range of ${indexes.join(' or ')}\n${shown}`,
  ).toBeGreaterThan(0);
  if (strict) {
    for (const n of main) {
      expect(indexes, `${what}: read through ${n['Index Name']}\n${shown}`).toContain(n['Index Name']);
      // A range, not a walk of the whole index with a filter.
      expect(n['Index Cond'], `${what}: ${n['Index Name']} without an Index Cond\n${shown}`).toBeTruthy();
    }
    expect(
      all.filter(({ node: n }) => n['Node Type'] === 'Sort' || n['Node Type'] === 'Incremental Sort'),
      `${what}: sorted instead of read in index order\n${shown}`,
    ).toEqual([]);
  }
}

/** Every subset of `keys`. */
function combinations<K extends string>(keys: readonly K[]): K[][] {
  const subsets: K[][] = [[]];
  for (const k of keys) {
    for (const c of subsets.slice()) subsets.push([...c, k]);
  }
  return subsets;
}

async function check(
  name: string,
  table: string,
  run: () => Promise<unknown>,
  indexes: readonly string[],
  strict: boolean,
) {
  const q = await sqlOf(run);
  const { custom, generic } = await plansOf(q);
  expectServed(custom, table, indexes, strict, `${name} (custom plan)`);
  expectServed(generic, table, indexes, strict, `${name} (generic plan)`);
}

describe('GET /api/v1/jobs', () => {
  const INDEX = {
    none: ['jobs_org_created'],
    certificateId: ['jobs_certificate_created'],
    requestedBy: ['jobs_org_requester_created'],
  } as const;
  for (const keys of combinations(['certificateId', 'requestedBy'] as const)) {
    for (const paged of [false, true]) {
      const name = `filters [${keys.join(', ')}]${paged ? ' after a cursor' : ''}`;
      it(`${name} is read from an index range in order`, async () => {
        await check(
          name,
          'jobs',
          () =>
            listJobs(db, {
              orgId: f.orgId,
              ...(keys.includes('certificateId') ? { certificateId: f.certificateId } : {}),
              ...(keys.includes('requestedBy') ? { requestedBy: f.owners[3] } : {}),
              before: paged ? f.jobCursor : null,
              limit: 50,
            }),
          keys.length === 0 ? INDEX.none : keys.flatMap((k) => INDEX[k]),
          keys.length <= 1,
        );
      });
    }
  }
});

describe('GET /api/v1/certificates', () => {
  const INDEX = {
    none: ['certificates_org_created'],
    ownerId: ['certificates_org_owner_created'],
    profileId: ['certificates_org_profile_created'],
  } as const;
  for (const keys of combinations(['ownerId', 'profileId'] as const)) {
    for (const paged of [false, true]) {
      const name = `filters [${keys.join(', ')}]${paged ? ' after a cursor' : ''}`;
      it(`${name} is read from an index range in order`, async () => {
        await check(
          name,
          'certificates',
          () =>
            listCertificates(db, {
              orgId: f.orgId,
              ...(keys.includes('ownerId') ? { ownerId: f.owners[5] } : {}),
              ...(keys.includes('profileId') ? { profileId: f.profiles[2] } : {}),
              after: paged ? f.certificateCursor : null,
              limit: 50,
            }),
          keys.length === 0 ? INDEX.none : keys.flatMap((k) => INDEX[k]),
          keys.length <= 1,
        );
      });
    }
  }
});

describe('GET /api/v1/approvals', () => {
  const INDEX = {
    none: ['approvals_org_requested'],
    state: ['approvals_org_state_requested', 'approvals_pending_queue'],
    profileId: ['approvals_org_profile_requested'],
    requestedBy: ['approvals_org_requester_requested'],
    certificateId: ['approvals_certificate_requested'],
  } as const;
  for (const keys of combinations(['state', 'profileId', 'requestedBy', 'certificateId'] as const)) {
    for (const state of keys.includes('state') ? (['pending', 'approved'] as const) : ([undefined] as const)) {
      for (const paged of [false, true]) {
        const name = `filters [${keys.map((k) => (k === 'state' ? `state=${state}` : k)).join(', ')}]${paged ? ' after a cursor' : ''}`;
        it(`${name} is read from an index range`, async () => {
          const filter: ApprovalFilter = {
            orgId: f.orgId,
            ...(state ? { state } : {}),
            ...(keys.includes('profileId') ? { profileId: f.profiles[4] } : {}),
            ...(keys.includes('requestedBy') ? { requestedBy: f.owners[7] } : {}),
            ...(keys.includes('certificateId') ? { certificateId: f.certificateId } : {}),
            after: paged ? f.approvalCursor : null,
            limit: 50,
          };
          await check(
            name,
            'approval_requests',
            () => listApprovals(db, filter),
            keys.length === 0 ? INDEX.none : keys.flatMap((k) => INDEX[k]),
            keys.length <= 1,
          );
        });
      }
    }
  }
});

describe('GET /api/v1/audit', () => {
  const INDEX = {
    none: ['audit_records_pkey'],
    action: ['audit_records_action'],
    actor: ['audit_records_actor'],
    resourceId: ['audit_records_resource'],
    from: ['audit_records_at'],
    to: ['audit_records_at'],
  } as const;
  const DAY = 86_400_000;
  for (const keys of combinations(['action', 'actor', 'resourceId', 'from', 'to'] as const)) {
    for (const paged of [false, true]) {
      for (const fromDaysAgo of keys.includes('from') ? [1, 60] : [0]) {
        const name = `filters [${keys.map((k) => (k === 'from' ? `from=${fromDaysAgo}d ago` : k)).join(', ')}]${paged ? ' after a cursor' : ''}`;
        it(`${name} is read from an index range`, async () => {
          const byTime = keys.includes('from') || keys.includes('to');
          const q: AuditQuery = {
            orgId: f.orgId,
            limit: 50,
            ...(keys.includes('action') ? { action: 'approval_vote_cast' } : {}),
            ...(keys.includes('actor') ? { actor: f.owners[9] } : {}),
            ...(keys.includes('resourceId') ? { resourceId: f.resourceId } : {}),
            ...(keys.includes('from') ? { from: new Date(f.now.getTime() - fromDaysAgo * DAY) } : {}),
            ...(keys.includes('to') ? { to: new Date(f.now.getTime() - 30 * DAY) } : {}),
            ...(paged ? (byTime ? { afterTime: f.auditSeqCursor } : { afterSeq: f.auditSeqCursor }) : {}),
          };
          await check(
            name,
            'audit_records',
            () => listAuditRecords(db, q),
            keys.length === 0 ? INDEX.none : keys.flatMap((k) => INDEX[k]),
            // from and to are one range of one index.
            new Set(keys.map((k) => (k === 'to' ? 'from' : k))).size <= 1,
          );
        });
      }
    }
  }
});
