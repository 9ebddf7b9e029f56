import { createHash } from 'node:crypto';
import type { Actor } from '@countersign/domain';
import { type RawBuilder, sql } from 'kysely';
import { canonicalJson } from './canonical-json.ts';
import type { Executor } from './database.ts';

/**
 * The way records are written to the audit ledger (the one exception is the
 * reaper's expiry, approvals.expireBatch, which renders its records in SQL to
 * these same bytes and stages them the same way). Each record extends its
 * org's SHA-256 chain in the caller's transaction (SPEC §1.6):
 *   hash = SHA-256(prev_hash || seq as 8-byte big-endian || canonical body)
 * where the canonical body is the RFC 8785 JSON of the record's own columns.
 * Records are staged in the transaction and linked into the chain at COMMIT by
 * a deferred trigger (migration 0006), so the org's chain head is locked only
 * for the commit itself, not across the service's round trips. Large batches
 * (the reaper's) are linked at once with one head update instead.
 */
export const AUDIT_ACTIONS = [
  'org_created',
  'principal_created',
  'principal_updated',
  'config_request_submitted',
  'config_request_approved',
  'config_request_rejected',
  'config_request_cancelled',
  'config_request_expired',
  'api_key_created',
  'api_key_revoked',
  'client_certificate_registered',
  'client_certificate_deleted',
  'intake_key_registered',
  'intake_key_revoked',
  /** A `renewal-requests` message refused before anything was written (its reason, kid and queue job). */
  'intake_message_rejected',
  'profile_created',
  'profile_updated',
  'certificate_requested',
  'renewal_requested',
  'approval_requested',
  'approval_vote_cast',
  'approval_approved',
  'approval_rejected',
  'approval_voided',
  'approval_expired',
  'approval_bypassed',
  'approval_escalated',
  'job_released',
  'job_cancelled',
  'certificate_issued',
  'issuance_failed',
  /** The checkpoint signing key was replaced on purpose (COUNTERSIGN_AUDIT_SIGNING_KEY_ROTATE_FROM). */
  'audit_signing_key_rotated',
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

/** Actions that end an approval request; exactly one per decided request. */
export const DECISION_ACTIONS: readonly AuditAction[] = [
  'approval_approved',
  'approval_rejected',
  'approval_voided',
  'approval_expired',
  'approval_bypassed',
];

export interface AuditEntry {
  readonly orgId: string;
  readonly actor: Actor;
  readonly action: AuditAction;
  readonly resourceType: string;
  readonly resourceId: string;
  readonly details: Record<string, unknown>;
}

export interface AuditBodyFields {
  readonly orgId: string;
  /** A string is taken verbatim (an exported ledger's ISO timestamp). */
  readonly at: Date | string;
  readonly actorId: string;
  readonly actorType: string;
  readonly action: string;
  readonly resourceType: string;
  readonly resourceId: string;
  readonly details: unknown;
}

export const GENESIS_HASH = Buffer.alloc(32);

export function canonicalAuditBody(r: AuditBodyFields): Buffer {
  return auditBodyAround(r, canonicalJson(r.details));
}

/**
 * The canonical body of a record whose details are already canonical text
 * (the appender stores that same text, so it canonicalises details once).
 * Members are written in RFC 8785 order (their names are fixed ASCII); the
 * unit tests compare this with canonicalJson of the whole record.
 */
function auditBodyAround(r: Omit<AuditBodyFields, 'details'>, details: string): Buffer {
  const str = canonicalJson;
  const at = typeof r.at === 'string' ? r.at : r.at.toISOString();
  return Buffer.from(
    `{"action":${str(r.action)},"actor_id":${str(r.actorId)},"actor_type":${str(r.actorType)},"at":${str(at)},` +
      `"details":${details},"org_id":${str(r.orgId)},"resource_id":${str(r.resourceId)},"resource_type":${str(r.resourceType)}}`,
    'utf8',
  );
}

export function chainHash(prevHash: Buffer, seq: bigint, body: Buffer): Buffer {
  const seqBytes = Buffer.alloc(8);
  seqBytes.writeBigInt64BE(seq);
  return createHash('sha256').update(prevHash).update(seqBytes).update(body).digest();
}

/** Appends one record; it joins the chain when the transaction commits. */
export async function appendAudit(ex: Executor, entry: AuditEntry, at: Date = new Date()): Promise<void> {
  await appendAuditMany(ex, [entry], at);
}

/**
 * Stages a transaction's records, one row of arrays per org; they join the
 * chain when the transaction commits, in the order they were staged, each
 * org's batch under one lock and one update of its chain head, so the head is
 * held only for the commit itself (migrations 0006 and 0012).
 */
export async function appendAuditMany(
  ex: Executor,
  entries: readonly AuditEntry[],
  at: Date = new Date(),
): Promise<void> {
  for (const staging of auditStagingInserts(entries, at)) await staging.execute(ex);
}

/**
 * auditStagingInserts as named CTEs (`audit_0 AS (...)`, one per org), for a
 * statement of data-modifying CTEs such as submission-write.ts builds.
 */
export function auditStagingCtes(
  entries: readonly AuditEntry[],
  at: Date,
  onlyIf?: RawBuilder<unknown>,
): RawBuilder<unknown>[] {
  return auditStagingInserts(entries, at, onlyIf).map((insert, i) => sql`${sql.raw(`audit_${i}`)} AS (${insert})`);
}

/**
 * The INSERTs appendAuditMany runs, one per org in org order, as statements to
 * run or to embed in a larger one (a data-modifying WITH, as a submission does).
 */
function auditStagingInserts(
  entries: readonly AuditEntry[],
  at: Date = new Date(),
  /** A condition the rows are staged under (inside a larger statement: "only if that update hit its row"). */
  onlyIf: RawBuilder<unknown> = sql`true`,
): RawBuilder<unknown>[] {
  // Microseconds are dropped so the timestamp read back equals the one hashed.
  const when = new Date(Math.floor(at.getTime()));
  const byOrg = new Map<string, AuditEntry[]>();
  for (const e of entries) {
    const mine = byOrg.get(e.orgId);
    if (mine) mine.push(e);
    else byOrg.set(e.orgId, [e]);
  }
  // Orgs in a fixed order: heads are locked at COMMIT in staging order, so two such calls never deadlock.
  return [...byOrg]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([orgId, batch]) => {
      // Canonical details text once per record: it is hashed inside the body and stored as is (json), so the
      // verifier hashes it without re-rendering.
      const detailsTexts = batch.map((e) => canonicalJson(e.details));
      const bodies = batch.map((e, i) =>
        auditBodyAround(
          {
            orgId,
            at: when,
            actorId: e.actor.id,
            actorType: e.actor.type,
            action: e.action,
            resourceType: e.resourceType,
            resourceId: e.resourceId,
          },
          detailsTexts[i] as string,
        ),
      );
      return sql`
        INSERT INTO audit_staging_batches
          (org_id, at, actor_ids, actor_types, actions, resource_types, resource_ids, details, bodies)
        SELECT ${orgId}::uuid, ${when}::timestamptz,
          ${batch.map((e) => e.actor.id)}::text[], ${batch.map((e) => e.actor.type)}::text[],
          ${batch.map((e) => e.action)}::text[], ${batch.map((e) => e.resourceType)}::text[],
          ${batch.map((e) => e.resourceId)}::text[], ${detailsTexts}::json[], ${bodies}::bytea[]
        WHERE ${onlyIf}
      `;
    });
}
