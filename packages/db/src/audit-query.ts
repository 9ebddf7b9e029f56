import { DomainError } from '@countersign/domain';
import type { Db } from './database.ts';
import type { AuditRow } from './schema.ts';

/**
 * The audit query API's reads: an org's records oldest first, filtered by
 * action, actor, resource id and time range, paged by seq (a keyset, so deep
 * pages cost what the first does).
 */
export interface AuditQuery {
  readonly orgId: string;
  readonly action?: string;
  readonly actor?: string;
  readonly resourceId?: string;
  readonly from?: Date;
  readonly to?: Date;
  readonly afterSeq?: string;
  readonly limit: number;
}

/** Returns up to limit + 1 rows so the caller can tell whether another page exists. */
export async function listAuditRecords(db: Db, q: AuditQuery): Promise<AuditRow[]> {
  let query = db.selectFrom('audit_records').selectAll().where('org_id', '=', q.orgId);
  if (q.action !== undefined) query = query.where('action', '=', q.action);
  if (q.actor !== undefined) query = query.where('actor_id', '=', q.actor);
  if (q.resourceId !== undefined) query = query.where('resource_id', '=', q.resourceId);
  if (q.from !== undefined) query = query.where('at', '>=', q.from);
  if (q.to !== undefined) query = query.where('at', '<', q.to);
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

/** Opaque seq cursors (base64url of `s:<seq>`), shared by the record and checkpoint lists. */
export const encodeSeqCursor = (seq: string): string => Buffer.from(`s:${seq}`).toString('base64url');

export function decodeSeqCursor(cursor: string | undefined): string | undefined {
  if (cursor === undefined || cursor === '') return undefined;
  const m = /^s:(0|[1-9]\d{0,17})$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  if (!m?.[1]) throw new DomainError('validation_failed', 'cursor is not valid; use next_cursor from a previous page');
  return m[1];
}
