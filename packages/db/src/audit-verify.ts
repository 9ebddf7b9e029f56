import type pg from 'pg';
import type { ByteSink } from './audit-canonical.ts';
import { type ChainReport, ChainWalk, type TrustedCheckpoint } from './audit-chain.ts';
import { type CheckpointRow, checkpointFromRow, type Keyring, verifyCheckpoint } from './audit-checkpoint.ts';
import { CopyRowParser, F, RECORD_COLUMNS, RecordBodyWriter, tupleSeq } from './audit-copy.ts';
import { copyOut } from './copy-out.ts';

export type { ChainReport } from './audit-chain.ts';

/**
 * Streams an org's audit chain out of PostgreSQL and verifies it (SPEC §1.6).
 *
 * Records come through `COPY (SELECT ...) TO STDOUT (FORMAT binary)`: the
 * server does the least work (no text rendering of timestamps or bytea), the
 * client parses fixed offsets in the socket's own buffers (copy-out.ts), and
 * memory stays constant whatever the length of the chain. The canonical body
 * of each record is written straight from the received bytes (audit-copy.ts),
 * with the details text as stored (the canonical text the appender hashed,
 * migration 0010), and hashed in one native call.
 *
 * Everything is read in one REPEATABLE READ snapshot, so the head row, the
 * checkpoints and the records agree even while the services keep appending.
 *
 * Signed checkpoints (audit-checkpoint.ts) anchor the chain: their signatures
 * are checked with the public keys given, every trusted checkpoint must match
 * the record at its seq (a rewritten chain is caught even when its hashes were
 * recomputed), and records covered by the newest one must all be present
 * (truncation of the newest records is caught).
 */
export interface AuditDatabase {
  readonly pool: pg.Pool;
}

export interface VerifyOptions {
  /** full: from record 1. tail: from the newest trusted checkpoint, else the last `tailRecords`. */
  readonly mode?: 'full' | 'tail';
  readonly tailRecords?: number;
  /** Public keys that may have signed the stored checkpoints; without it stored checkpoints are not trusted. */
  readonly keyring?: Keyring;
  /** Checkpoints the caller brings (already verified, e.g. from an auditor's file); used instead of stored ones. */
  readonly checkpoints?: readonly TrustedCheckpoint[];
  /**
   * Key ids replaced on purpose (COUNTERSIGN_AUDIT_SIGNING_KEY_ROTATE_FROM): the newest stored checkpoint
   * may be theirs while the new key takes over. Any other newest checkpoint must be the keyring's.
   */
  readonly retiredKeyIds?: readonly string[];
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export async function verifyAuditChain(
  database: AuditDatabase,
  orgId: string,
  opts: VerifyOptions = {},
): Promise<ChainReport> {
  if (!UUID.test(orgId)) throw new Error(`not an org id: ${orgId}`);
  const client = await database.pool.connect();
  let healthy = false;
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const heads = await client.query<{ seq: string; hash: Buffer }>(
      'SELECT seq::text AS seq, hash FROM audit_heads WHERE org_id = $1',
      [orgId],
    );
    const headRow = heads.rows[0];
    const head = headRow ? { seq: Number(headRow.seq), hash: headRow.hash } : { seq: 0, hash: Buffer.alloc(32) };
    const checkpoints =
      opts.checkpoints ?? (await trustedStoredCheckpoints(client, orgId, opts.keyring, opts.retiredKeyIds ?? []));
    if ('failure' in checkpoints) {
      await client.query('COMMIT');
      healthy = true;
      return {
        ok: false,
        checked: 0,
        head: { seq: '0', hash: Buffer.alloc(32).toString('hex') },
        first_bad_seq: null,
        reason: checkpoints.failure,
        checkpoint: null,
      };
    }
    let fromSeq = 1;
    let prevHash: Buffer | null = Buffer.alloc(32);
    if (opts.mode === 'tail') {
      const newest = [...checkpoints].filter((c) => c.seq <= head.seq).sort((a, b) => b.seq - a.seq)[0];
      const tail = Math.max(1, opts.tailRecords ?? 10_000);
      fromSeq = newest ? newest.seq : Math.max(1, head.seq - tail + 1);
      if (fromSeq > 1) prevHash = null;
    }
    const walk = new ChainWalk({ fromSeq, prevHash, checkpoints });
    const complete = await streamRecords(client, orgId, fromSeq, walk);
    const report = walk.finish(headRow ? head : null);
    if (complete) {
      await client.query('COMMIT');
      healthy = true;
    }
    return report;
  } finally {
    // A COPY abandoned half-way leaves the connection mid-protocol: discard it.
    client.release(healthy ? undefined : true);
  }
}

