import { type ColumnType, type Generated, type Kysely, type RawBuilder, type Selectable, sql } from 'kysely';
import type { Executor } from './database.ts';
import type { Database } from './schema.ts';

/**
 * Notification delivery records (migration 0002): exactly one mail per
 * (event, recipient). The notifier records the deliveries of an event, claims
 * one before its SMTP transaction and marks it sent after. Claims and leases
 * use the database clock, so notifiers on hosts with skewed clocks agree.
 */
export const DELIVERY_STATUSES = ['pending', 'sent', 'failed', 'skipped'] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;
type NullableTimestamp = ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;

export interface NotificationDeliveriesTable {
  id: Generated<string>;
  org_id: string;
  event_key: string;
  kind: string;
  recipient: string;
  subject: string;
  status: Generated<string>;
  attempts: Generated<number>;
  last_error: string | null;
  /** Attempts that got no SMTP reply at all: each may have delivered the mail (migration 0008). */
  unanswered_attempts: Generated<number>;
  message_id: string | null;
  claimed_until: NullableTimestamp;
  created_at: Timestamp;
  updated_at: Timestamp;
  sent_at: NullableTimestamp;
}
export type DeliveryRow = Selectable<NotificationDeliveriesTable>;

// The table type lives with its repository; schema.ts stays the core schema of 0001.
type Tables = Database & { notification_deliveries: NotificationDeliveriesTable };
function q(ex: Executor): Kysely<Tables> {
  // A transaction is a Kysely too; withTables keeps it bound to the same connection.
  const k: Kysely<Database> = ex;
  return k.withTables<{ notification_deliveries: NotificationDeliveriesTable }>();
}

/** The event whose deliveries are recorded: every delivery of it shares these. */
export interface DeliveryEvent {
  readonly orgId: string;
  readonly eventKey: string;
  readonly kind: string;
  readonly subject: string;
}

export interface NewDelivery {
  readonly recipient: string;
  /** Recorded directly as `skipped` (with the reason) instead of waiting to be sent. */
  readonly skipReason?: string | null;
}

const byRecipient = (a: { recipient: string }, b: { recipient: string }): number =>
  a.recipient < b.recipient ? -1 : a.recipient > b.recipient ? 1 : 0;

/** Claims taken while recording: the first `max` sendable deliveries, in recipient order. */
export interface ClaimOnRecord {
  /** One SMTP transaction's lease; the k-th claimed delivery is held for k leases, as they are sent in turn. */
  readonly leaseMs: number;
  readonly max: number;
}

export interface RecordedDeliveries {
  /** Every delivery of the event, in recipient order. */
  readonly rows: DeliveryRow[];
  /** Those this call inserted. */
  readonly inserted: DeliveryRow[];
  /** Ids of the deliveries this call inserted already claimed for the caller. */
  readonly claimed: ReadonlySet<string>;
}

/**
 * Records the deliveries of one event; rows that already exist (a re-delivered
 * message, another replica) are kept as they are. With `claim`, new pending
 * rows are inserted already claimed, so the usual case (a fresh event) is one
 * statement. Rows that existed before are never claimed here: the caller
 * claims them one by one, as their previous holder may still be sending.
 */
