import {
  addDeadLetters,
  type Db,
  type LeftOutboxRow,
  OUTBOX_TOPICS,
  type TakenOutboxRow,
  type Tx,
  takeOutbox,
} from '@countersign/db';
import type { Logger } from '@countersign/observability';
import {
  approvalNotice,
  EXPIRY_BATCH,
  enqueueMany,
  type JobSpec,
  jobIds,
  type TypedQueue,
  validatePayload,
} from '@countersign/queues';
import type { DecisionResult } from '@countersign/workflow';

export interface RelayDeps {
  readonly db: Db;
  readonly log: Logger;
  readonly issuance: TypedQueue<'issuance'>;
  readonly notifications: TypedQueue<'notifications'>;
  readonly batchSize: number;
  /** COUNTERSIGN_APPROVAL_BYPASS: auto-approve non-production requests. */
  readonly bypass: ((approvalId: string) => Promise<DecisionResult | null>) | null;
  readonly onBypassed?: (r: DecisionResult) => void;
  /** Events one batch may take (default MAX_EVENTS_PER_BATCH). */
  readonly maxEventsPerBatch?: number;
  /** After each committed batch, with the rows it published (0: it found nothing to publish). */
  readonly onBatch?: (published: number) => void;
  /** Rows moved to outbox_dead_letters in a batch. */
  readonly onDeadLetters?: (count: number) => void;
}

/** A topic of this version without a publisher: a deploy error, never a dead letter. */
class PublisherMissingError extends Error {}

/** How many published row ids a relay remembers to recognise wake-ups for rows it already took. */
export const RECENT_IDS = 10_000;

/**
 * Events one relay batch takes at most (takeOutbox counts them in
 * PostgreSQL). An expiry row carries one event per request, up to the
 * reaper's batch size, so 200 taken rows could otherwise put millions of
 * ids into the relay's memory, and its messages, at once.
 */
export const MAX_EVENTS_PER_BATCH = 5_000;

/**
 * Drains the transactional outbox into BullMQ. Rows are taken (locked with
 * SKIP LOCKED and deleted) and published in one transaction: if Redis
 * refuses, the transaction rolls back and the rows wait for the next drain; if
 * the relay dies after publishing but before commit, the rows are published
 * again and the deterministic job ids (plus idempotent consumers) absorb the
 * repeat.
 */
