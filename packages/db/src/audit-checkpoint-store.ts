import { randomUUID } from 'node:crypto';
import { access, writeFile } from 'node:fs/promises';
import { DomainError } from '@countersign/domain';
import { sql } from 'kysely';
import {
  type AuditSigningKey,
  type CheckpointRow,
  checkpointFromRow,
  keyringOf,
  loadOrCreateSigningKey,
  publicKeyFileOf,
  type SignedCheckpoint,
  signCheckpoint,
} from './audit-checkpoint.ts';
import { appendAudit } from './audit-ledger.ts';
import { type AuditDatabase, verifyAuditChain } from './audit-verify.ts';
import type { Db } from './database.ts';

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
  opts: { retiredKeyIds?: readonly string[] } = {},
): Promise<{ checkpoint: SignedCheckpoint; created: boolean }> {
  const report = await verifyAuditChain(database, orgId, {
    mode: 'tail',
    tailRecords: Number.MAX_SAFE_INTEGER,
    keyring: keyringOf(key.publicKey),
    ...(opts.retiredKeyIds ? { retiredKeyIds: opts.retiredKeyIds } : {}),
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

/** The variable an operator fixes when the signing key does not fit the database. */
export const AUDIT_SIGNING_KEY_VARIABLE = 'COUNTERSIGN_AUDIT_SIGNING_KEY_FILE';
export const AUDIT_SIGNING_KEY_ROTATE_VARIABLE = 'COUNTERSIGN_AUDIT_SIGNING_KEY_ROTATE_FROM';

/** The signing key cannot be used with this database: the service must not start (exit 78, like bad configuration). */
export class AuditSigningKeyError extends Error {
  readonly variable = AUDIT_SIGNING_KEY_VARIABLE;

  constructor(message: string) {
    super(message);
    this.name = 'AuditSigningKeyError';
  }
}

/** Who writes the audit record of a key rotation: the operator's configuration, applied at start. */
const KEY_ROTATION_ACTOR = { id: 'system-audit-key-rotation', type: 'system' } as const;

export interface KeyRotation {
  readonly fromKeyId: string;
  readonly toKeyId: string;
  /** Orgs whose chain the new key now vouches for (a fresh checkpoint each). */
  readonly orgs: number;
  /** Orgs whose chain did not verify, so the new key signed nothing for them. */
  readonly failures: { org_id: string; error: string }[];
}

export interface OpenedSigningKey {
  readonly key: AuditSigningKey;
  /** The key file did not exist and was made now (no checkpoint anchored another key). */
  readonly created: boolean;
  /** Set when this start replaced the key named by COUNTERSIGN_AUDIT_SIGNING_KEY_ROTATE_FROM. */
  readonly rotation: KeyRotation | null;
}

/** The key id that signed each org's newest checkpoint: the key the database expects. */
export async function newestCheckpointKeys(database: AuditDatabase): Promise<Map<string, string>> {
  const { rows } = await database.pool.query<{ org_id: string; key_id: string }>(
    `SELECT DISTINCT ON (org_id) org_id, key_id FROM audit_checkpoints ORDER BY org_id, seq DESC`,
  );
  return new Map(rows.map((r) => [r.org_id, r.key_id]));
}

/**
 * Loads the checkpoint signing key for a service's start, and refuses a key
 * the database does not expect. Checkpoints anchor the key: once the newest
 * checkpoint of any org was signed by key K, a start with K's file missing, or
 * with another key in it, would sign on with a key nobody's public half
 * verifies, and the old checkpoints would silently stop proving anything
 * (verification skips checkpoints of keys it does not hold). So:
 *
 * - no checkpoint yet (first start): the key is loaded, or made when `create`
 *   (COUNTERSIGN_AUDIT_SIGNING_KEY_CREATE) allows;
 * - the newest checkpoints are the key's own: it is loaded;
 * - the file is missing or holds another key: AuditSigningKeyError, unless the
 *   operator named the key being replaced in `rotateFrom`
 *   (COUNTERSIGN_AUDIT_SIGNING_KEY_ROTATE_FROM): then the new key (made when
 *   `create` allows and the file is missing) is accepted, each affected org
 *   gets an audit record `audit_signing_key_rotated` (once, however many
 *   services start) and a checkpoint signed with the new key after its chain
 *   verified, and the caller logs a WARN. Naming one key id, rather than a
 *   switch, keeps the setting from accepting a later, unplanned replacement.
 */
export async function openAuditSigningKey(
  handle: AuditDatabase & { readonly db: Db },
  opts: { file: string; create: boolean; rotateFrom: string | null },
): Promise<OpenedSigningKey> {
  const anchors = await newestCheckpointKeys(handle);
  const anchored = [...new Set(anchors.values())].sort();
  const rotating = opts.rotateFrom !== null && anchored.includes(opts.rotateFrom);
  const mayCreate = opts.create && (anchored.length === 0 || (rotating && anchored.length === 1));
  const exists = await access(opts.file).then(
    () => true,
    () => false,
  );
  if (!exists && !mayCreate) {
    if (anchored.length === 0) {
      throw new AuditSigningKeyError(
        `audit signing key ${opts.file} (${AUDIT_SIGNING_KEY_VARIABLE}) does not exist; provide it, or set COUNTERSIGN_AUDIT_SIGNING_KEY_CREATE=true to make one`,
      );
    }
    throw new AuditSigningKeyError(
      `audit signing key ${opts.file} (${AUDIT_SIGNING_KEY_VARIABLE}) does not exist, but the newest audit checkpoints were signed by key ${anchored.join(', ')}: restore that key file${
        anchored.length === 1
          ? `; to replace the key on purpose, set ${AUDIT_SIGNING_KEY_ROTATE_VARIABLE}=${anchored[0]} with a new key file (or with COUNTERSIGN_AUDIT_SIGNING_KEY_CREATE=true) (docs/operator-guide.md)`
          : ''
      }`,
    );
  }
  let loaded: { key: AuditSigningKey; created: boolean };
  try {
    loaded = await loadOrCreateSigningKey(opts.file, { create: mayCreate });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    throw new AuditSigningKeyError(
      `cannot load audit signing key ${opts.file} (${AUDIT_SIGNING_KEY_VARIABLE}): ${message}`,
    );
  }
  const { key, created } = loaded;
  const foreign = anchored.filter((id) => id !== key.keyId);
  if (foreign.length === 0) return { key, created, rotation: null };
  if (opts.rotateFrom === null || foreign.some((id) => id !== opts.rotateFrom)) {
    throw new AuditSigningKeyError(
      `audit signing key ${opts.file} (${AUDIT_SIGNING_KEY_VARIABLE}) is key ${key.keyId}, but the newest audit checkpoints were signed by key ${foreign.join(', ')}: mount the key that signed them${
        foreign.length === 1
          ? `; to replace it with this one on purpose, set ${AUDIT_SIGNING_KEY_ROTATE_VARIABLE}=${foreign[0]} (docs/operator-guide.md)`
          : ''
      }`,
    );
  }
  const fromKeyId = opts.rotateFrom;
  // The public half beside the key is for auditors: the old key's would now mislead them.
  await writeFile(publicKeyFileOf(opts.file), key.publicKeyPem, { mode: 0o644 }).catch((err: unknown) => {
    const code = typeof err === 'object' && err !== null && 'code' in err ? err.code : undefined;
    if (code !== 'EACCES' && code !== 'EROFS' && code !== 'EPERM') throw err;
  });
  const orgs = [...anchors].filter(([, id]) => id === fromKeyId).map(([orgId]) => orgId);
  const failures: { org_id: string; error: string }[] = [];
  for (const orgId of orgs) {
    await recordRotation(handle.db, orgId, fromKeyId, key.keyId);
    try {
      await createCheckpoint(handle, key, orgId, new Date(), { retiredKeyIds: [fromKeyId] });
    } catch (err) {
      failures.push({ org_id: orgId, error: err instanceof Error ? err.message : String(err) });
    }
  }
  return { key, created, rotation: { fromKeyId, toKeyId: key.keyId, orgs: orgs.length - failures.length, failures } };
}

/** One audit record per org and new key, however many services start with the rotation configured. */
async function recordRotation(db: Db, orgId: string, fromKeyId: string, toKeyId: string): Promise<void> {
  await db.transaction().execute(async (tx) => {
    await sql`SELECT pg_advisory_xact_lock(hashtextextended(${`countersign-audit-key-rotation:${orgId}`}, 0))`.execute(
      tx,
    );
    const done = await tx
      .selectFrom('audit_records')
      .select('seq')
      .where('org_id', '=', orgId)
      .where('action', '=', 'audit_signing_key_rotated')
      .where('resource_id', '=', toKeyId)
      .executeTakeFirst();
    if (done) return;
    await appendAudit(tx, {
      orgId,
      actor: KEY_ROTATION_ACTOR,
      action: 'audit_signing_key_rotated',
      resourceType: 'audit_signing_key',
      resourceId: toKeyId,
      details: { from_key_id: fromKeyId, to_key_id: toKeyId },
    });
  });
}