export async function recordDeliveries(
  ex: Executor,
  event: DeliveryEvent,
  recipients: readonly NewDelivery[],
  claim?: ClaimOnRecord,
): Promise<RecordedDeliveries> {
  if (recipients.length === 0) return { rows: [], inserted: [], claimed: new Set() };
  const ordered = [...recipients].sort(byRecipient);
  let claims = 0;
  const claimSecs = ordered.map((r) =>
    claim && !r.skipReason && claims < claim.max ? (++claims * claim.leaseMs) / 1000 : null,
  );
  // The final SELECT reads the statement's snapshot: the rows that existed before it, never the ones the
  // INSERT adds (those come from RETURNING), so each row appears once.
  const { rows: found } = await sql<DeliveryRow & { inserted: boolean }>`
    WITH input AS (
      SELECT * FROM unnest(${ordered.map((r) => r.recipient)}::text[], ${ordered.map((r) => r.skipReason ?? null)}::text[],
                           ${claimSecs}::float8[]) AS t(recipient, skip_reason, claim_secs)
    ), ins AS (
      INSERT INTO notification_deliveries AS d
        (org_id, event_key, kind, recipient, subject, status, last_error, attempts, claimed_until)
      SELECT ${event.orgId}::uuid, ${event.eventKey}, ${event.kind}, i.recipient, ${event.subject},
             CASE WHEN i.skip_reason IS NULL THEN 'pending' ELSE 'skipped' END, i.skip_reason,
             CASE WHEN i.claim_secs IS NULL THEN 0 ELSE 1 END, now() + make_interval(secs => i.claim_secs)
      FROM input i
      ON CONFLICT (event_key, recipient) DO NOTHING
      RETURNING d.*
    )
    SELECT ins.*, true AS inserted FROM ins
    UNION ALL
    SELECT d.*, false AS inserted FROM notification_deliveries d WHERE d.event_key = ${event.eventKey}
  `.execute(ex);
  // Sorted here rather than by the database's collation: the order claims were given in is the sending order.
  found.sort(byRecipient);
  const inserted = found.filter((r) => r.inserted);
  const claimed = new Set(inserted.filter((r) => r.status === 'pending' && r.claimed_until !== null).map((r) => r.id));
  const strip = ({ inserted: _, ...row }: DeliveryRow & { inserted: boolean }): DeliveryRow => row;
  // A row another notifier inserted while this statement ran is in neither part: read them all again.
  const seen = new Set(found.map((r) => r.recipient));
  const all = ordered.every((r) => seen.has(r.recipient))
    ? found.map(strip)
    : (await listDeliveries(ex, event.eventKey)).sort(byRecipient);
  return { rows: all, inserted: inserted.map(strip), claimed };
}

export async function listDeliveries(ex: Executor, eventKey: string): Promise<DeliveryRow[]> {
  return q(ex)
    .selectFrom('notification_deliveries')
    .selectAll()
    .where('event_key', '=', eventKey)
    .orderBy('recipient')
    .execute();
}

/**
 * Claims a pending delivery for one send attempt, unless another notifier holds
 * an unexpired claim on it. A claim left by a notifier that died mid-send
 * expires after `leaseMs` and can then be taken over; `attempts` tells how
 * many SMTP transactions were started for it.
 */
export async function claimDelivery(ex: Executor, id: string, leaseMs: number): Promise<DeliveryRow | undefined> {
  return q(ex)
    .updateTable('notification_deliveries')
    .set((eb) => ({
      attempts: eb('attempts', '+', 1),
      claimed_until: sql<Date>`now() + make_interval(secs => ${leaseMs / 1000})`,
      updated_at: sql<Date>`now()`,
    }))
    .where('id', '=', id)
    .where('status', '=', 'pending')
    .where((eb) => eb.or([eb('claimed_until', 'is', null), eb('claimed_until', '<', sql<Date>`now()`)]))
    .returningAll()
    .executeTakeFirst();
}

export async function markSent(ex: Executor, id: string, messageId: string): Promise<DeliveryRow | undefined> {
  return q(ex)
    .updateTable('notification_deliveries')
    .set({
      status: 'sent',
      message_id: messageId,
      sent_at: sql<Date>`now()`,
      claimed_until: null,
      last_error: null,
      updated_at: sql<Date>`now()`,
    })
    .where('id', '=', id)
    .where('status', '=', 'pending')
    .returningAll()
    .executeTakeFirst();
}

/**
 * A transient failure: the claim is dropped at once so the retry may claim it
 * again. `unanswered`: the server never replied, so the mail may have arrived.
 */
export async function releaseDelivery(ex: Executor, id: string, error: string, unanswered = false): Promise<void> {
  await q(ex)
    .updateTable('notification_deliveries')
    .set((eb) => ({
      claimed_until: null,
      last_error: error,
      updated_at: sql<Date>`now()`,
      ...(unanswered ? { unanswered_attempts: eb('unanswered_attempts', '+', 1) } : {}),
    }))
    .where('id', '=', id)
    .where('status', '=', 'pending')
    .execute();
}

