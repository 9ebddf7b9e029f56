import { type RawBuilder, sql } from 'kysely';
import type { Executor } from './database.ts';

/**
 * The transactional outbox: a use case writes an event here in the same
 * transaction as the state change, and the approval relay publishes it to
 * BullMQ after commit. Payloads carry ids only; consumers re-read the rows.
 */
export interface OutboxEvents {
  /** A job became `pending`: put it on the issuer's queue. */
  'job.released': { job_id: string };
  /** A new approval request waits for approvers (and the escalation timer starts). */
  'approval.submitted': { approval_id: string };
  /** A request reached a terminal state. */
  'approval.decided': { approval_id: string; outcome: string };
  /**
   * Requests of one org expired by one reaper batch: one event for the batch, which the relay
   * publishes as one `approvals_expired` message and the notifier fans out into each request's
   * decision mail as for `approval.decided`. One row per request
   * was measured at ~6% of PostgreSQL's time in a 100,000-request reap (insert, claim, delete).
   */
  'approvals.expired': { approval_ids: string[] };
  /** A certificate version was recorded. */
  'certificate.issued': { job_id: string; version_id: string };
  /** A configuration change waits for another admin. */
  'config.submitted': { config_request_id: string };
  /** A configuration request reached a terminal state. */
  'config.decided': { config_request_id: string; outcome: string };
}
export type OutboxTopic = keyof OutboxEvents;

/** Every topic of this version, as a value: the relay takes these and leaves any other (a newer version's). */
export const OUTBOX_TOPICS = Object.keys({
  'job.released': true,
  'approval.submitted': true,
  'approval.decided': true,
  'approvals.expired': true,
  'certificate.issued': true,
  'config.submitted': true,
  'config.decided': true,
} satisfies Record<OutboxTopic, true>) as readonly OutboxTopic[];

export interface OutboxRow {
  id: string;
  org_id: string;
  topic: OutboxTopic;
  payload: OutboxEvents[OutboxTopic];
  created_at: Date;
}

/** One event for the outbox: a topic with its payload. */
export type OutboxEvent = { [T in OutboxTopic]: { readonly topic: T; readonly payload: OutboxEvents[T] } }[OutboxTopic];

/** Several events of one transaction in one statement (one round trip, and one wake-up for the relay). */
export async function addOutboxEvents(ex: Executor, orgId: string, events: readonly OutboxEvent[]): Promise<void> {
  if (events.length === 0) return;
  await outboxInsert(orgId, events).execute(ex);
}

/**
 * addOutboxEvents' INSERT as a fragment, for a statement of data-modifying
 * CTEs; with `onlyIf`, the rows are written only when that condition holds
 * (say, an update in the same statement hit its row).
 */
export function outboxInsert(
  orgId: string,
  events: readonly OutboxEvent[],
  onlyIf: RawBuilder<unknown> = sql`true`,
): RawBuilder<unknown> {
  return sql`
    INSERT INTO outbox (org_id, topic, payload)
    SELECT ${orgId}::uuid, e.topic, e.payload::jsonb
    FROM unnest(${events.map((e) => e.topic)}::text[], ${events.map((e) => JSON.stringify(e.payload))}::text[])
      AS e(topic, payload)
    WHERE ${onlyIf}
  `;
}

/** A row the relay took and deleted in its transaction, to publish before that commits. */
export interface TakenOutboxRow extends OutboxRow {
  readonly taken: true;
  /**
   * For `approval.submitted`: the request's state and first reminder time, read in the same
   * statement, so the relay schedules the reminder without another round trip. Null otherwise,
   * and when the request no longer exists.
   */
  readonly escalation: { readonly state: string; readonly escalate_at: Date | null } | null;
}

/** A row of a topic this relay does not know (a newer version's): locked by the take, left in the outbox. */
export interface LeftOutboxRow extends Omit<OutboxRow, 'topic' | 'payload'> {
  readonly taken: false;
  readonly topic: string;
  readonly payload: unknown;
}

/** A relay's take: its rows, and whether older-first order left rows behind them for the next take. */
export interface OutboxTake {
  readonly rows: (TakenOutboxRow | LeftOutboxRow)[];
  readonly more: boolean;
}

