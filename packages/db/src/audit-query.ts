import { DomainError } from '@countersign/domain';
import { sql } from 'kysely';
import type { Db } from './database.ts';
import type { AuditRow } from './schema.ts';

/**
 * The audit query API's reads: an org's records oldest first, filtered by
 * action, actor, resource id and time range, paged by a keyset (deep pages
 * cost what the first does).
 *
 * Without a time range records come in chain order (seq), each filter read
 * from its index (org_id, column, seq). With `from` or `to` they come in time
 * order (at, then seq), read from audit_records_at (org_id, at, seq): `at` is
 * the writing service's clock when it staged the record and `seq` the order
 * of commits, so the two orders differ by a transaction's length (and the
 * replicas' clock skew), and a time range in seq order could only be found by
 * walking the chain up to it. The cursor says which order it continues
 * (encodeSeqCursor, encodeTimeCursor). Time order suits a closed range; a
 * reader following the ledger as it grows pages by seq, where a record that
 * commits late still comes after the cursor.
 */
export interface AuditQuery {
  readonly orgId: string;
  readonly action?: string;
  readonly actor?: string;
  readonly resourceId?: string;
  readonly from?: Date;
  readonly to?: Date;
  /** Continues a list without a time range. */
  readonly afterSeq?: string;
  /** Continues a list with a time range after the record of this seq. */
  readonly afterTime?: string;
  readonly limit: number;
}

/** Whether a query lists in time order (it has a time range). */
export const listsByTime = (q: Pick<AuditQuery, 'from' | 'to'>): boolean => q.from !== undefined || q.to !== undefined;

/** Returns up to limit + 1 rows so the caller can tell whether another page exists. */
export async function listAuditRecords(db: Db, q: AuditQuery): Promise<AuditRow[]> {
  let query = db.selectFrom('audit_records').selectAll().where('org_id', '=', q.orgId);
  if (q.action !== undefined) query = query.where('action', '=', q.action);
  if (q.actor !== undefined) query = query.where('actor_id', '=', q.actor);
  if (q.resourceId !== undefined) query = query.where('resource_id', '=', q.resourceId);
  if (q.from !== undefined) query = query.where('at', '>=', q.from);
  if (q.to !== undefined) query = query.where('at', '<', q.to);
  if (listsByTime(q)) {
    if (q.afterTime !== undefined) {
      // The position's time as stored (microseconds; a JavaScript date keeps milliseconds), read by key.
      const seq = q.afterTime;
      query = query.where(
        sql<boolean>`(at, seq) > ((SELECT c.at FROM audit_records c WHERE c.org_id = ${q.orgId} AND c.seq = ${seq}::bigint), ${seq}::bigint)`,
      );
    }
    return query
      .orderBy('at', 'asc')
      .orderBy('seq', 'asc')
      .limit(q.limit + 1)
      .execute();
  }
  if (q.afterSeq !== undefined) query = query.where('seq', '>', q.afterSeq);
  return query
    .orderBy('seq', 'asc')
    .limit(q.limit + 1)
    .execute();
}

export function auditRecordView(r: AuditRow) {
  return {
    seq: String(r.seq),
    at: r.at.toISOString(),
    actor_id: r.actor_id,
    actor_type: r.actor_type,
    action: r.action,
    resource_type: r.resource_type,
    resource_id: r.resource_id,
    details: r.details,
    prev_hash: r.prev_hash.toString('hex'),
    hash: r.hash.toString('hex'),
  };
}

const badCursor = () =>
  new DomainError('validation_failed', 'cursor is not valid; use next_cursor from a previous page');

/** Opaque seq cursors (base64url of `s:<seq>`), shared by the record and checkpoint lists. */
export const encodeSeqCursor = (seq: string): string => Buffer.from(`s:${seq}`).toString('base64url');

export function decodeSeqCursor(cursor: string | undefined): string | undefined {
  if (cursor === undefined || cursor === '') return undefined;
  const m = /^s:(0|[1-9]\d{0,17})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!m?.[1]) throw badCursor();
  return m[1];
}

/**
 * Opaque time-order cursors (base64url of `t:<seq>`, the last record listed):
 * a list with a time range continues only from one of its own.
 */
export const encodeTimeCursor = (seq: string): string => Buffer.from(`t:${seq}`).toString('base64url');

export function decodeTimeCursor(cursor: string | undefined): string | undefined {
  if (cursor === undefined || cursor === '') return undefined;
  const m = /^t:(0|[1-9]\d{0,17})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!m?.[1]) throw badCursor();
  return m[1];
}