async function trustedStoredCheckpoints(
  client: pg.PoolClient,
  orgId: string,
  keyring: Keyring | undefined,
  retiredKeyIds: readonly string[],
): Promise<TrustedCheckpoint[] | { failure: string }> {
  if (keyring === undefined) return [];
  const { rows } = await client.query<CheckpointRow>(
    `SELECT id, org_id, seq::text AS seq, head_hash, at, key_id, signature
     FROM audit_checkpoints WHERE org_id = $1 ORDER BY seq`,
    [orgId],
  );
  const trusted: TrustedCheckpoint[] = [];
  const newest = rows[rows.length - 1];
  for (const row of rows) {
    const cp = checkpointFromRow(row);
    const check = verifyCheckpoint(cp, keyring);
    if (check === 'unknown_key') {
      // The newest checkpoint is signed by a key we do not hold: the chain is vouched for by another
      // key than ours (a lost key file replaced, or a different key mounted). Never pass that silently.
      if (row === newest && !retiredKeyIds.includes(cp.key_id)) {
        return {
          failure: `the newest checkpoint ${cp.id} (seq ${cp.seq}) is signed by key ${cp.key_id}, not by the configured audit signing key (COUNTERSIGN_AUDIT_SIGNING_KEY_FILE)`,
        };
      }
      // An older checkpoint of a key we do not hold (one rotated out) proves nothing either way.
      continue;
    }
    if (check !== 'valid') {
      return { failure: `checkpoint ${cp.id} (seq ${cp.seq}) has an invalid signature: the checkpoint was forged` };
    }
    trusted.push({ id: cp.id, seq: Number(cp.seq), headHash: Buffer.from(cp.head_hash, 'hex') });
  }
  return trusted;
}

/** Returns true when the stream was read to its end (false: stopped at the first bad record). */
async function streamRecords(client: pg.PoolClient, orgId: string, fromSeq: number, walk: ChainWalk): Promise<boolean> {
  const body = new RecordBodyWriter(orgId);
  const p = F.prevHash * 2;
  const h = F.hash * 2;
  let tuple: Buffer = Buffer.alloc(0);
  let fields: Int32Array = new Int32Array(0);
  // Records stored before migration 0010 hold jsonb's rendering of their details, not the hashed text.
  const canonicalised = (sink: ByteSink) => body.write(tuple, fields, sink, true);
  const rows = new CopyRowParser((buf, field) => {
    tuple = buf;
    fields = field;
    body.write(buf, field, walk.startBody());
    return walk.record(
      tupleSeq(buf, field),
      buf,
      field[F.seq * 2] as number,
      buf,
      field[p] as number,
      field[p + 1] as number,
      field[h] as number,
      field[h + 1] as number,
      canonicalised,
    );
  });
  const complete = await copyOut(client, copyRecords(orgId, fromSeq), rows.payload);
  if (complete && !rows.done) throw new Error('the audit COPY ended without its trailer');
  return complete;
}

/** COPY takes no parameters: the org id is checked to be a uuid and the seq an integer before they are inlined. */
export function copyRecords(orgId: string, fromSeq: number, throughSeq?: number): string {
  if (!UUID.test(orgId)) throw new Error(`not an org id: ${orgId}`);
  const upTo = throughSeq === undefined ? '' : ` AND seq <= ${Math.trunc(throughSeq)}`;
  return `COPY (SELECT ${RECORD_COLUMNS} FROM audit_records WHERE org_id = '${orgId}' AND seq >= ${Math.trunc(fromSeq)}${upTo} ORDER BY seq) TO STDOUT (FORMAT binary)`;
}

/** Orgs in creation order (every org has a chain). */
export async function listOrgIds(database: AuditDatabase): Promise<string[]> {
  const { rows } = await database.pool.query<{ id: string }>('SELECT id FROM orgs ORDER BY created_at, id');
  return rows.map((r) => r.id);
}

export interface AllChainsReport {
  ok: boolean;
  checked: number;
  failures: (ChainReport & { org_id: string })[];
}

/** Verifies every org's chain; each failure names its org and first bad record. */
export async function verifyAllChains(database: AuditDatabase, opts: VerifyOptions = {}): Promise<AllChainsReport> {
  let checked = 0;
  const failures: (ChainReport & { org_id: string })[] = [];
  for (const orgId of await listOrgIds(database)) {
    const r = await verifyAuditChain(database, orgId, opts);
    checked += r.checked;
    if (!r.ok) failures.push({ ...r, org_id: orgId });
  }
  return { ok: failures.length === 0, checked, failures };
}