/**
 * Takes the oldest rows for this transaction in one statement: locks them,
 * deletes those of `topics`, and returns them all. The caller publishes them
 * and commits; if publishing fails it rolls back and the rows are back. (A
 * claim, a read of the new requests' reminder times and a delete after
 * publishing were three statements where there is now one, besides BEGIN and
 * COMMIT.)
 *
 * At most `limit` rows carrying at most `maxEvents` events between them (an
 * `approvals.expired` row carries one per request, any other row one), and
 * always the oldest row whatever it carries, so a large expiry batch still
 * goes. The budget is counted here, before any payload leaves PostgreSQL: a
 * backlog of expiry rows would otherwise put millions of ids into the relay's
 * memory at once.
 *
 * SKIP LOCKED lets any number of relays drain concurrently without publishing
 * a row twice at the same time; a relay that dies before commit leaves its
 * rows for the next. The budget is counted over the oldest rows whether or
 * not another relay holds them, so a second relay takes less (or nothing)
 * while the first works through the head of the outbox. `more` is true when
 * the limit or the budget left rows behind this take.
 */
export async function takeOutbox(
  ex: Executor,
  opts: { readonly limit: number; readonly maxEvents?: number; readonly topics: readonly string[] },
): Promise<OutboxTake> {
  const maxEvents = opts.maxEvents ?? Number.MAX_SAFE_INTEGER;
  const { rows } = await sql<
    OutboxRow & { more: boolean; taken: boolean; state: string | null; escalate_at: Date | null }
  >`
    WITH head AS (
      SELECT id,
             CASE WHEN topic = 'approvals.expired' THEN jsonb_array_length(payload->'approval_ids') ELSE 1 END AS events
        FROM outbox ORDER BY id LIMIT ${opts.limit + 1}
    ), running AS (
      SELECT id, sum(events) OVER (ORDER BY id) AS events_through, row_number() OVER (ORDER BY id) AS n FROM head
    ), fitting AS (
      SELECT id FROM running WHERE n <= ${opts.limit} AND (n = 1 OR events_through <= ${maxEvents})
    ), claimed AS (
      SELECT o.id, o.org_id, o.topic, o.payload, o.created_at
        FROM outbox o WHERE o.id IN (SELECT id FROM fitting)
       ORDER BY o.id FOR UPDATE OF o SKIP LOCKED
    ), gone AS (
      DELETE FROM outbox o USING claimed c
       WHERE o.id = c.id AND c.topic = ANY (${opts.topics}::text[])
      RETURNING o.id
    )
    SELECT c.id, c.org_id, c.topic, c.payload, c.created_at,
           g.id IS NOT NULL AS taken, a.state, a.escalate_at,
           (SELECT count(*) FROM head) > (SELECT count(*) FROM fitting) AS more
      FROM claimed c
      LEFT JOIN gone g ON g.id = c.id
      -- A payload that is not a uuid finds no request rather than failing the whole batch.
      LEFT JOIN approval_requests a ON c.topic = 'approval.submitted' AND a.id = CASE
            WHEN c.payload->>'approval_id' ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
            THEN (c.payload->>'approval_id')::uuid END
     ORDER BY c.id
  `.execute(ex);
  return {
    rows: rows.map(({ more: _more, state, escalate_at, taken, ...row }): TakenOutboxRow | LeftOutboxRow =>
      taken ? { ...row, taken, escalation: state === null ? null : { state, escalate_at } } : { ...row, taken },
    ),
    more: rows[0]?.more ?? false,
  };
}

/**
 * Keeps taken rows that cannot be published (their payload breaks the queue
 * contract), with the reason, in the transaction that took them: they no longer
 * stop the rows behind them (migration 0014).
 */
export async function addDeadLetters(
  ex: Executor,
  letters: readonly { readonly row: OutboxRow; readonly reason: string }[],
): Promise<void> {
  if (letters.length === 0) return;
  await ex
    .insertInto('outbox_dead_letters')
    .values(
      letters.map(({ row, reason }) => ({
        id: row.id,
        org_id: row.org_id,
        topic: row.topic,
        payload: JSON.stringify(row.payload),
        created_at: row.created_at,
        reason,
      })),
    )
    .execute();
}

/** Age of the oldest unpublished event, for countersign_outbox_lag_seconds. */
export async function outboxLagSeconds(ex: Executor): Promise<number> {
  const { rows } = await sql<{ lag: number | null }>`
    SELECT EXTRACT(EPOCH FROM now() - min(created_at))::float8 AS lag FROM outbox
  `.execute(ex);
  return rows[0]?.lag ?? 0;
}
