import { type Db, notifications as deliveries } from '@countersign/db';
import type { Logger } from '@countersign/observability';
import { enqueue, jobIds, type PayloadOf, type TypedQueue } from '@countersign/queues';

/**
 * Publishes again the mail events whose queue message is gone. The relay
 * deletes an outbox row once its message is in Redis; a Redis wipe or a
 * restart without persistence before the notifier handled it would lose the
 * mails of that decision or certificate for good. PostgreSQL still knows the
 * event happened, and the notifier's delivery records say whether its mails
 * went out: an event past the grace period with no delivery record, or with
 * pending deliveries nobody holds, must have a live message. When it has none
 * it is added again under its deterministic id; when it ended (completed or
 * failed) while deliveries are still pending, it is replaced. Safe twice and
 * on several reapers: adding under an existing id is a no-op, and the
 * notifier sends at most once per (event, recipient) whatever it receives.
 *
 * Escalation reminders (delayed messages) are not rebuilt here.
 */
export interface ReconcileNotificationsDeps {
  readonly db: Db;
  readonly log: Logger;
  readonly notifications: TypedQueue<'notifications'>;
  readonly graceMs: number;
  readonly batchSize: number;
  readonly maxBatches: number;
  /** How far back events are looked at; older lost mail is past being useful. */
  readonly windowMs?: number;
}

export interface ReconcileNotificationsResult {
  checked: number;
  readded: number;
  replaced: number;
}

const DEFAULT_WINDOW_MS = 7 * 24 * 3_600_000;

type NotificationEvent = deliveries.NotificationEvent;

function messageOf(e: NotificationEvent): { id: string; data: PayloadOf<'notifications'> } | null {
  if (e.kind === 'certificate_issued') {
    if (!e.job_id || !e.version_id) return null;
    return {
      id: jobIds.notification(e.kind, e.version_id),
      data: { kind: e.kind, org_id: e.org_id, job_id: e.job_id, version_id: e.version_id },
    };
  }
  if (!e.approval_id) return null;
  return {
    id: jobIds.notification(e.kind, e.approval_id),
    data: { kind: e.kind, org_id: e.org_id, approval_id: e.approval_id },
  };
}

export function reconcileNotificationsTask(deps: ReconcileNotificationsDeps) {
  const { notifications, log } = deps;

  /** Puts one event's message back when it is gone, or ended with deliveries still pending. */
  async function reconcile(e: NotificationEvent): Promise<'readded' | 'replaced' | 'live'> {
    const message = messageOf(e);
    if (!message) return 'live';
    const existing = await notifications.getJob(message.id);
    const state = existing ? await existing.getState() : 'missing';
    if (state === 'missing' || state === 'unknown') {
      await enqueue(notifications, 'notifications', message.data, { jobId: message.id });
      log.warn({ event_key: e.event_key }, 'mail event had no queue message; published again');
      return 'readded';
    }
    if ((state === 'completed' || state === 'failed') && !e.unrecorded) {
      // It ran, yet deliveries are pending with no claim (the last attempt found them held by a notifier that died).
      try {
        await existing?.remove();
      } catch (err) {
        log.info(
          { event_key: e.event_key, err: err instanceof Error ? err.message : String(err) },
          'message busy; left alone',
        );
        return 'live';
      }
      await enqueue(notifications, 'notifications', message.data, { jobId: message.id });
      log.warn(
        { event_key: e.event_key, queue_state: state },
        'mail event ended with deliveries pending; published again',
      );
      return 'replaced';
    }
    return 'live';
  }

  return async (): Promise<ReconcileNotificationsResult> => {
    const result: ReconcileNotificationsResult = { checked: 0, readded: 0, replaced: 0 };
    // Page by page in (at, event_key) order, so a run holds one page however large a mail backlog is
    // (found when a 100,000-request expiry wave outran the notifier: runs holding 100,000 events each
    // overran the reaper's heap). An event whose message is still queued is passed over, not repeated.
    let after: deliveries.UndeliveredCursor | null = null;
    for (let batch = 0; batch < deps.maxBatches; batch++) {
      const events = await deliveries.findUndeliveredEvents(deps.db, {
        graceMs: deps.graceMs,
        windowMs: deps.windowMs ?? DEFAULT_WINDOW_MS,
        limit: deps.batchSize,
        after,
      });
      // The page's queue lookups at once: one Redis round trip each would take minutes over a large backlog.
      // Settled, not raced: a failed lookup must not end the run while the page's others are still in flight.
      const outcomes = await Promise.allSettled(events.map(reconcile));
      const failed = outcomes.flatMap((o) => (o.status === 'rejected' ? [o.reason] : []));
      if (failed.length > 0) {
        const reason = failed[0] instanceof Error ? failed[0].message : String(failed[0]);
        throw new Error(`${failed.length} of ${events.length} mail events could not be checked: ${reason}`);
      }
      const done = outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value] : []));
      result.checked += events.filter((e) => messageOf(e) !== null).length;
      result.readded += done.filter((o) => o === 'readded').length;
      result.replaced += done.filter((o) => o === 'replaced').length;
      const last = events.at(-1);
      if (!last || events.length < deps.batchSize) break;
      after = { at: last.at, eventKey: last.event_key };
    }
    return result;
  };
}
