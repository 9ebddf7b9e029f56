import type { ConfigurationKind, ConfigurationState } from '@countersign/domain';
import { sql } from 'kysely';
import type { KeysetPosition } from './cursor.ts';
import type { Executor } from './database.ts';
import type { ConfigRequestRow } from './schema.ts';

/** Configuration requests (migration 0016): gate-weakening changes waiting for another admin. */
export interface NewConfigRequest {
  readonly id: string;
  readonly orgId: string;
  readonly kind: ConfigurationKind;
  readonly targetId: string;
  readonly change: Record<string, unknown>;
  readonly summary: string;
  readonly justification: string;
  readonly requestedBy: string;
  readonly expiresAt: Date;
}

export async function insertConfigRequest(ex: Executor, r: NewConfigRequest): Promise<ConfigRequestRow> {
  return ex
    .insertInto('config_requests')
    .values({
      id: r.id,
      org_id: r.orgId,
      kind: r.kind,
      target_id: r.targetId,
      change: JSON.stringify(r.change),
      summary: r.summary,
      justification: r.justification,
      requested_by: r.requestedBy,
      expires_at: r.expiresAt,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

export async function findConfigRequest(ex: Executor, orgId: string, id: string) {
  return ex
    .selectFrom('config_requests')
    .selectAll()
    .where('org_id', '=', orgId)
    .where('id', '=', id)
    .executeTakeFirst();
}

/** Locks the request so concurrent decisions serialize and exactly one wins. */
export async function lockConfigRequest(ex: Executor, orgId: string, id: string) {
  return ex
    .selectFrom('config_requests')
    .selectAll()
    .where('org_id', '=', orgId)
    .where('id', '=', id)
    .forUpdate()
    .executeTakeFirst();
}

export async function markConfigDecided(
  ex: Executor,
  d: {
    id: string;
    state: Exclude<ConfigurationState, 'pending'>;
    decidedBy: string;
    decidedByType: string;
    note: string | null;
    credential: { kind: string; id: string } | null;
  },
): Promise<ConfigRequestRow | undefined> {
  return ex
    .updateTable('config_requests')
    .set({
      state: d.state,
      decided_by: d.decidedBy,
      decided_by_type: d.decidedByType,
      // The guard sets the transaction's own time (the change it authorizes is applied in this transaction).
      decided_at: new Date(),
      decision_note: d.note,
      decided_credential_kind: d.credential?.kind ?? null,
      decided_credential_id: d.credential?.id ?? null,
    })
    .where('id', '=', d.id)
    .where('state', '=', 'pending')
    .returningAll()
    .executeTakeFirst();
}

export interface ConfigRequestFilter {
  readonly orgId: string;
  readonly state?: ConfigurationState | undefined;
  readonly after: KeysetPosition | null;
  readonly limit: number;
}

/** Newest first, keyset-paged on (requested_at, id). */
export async function listConfigRequests(ex: Executor, f: ConfigRequestFilter): Promise<ConfigRequestRow[]> {
  let q = ex.selectFrom('config_requests').selectAll().where('org_id', '=', f.orgId);
  if (f.state) q = q.where('state', '=', f.state);
  if (f.after) {
    const { at, id } = f.after;
    q = q.where(sql<boolean>`(requested_at, id) < (${at}, ${id}::uuid)`);
  }
  return q
    .orderBy('requested_at', 'desc')
    .orderBy('id', 'desc')
    .limit(f.limit + 1)
    .execute();
}

/** Expires up to `limit` pending requests past their deadline (SKIP LOCKED: several reapers share the work). */
export async function expireConfigRequests(
  ex: Executor,
  now: Date,
  limit: number,
  actor: { readonly id: string; readonly type: string },
): Promise<ConfigRequestRow[]> {
  const { rows } = await sql<ConfigRequestRow>`
    UPDATE config_requests c
       SET state = 'expired', decided_by = ${actor.id}, decided_by_type = ${actor.type}, decided_at = now(),
           decision_note = 'configuration request expired'
     WHERE c.id IN (SELECT id FROM config_requests WHERE state = 'pending' AND expires_at <= ${now}
                     ORDER BY expires_at LIMIT ${limit} FOR UPDATE SKIP LOCKED)
       AND c.state = 'pending'
    RETURNING c.*`.execute(ex);
  return rows;
}
