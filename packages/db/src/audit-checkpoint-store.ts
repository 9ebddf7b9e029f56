import { randomUUID } from 'node:crypto';
import { DomainError } from '@countersign/domain';
import {
  type AuditSigningKey,
  type CheckpointRow,
  checkpointFromRow,
  keyringOf,
  type SignedCheckpoint,
  signCheckpoint,
} from './audit-checkpoint.ts';
import { type AuditDatabase, verifyAuditChain } from './audit-verify.ts';

/**
 * Creates a signed checkpoint of an org's chain head. The ledger signs only
 * what it has just verified: the records since the previous signed checkpoint
 * (all of them for the first one) are walked first, so a chain that was
 * edited or rewritten is refused rather than blessed. Called by the reaper's
 * schedule and by POST /api/v1/audit/checkpoints; safe to run concurrently or
 * twice (one checkpoint per org and seq: a head that has not moved returns the
 * existing checkpoint).
 */
export async function createCheckpoint(
  database: AuditDatabase,
  key: AuditSigningKey,
  orgId: string,
  now: Date = new Date(),
): Promise<{ checkpoint: SignedCheckpoint; created: boolean }> {
  const report = await verifyAuditChain(database, orgId, {
    mode: 'tail',
    tailRecords: Number.MAX_SAFE_INTEGER,
    keyring: keyringOf(key.publicKey),
  });
  if (!report.ok) {
    throw new DomainError(
      'conflict',
      `the audit chain does not verify, so no checkpoint was signed: record ${report.first_bad_seq}: ${report.reason}`,
      { first_bad_seq: report.first_bad_seq },
    );
  }
  const at = new Date(Math.floor(now.getTime()));
  const cp = signCheckpoint(key, {
    id: randomUUID(),
    org_id: orgId,
    seq: report.head.seq,
    head_hash: report.head.hash,
    at: at.toISOString(),
  });
  const inserted = await database.pool.query(
    `INSERT INTO audit_checkpoints(id, org_id, seq, head_hash, at, key_id, signature)
     VALUES ($1, $2, $3::bigint, $4, $5, $6, $7) ON CONFLICT (org_id, seq) DO NOTHING`,
    [cp.id, cp.org_id, cp.seq, Buffer.from(cp.head_hash, 'hex'), at, cp.key_id, Buffer.from(cp.signature, 'base64')],
  );
  if (inserted.rowCount === 1) return { checkpoint: cp, created: true };
  const { rows } = await database.pool.query<CheckpointRow>(
    `SELECT id, org_id, seq::text AS seq, head_hash, at, key_id, signature FROM audit_checkpoints
     WHERE org_id = $1 AND seq = $2::bigint`,
    [orgId, cp.seq],
  );
  const existing = rows[0];
  if (!existing) throw new Error('checkpoint insert conflicted but no checkpoint exists');
  return { checkpoint: checkpointFromRow(existing), created: false };
}

/** One checkpoint per org; failures are collected, not thrown, so one broken org does not stop the others. */
export async function createCheckpointsForAllOrgs(
  database: AuditDatabase,
  key: AuditSigningKey,
  now: Date = new Date(),
): Promise<{ created: number; unchanged: number; failures: { org_id: string; error: string }[] }> {
  const { rows } = await database.pool.query<{ id: string }>('SELECT id FROM orgs ORDER BY created_at, id');
  let created = 0;
  let unchanged = 0;
  const failures: { org_id: string; error: string }[] = [];
  for (const { id } of rows) {
    try {
      const r = await createCheckpoint(database, key, id, now);
      if (r.created) created++;
      else unchanged++;
    } catch (err) {
      failures.push({ org_id: id, error: err instanceof Error ? err.message : String(err) });
    }
  }
  return { created, unchanged, failures };
}
