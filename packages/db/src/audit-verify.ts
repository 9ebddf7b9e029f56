import { sql } from 'kysely';
import { canonicalAuditBody, chainHash, GENESIS_HASH } from './audit-ledger.ts';
import type { Executor } from './database.ts';

/**
 * Walks an org's audit chain in seq order, in fixed-size keyset batches
 * (constant memory), recomputing every hash from the stored columns. Names the
 * first record that does not verify: an edited record fails its own hash, a
 * removed or reordered one breaks the sequence or the prev_hash link, and a
 * chain whose head row disagrees with its last record was truncated or forged.
 */
export interface ChainReport {
  ok: boolean;
  checked: number;
  head: { seq: string; hash: string };
  first_bad_seq: string | null;
  reason: string | null;
}

interface Row {
  seq: string;
  at: Date;
  actor_id: string;
  actor_type: string;
  action: string;
  resource_type: string;
  resource_id: string;
  details: unknown;
  prev_hash: Buffer;
  hash: Buffer;
}

const BATCH = 5_000;

export async function verifyAuditChain(
  ex: Executor,
  orgId: string,
  opts: { fromSeq?: bigint; batchSize?: number } = {},
): Promise<ChainReport> {
  const batch = opts.batchSize ?? BATCH;
  let expectedSeq = 1n;
  let prev: Buffer = GENESIS_HASH;
  if (opts.fromSeq !== undefined && opts.fromSeq > 1n) {
    // Tail mode trusts the record just before fromSeq and verifies from there on.
    const { rows } = await sql<{ hash: Buffer }>`
      SELECT hash FROM audit_records WHERE org_id = ${orgId}::uuid AND seq = ${String(opts.fromSeq - 1n)}::bigint
    `.execute(ex);
    if (rows[0]) {
      expectedSeq = opts.fromSeq;
      prev = rows[0].hash;
    }
  }
  let checked = 0;
  const bad = (seq: bigint, reason: string): ChainReport => ({
    ok: false,
    checked,
    head: { seq: String(expectedSeq - 1n), hash: prev.toString('hex') },
    first_bad_seq: String(seq),
    reason,
  });
  for (;;) {
    const { rows } = await sql<Row>`
      SELECT seq, at, actor_id, actor_type, action, resource_type, resource_id, details, prev_hash, hash
      FROM audit_records WHERE org_id = ${orgId}::uuid AND seq >= ${String(expectedSeq)}::bigint
      ORDER BY seq LIMIT ${batch}
    `.execute(ex);
    for (const r of rows) {
      const seq = BigInt(r.seq);
      if (seq !== expectedSeq) return bad(expectedSeq, `record ${expectedSeq} is missing (next is ${seq})`);
      if (!r.prev_hash.equals(prev)) return bad(seq, `record ${seq} does not link to the hash of record ${seq - 1n}`);
      const body = canonicalAuditBody({
        orgId,
        at: r.at,
        actorId: r.actor_id,
        actorType: r.actor_type,
        action: r.action,
        resourceType: r.resource_type,
        resourceId: r.resource_id,
        details: r.details,
      });
      const h = chainHash(prev, seq, body);
      if (!h.equals(r.hash)) return bad(seq, `record ${seq} content does not match its hash`);
      prev = h;
      expectedSeq = seq + 1n;
      checked++;
    }
    if (rows.length < batch) break;
  }
  const { rows: heads } = await sql<{ seq: string; hash: Buffer }>`
    SELECT seq, hash FROM audit_heads WHERE org_id = ${orgId}::uuid
  `.execute(ex);
  const head = heads[0];
  if (head && (BigInt(head.seq) !== expectedSeq - 1n || !head.hash.equals(prev))) {
    return bad(
      expectedSeq,
      `chain ends at record ${expectedSeq - 1n} but its head says ${head.seq}: records were removed or added`,
    );
  }
  return {
    ok: true,
    checked,
    head: { seq: String(expectedSeq - 1n), hash: prev.toString('hex') },
    first_bad_seq: null,
    reason: null,
  };
}

export async function listOrgIds(ex: Executor): Promise<string[]> {
  const rows = await ex.selectFrom('orgs').select('id').orderBy('created_at').execute();
  return rows.map((r) => r.id);
}

/** Verifies every org's chain; the first failure names its org and record. */
export async function verifyAllChains(
  ex: Executor,
  mode: 'full' | 'tail',
  tailRecords = 10_000,
): Promise<{ ok: boolean; checked: number; failures: (ChainReport & { org_id: string })[] }> {
  let checked = 0;
  const failures: (ChainReport & { org_id: string })[] = [];
  for (const orgId of await listOrgIds(ex)) {
    let fromSeq: bigint | undefined;
    if (mode === 'tail') {
      const head = await ex.selectFrom('audit_heads').select('seq').where('org_id', '=', orgId).executeTakeFirst();
      const top = head ? BigInt(head.seq) : 0n;
      fromSeq = top > BigInt(tailRecords) ? top - BigInt(tailRecords) + 1n : undefined;
    }
    const r = await verifyAuditChain(ex, orgId, fromSeq === undefined ? {} : { fromSeq });
    checked += r.checked;
    if (!r.ok) failures.push({ ...r, org_id: orgId });
  }
  return { ok: failures.length === 0, checked, failures };
}