export function createRelay(deps: RelayDeps) {
  const { db, log } = deps;

  /**
   * The messages one taken row stands for. The first reminder of a new
   * request is scheduled from the request's state and time that came with
   * its row.
   */
  function messagesOf(row: TakenOutboxRow): {
    issuance: JobSpec<'issuance'>[];
    notifications: JobSpec<'notifications'>[];
  } {
    switch (row.topic) {
      case 'job.released': {
        const { job_id } = row.payload as { job_id: string };
        return { issuance: [{ data: { job_id }, opts: { jobId: jobIds.issuance(job_id) } }], notifications: [] };
      }
      case 'approval.submitted': {
        const { approval_id } = row.payload as { approval_id: string };
        const notifications: JobSpec<'notifications'>[] = [
          approvalNotice('approval_submitted', row.org_id, approval_id),
        ];
        const escalateAt = row.escalation?.state === 'pending' ? row.escalation.escalate_at : null;
        if (escalateAt) {
          notifications.push({
            data: { kind: 'approval_escalation', org_id: row.org_id, approval_id, round: 1 },
            opts: {
              jobId: jobIds.notification('approval_escalation', approval_id, 1),
              delay: Math.max(0, escalateAt.getTime() - Date.now()),
            },
          });
        }
        return { issuance: [], notifications };
      }
      case 'approval.decided': {
        const { approval_id } = row.payload as { approval_id: string };
        return { issuance: [], notifications: [approvalNotice('approval_decided', row.org_id, approval_id)] };
      }
      case 'approvals.expired': {
        // One message for the batch (at most COUNTERSIGN_REAPER_BATCH_SIZE ids, which is capped at
        // EXPIRY_BATCH_MAX_IDS); the notifier, at its lower priority, adds each request's decision mail.
        // LIFO: the fan-out goes ahead of queued mail, so the reconciler finds each request's message
        // in the queue rather than adding it again itself.
        const { approval_ids } = row.payload as { approval_ids: string[] };
        return {
          issuance: [],
          notifications: [
            {
              data: { kind: EXPIRY_BATCH, org_id: row.org_id, approval_ids },
              opts: { jobId: jobIds.expiryBatch(approval_ids), lifo: true },
            },
          ],
        };
      }
      case 'certificate.issued': {
        const { job_id, version_id } = row.payload as { job_id: string; version_id: string };
        return {
          issuance: [],
          notifications: [
            {
              data: { kind: 'certificate_issued', org_id: row.org_id, job_id, version_id },
              opts: { jobId: jobIds.notification('certificate_issued', version_id) },
            },
          ],
        };
      }
      case 'config.submitted':
      case 'config.decided': {
        const { config_request_id } = row.payload as { config_request_id: string };
        const kind = row.topic === 'config.submitted' ? 'config_submitted' : 'config_decided';
        return {
          issuance: [],
          notifications: [
            {
              data: { kind, org_id: row.org_id, config_request_id },
              opts: { jobId: jobIds.notification(kind, config_request_id) },
            },
          ],
        };
      }
      default: {
        // A topic in OUTBOX_TOPICS (so taken, deleted in this transaction) without a publisher:
        // failing the batch rolls the delete back rather than losing the event.
        const unpublished: never = row.topic;
        throw new PublisherMissingError(`outbox topic ${String(unpublished)} has no publisher`);
      }
    }
  }

  /**
   * Publishes a taken batch: per queue, one Redis transaction per
   * ENQUEUE_CHUNK messages (addBulk). A row whose messages break the queue
   * contract is kept in outbox_dead_letters with the reason, in the same
   * transaction, instead of failing every batch from then on: the relay takes
   * the oldest rows first, so it would stop everything behind it.
   */
  async function publish(tx: Tx, rows: readonly (TakenOutboxRow | LeftOutboxRow)[]): Promise<TakenOutboxRow[]> {
    const issuance: JobSpec<'issuance'>[] = [];
    const notifications: JobSpec<'notifications'>[] = [];
    const published: TakenOutboxRow[] = [];
    const dead: { row: TakenOutboxRow; reason: string }[] = [];
    for (const row of rows) {
      if (!row.taken) {
        // Written by a newer version during a rolling upgrade, most likely: kept for a relay that knows it.
        log.error({ topic: row.topic, id: row.id }, 'unknown outbox topic; left in the outbox');
        continue;
      }
      let messages: ReturnType<typeof messagesOf>;
      try {
        messages = messagesOf(row);
        for (const m of messages.issuance) validatePayload('issuance', m.data);
        for (const m of messages.notifications) validatePayload('notifications', m.data);
      } catch (err) {
        if (err instanceof PublisherMissingError) throw err;
        dead.push({ row, reason: err instanceof Error ? err.message : String(err) });
        continue;
      }
      issuance.push(...messages.issuance);
      notifications.push(...messages.notifications);
      published.push(row);
    }
    await enqueueMany(deps.issuance, 'issuance', issuance);
    await enqueueMany(deps.notifications, 'notifications', notifications);
    if (dead.length) {
      await addDeadLetters(tx, dead);
      for (const { row, reason } of dead) {
        log.error(
          { id: row.id, topic: row.topic, reason },
          'outbox row breaks its queue contract; kept in outbox_dead_letters',
        );
      }
      deps.onDeadLetters?.(dead.length);
    }
    return published;
  }

  /** One batch: takes rows (takeOutbox's limit and event budget) and publishes them before the take commits. */
  async function drainOnce(): Promise<{ deleted: number; more: boolean }> {
    const bypassed: string[] = [];
    const counts = await db.transaction().execute(async (tx) => {
      const { rows, more } = await takeOutbox(tx, {
        limit: deps.batchSize,
        maxEvents: deps.maxEventsPerBatch ?? MAX_EVENTS_PER_BATCH,
        topics: OUTBOX_TOPICS,
      });
      const taken = await publish(tx, rows);
      for (const row of taken) {
        if (row.topic === 'approval.submitted' && deps.bypass) {
          bypassed.push((row.payload as { approval_id: string }).approval_id);
        }
      }
      // Dead letters count as taken: they left the outbox, and a wake-up naming one needs no batch.
      return { deleted: taken.length, more, ids: rows.filter((r) => r.taken).map((r) => r.id) };
    });
    remember(counts.ids);
    deps.onBatch?.(counts.deleted);
    // Bypass decisions run after the batch committed, in their own transactions.
    for (const id of bypassed) {
      const result = await deps.bypass?.(id);
      if (result) {
        log.warn({ approval_id: id }, 'approval bypassed (COUNTERSIGN_APPROVAL_BYPASS)');
        deps.onBypassed?.(result);
      }
    }
    return { deleted: counts.deleted, more: counts.more };
  }

  /** Ids of rows this relay published lately (insertion order, oldest first). */
  const recent = new Set<string>();
  function remember(ids: readonly string[]): void {
    for (const id of ids) recent.add(id);
    for (const oldest of recent) {
      if (recent.size <= RECENT_IDS) break;
      recent.delete(oldest);
    }
  }

  let draining: Promise<void> | null = null;
  let again = false;
  /** Rows named by wake-ups that arrived during a pass: another pass only if the pass did not publish them. */
  const named = new Set<string>();

  /** Drains until empty. Concurrent calls coalesce into one loop plus one more pass. */
  function drain(): Promise<void> {
    if (draining) {
      again = true;
      return draining;
    }
    draining = (async () => {
      try {
        do {
          again = false;
          for (;;) {
            const { deleted, more } = await drainOnce();
            // Rows left behind by the limit or the budget wait for the next pass; a pass that could
            // publish nothing (only rows of unknown topics) ends the loop rather than spinning on them.
            if (!more || deleted === 0) break;
          }
          for (const id of named) if (!recent.has(id)) again = true;
          named.clear();
        } while (again);
      } catch (err) {
        log.warn({ err: err instanceof Error ? err.message : String(err) }, 'outbox drain failed; will retry');
      } finally {
        named.clear();
        draining = null;
      }
    })();
    return draining;
  }

  /**
   * A wake-up from the outbox trigger, naming the newest row its statement
   * wrote. The notification comes after the commit, so a batch in flight has
   * often taken that row already: then no further batch is run for it. An
   * empty or unknown name drains as before.
   */
  function wake(newestId: string): Promise<void> {
    if (!/^[0-9]+$/.test(newestId)) return drain();
    if (recent.has(newestId)) return draining ?? Promise.resolve();
    if (draining) {
      named.add(newestId);
      return draining;
    }
    return drain();
  }

  return { drain, drainOnce, wake };
}