/** Final failure (a permanent SMTP refusal, or the last attempt spent), with the reason. */
export async function markFailed(ex: Executor, id: string, error: string): Promise<DeliveryRow | undefined> {
  return q(ex)
    .updateTable('notification_deliveries')
    .set({ status: 'failed', claimed_until: null, last_error: error, updated_at: sql<Date>`now()` })
    .where('id', '=', id)
    .where('status', '=', 'pending')
    .returningAll()
    .executeTakeFirst();
}

/**
 * Marks the still-unsent deliveries of an event `skipped` (for example a
 * reminder whose request was decided before it went out). Rows under a live
 * claim are left to the notifier holding them.
 */
export async function skipPending(ex: Executor, eventKey: string, reason: string): Promise<DeliveryRow[]> {
  return q(ex)
    .updateTable('notification_deliveries')
    .set({ status: 'skipped', last_error: reason, updated_at: sql<Date>`now()` })
    .where('event_key', '=', eventKey)
    .where('status', '=', 'pending')
    .where((eb) => eb.or([eb('claimed_until', 'is', null), eb('claimed_until', '<', sql<Date>`now()`)]))
    .returningAll()
    .execute();
}

/** A notification event the database says happened, as the relay would have published it. */
export interface NotificationEvent {
  readonly kind: 'approval_submitted' | 'approval_decided' | 'certificate_issued';
  readonly org_id: string;
  readonly approval_id: string | null;
  readonly job_id: string | null;
  readonly version_id: string | null;
  readonly event_key: string;
  /** true: no delivery was ever recorded; false: some are still pending with no live claim. */
  readonly unrecorded: boolean;
  /** When it happened, ISO 8601 in UTC to the microsecond: with event_key, its place in the keyset order. */
  readonly at: string;
}

/** Where a page of findUndeliveredEvents ended: its last event's `at` and `event_key`. */
export interface UndeliveredCursor {
  readonly at: string;
  readonly eventKey: string;
}

/**
 * Events whose mails may have been lost with their queue message (a Redis wipe
 * or a restart without persistence), older than `graceMs`: events of the last
 * `windowMs` without any delivery record, and
 * events with pending deliveries nobody holds. A submission whose request was
 * decided meanwhile is published too: the notifier records its mails as
 * skipped, so every event ends with its deliveries accounted for. The caller
 * checks the queue before publishing again; the notifier's delivery records
 * make a repeat harmless.
 *
 * One page in (at, event_key) order, after `after`. Each kind is read as its
 * own index range scan from the cursor, stopping at `limit` rows, so a page
 * costs about its own size however long the backlog behind it (sorting the
 * whole window per page made 50 pages of a 100,000-event backlog cost 11 s of
 * PostgreSQL against 1.3 s for one query of them all). Times stay at full
 * precision: an expiry batch decides thousands of requests at one now(), and
 * a cursor rounded below them would return them forever.
 */
export async function findUndeliveredEvents(
  ex: Executor,
  q: { graceMs: number; windowMs: number; limit: number; after?: UndeliveredCursor | null },
): Promise<NotificationEvent[]> {
  const grace = sql`now() - make_interval(secs => ${q.graceMs / 1000})`;
  const window = sql`now() - make_interval(secs => ${q.windowMs / 1000})`;
  // Event keys compare byte-wise (a uuid's text order is its order), whatever the database's collation.
  const key = (kind: string, ref: RawBuilder<unknown>) => sql`(${kind}::text || '-' || ${ref}::text) COLLATE "C"`;
  /** Rows of one kind after the cursor: from its time on (an index range), past its key at that very time. */
  const afterCursor = (at: RawBuilder<unknown>, eventKey: RawBuilder<unknown>) =>
    q.after
      ? sql`${at} >= ${q.after.at}::timestamptz
            AND (${at} > ${q.after.at}::timestamptz OR ${eventKey} > ${q.after.eventKey}::text COLLATE "C")`
      : sql`true`;
  const unrecorded = (kind: string, ref: RawBuilder<unknown>) =>
    sql`NOT EXISTS (SELECT 1 FROM notification_deliveries d WHERE d.event_key = ${kind}::text || '-' || ${ref}::text)`;
  const submitted = { at: sql`a.requested_at`, key: key('approval_submitted', sql`a.id`) };
  const decided = { at: sql`a.decided_at`, key: key('approval_decided', sql`a.id`) };
  const issued = { at: sql`v.created_at`, key: key('certificate_issued', sql`v.id`) };
  const { rows } = await sql<NotificationEvent>`
    WITH page AS (
      (SELECT 'approval_submitted' AS kind, a.id AS ref, a.requested_at AS at, true AS unrecorded
         FROM approval_requests a
        -- Within the window like the other kinds (older lost mail is past being useful), which also keeps
        -- this a range scan of approvals_requested_at rather than a scan of every pending request.
        WHERE a.requested_at > ${window} AND a.requested_at < ${grace} AND ${afterCursor(submitted.at, submitted.key)}
          AND ${unrecorded('approval_submitted', sql`a.id`)}
        ORDER BY a.requested_at, a.id LIMIT ${q.limit})
      UNION ALL
      (SELECT 'approval_decided', a.id, a.decided_at, true
         FROM approval_requests a
        WHERE a.decided_at IS NOT NULL AND a.decided_at > ${window} AND a.decided_at < ${grace}
          AND ${afterCursor(decided.at, decided.key)} AND ${unrecorded('approval_decided', sql`a.id`)}
        ORDER BY a.decided_at, a.id LIMIT ${q.limit})
      UNION ALL
      (SELECT 'certificate_issued', v.id, v.created_at, true
         FROM certificate_versions v
        WHERE v.created_at > ${window} AND v.created_at < ${grace}
          AND ${afterCursor(issued.at, issued.key)} AND ${unrecorded('certificate_issued', sql`v.id`)}
        ORDER BY v.created_at, v.id LIMIT ${q.limit})
      UNION ALL
      (SELECT s.kind, s.ref, s.at, false FROM (
         SELECT d.kind, substr(d.event_key, length(d.kind) + 2)::uuid AS ref, min(d.created_at) AS at, d.event_key
           FROM notification_deliveries d
          WHERE d.status = 'pending' AND d.kind IN ('approval_submitted', 'approval_decided', 'certificate_issued')
            AND (d.claimed_until IS NULL OR d.claimed_until < now()) AND d.updated_at < ${grace}
          GROUP BY d.event_key, d.kind
        ) s
        WHERE ${afterCursor(sql`s.at`, sql`s.event_key COLLATE "C"`)}
        ORDER BY s.at, s.event_key COLLATE "C" LIMIT ${q.limit})
    )
    SELECT e.kind, e.unrecorded, coalesce(a.org_id, v.org_id) AS org_id,
           to_char(e.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at,
           CASE WHEN e.kind = 'certificate_issued' THEN NULL ELSE e.ref END AS approval_id,
           v.job_id, v.id AS version_id, e.kind || '-' || e.ref AS event_key
    FROM page e
    LEFT JOIN approval_requests a ON e.kind <> 'certificate_issued' AND a.id = e.ref
    LEFT JOIN certificate_versions v ON e.kind = 'certificate_issued' AND v.id = e.ref
    ORDER BY e.at, (e.kind || '-' || e.ref) COLLATE "C"
    LIMIT ${q.limit}
  `.execute(ex);
  return rows;
}

/** Deliveries of an org, newest first (operators' view of what was sent, skipped or failed). */
export async function listOrgDeliveries(
  ex: Executor,
  orgId: string,
  opts: { status?: DeliveryStatus; limit: number },
): Promise<DeliveryRow[]> {
  let query = q(ex).selectFrom('notification_deliveries').selectAll().where('org_id', '=', orgId);
  if (opts.status) query = query.where('status', '=', opts.status);
  return query.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(opts.limit).execute();
}

/** Has reminder `round` of this request already been written to the audit ledger? */
export async function hasEscalationRecord(
  ex: Executor,
  orgId: string,
  approvalId: string,
  round: number,
): Promise<boolean> {
  const row = await ex
    .selectFrom('audit_records')
    .select('seq')
    .where('org_id', '=', orgId)
    .where('resource_id', '=', approvalId)
    .where('action', '=', 'approval_escalated')
    .where(sql<boolean>`(details->>'round')::int = ${round}`)
    .executeTakeFirst();
  return row !== undefined;
}
