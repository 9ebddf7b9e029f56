import { createHash } from 'node:crypto';
import { type Db, notifications } from '@countersign/db';
import type { Logger } from '@countersign/observability';
import { type NotificationKind, UnrecoverableError } from '@countersign/queues';
import { type Mailer, SmtpError } from './mailer.ts';
import type { Recipient } from './recipients.ts';
import type { Rendered } from './templates.ts';

/**
 * Exactly one mail per (event, recipient). The deliveries of an event are
 * recorded first (unique on event and recipient), new ones already claimed by
 * the same statement; a delivery that existed before is claimed just before
 * its send. A claim is a lease over the SMTP transaction, and the delivery is
 * marked `sent` after it, so a re-delivered message, a retry or a second
 * replica finds it sent or claimed and sends nothing. A notifier killed
 * mid-send leaves a claim that expires after the lease; whoever retries the
 * event then takes it over. Transient SMTP failures release the claim and
 * fail the queue job so BullMQ retries it with backoff; a permanent refusal
 * (5xx) or the last attempt marks the delivery `failed` with the reason.
 */
export type DeliveryOutcome = 'sent' | 'skipped' | 'failed' | 'retried';

export interface DeliveryDeps {
  readonly db: Db;
  readonly log: Logger;
  /** null when COUNTERSIGN_SMTP_URL is unset: deliveries are recorded `skipped`. */
  readonly mailer: Mailer | null;
  /** How long a claim holds off other notifiers; longer than any one SMTP transaction can take. */
  readonly leaseMs: number;
  /** Domain of the Message-IDs (taken from COUNTERSIGN_MAIL_FROM). */
  readonly messageIdDomain: string;
  readonly count: (kind: NotificationKind, outcome: DeliveryOutcome, n?: number) => void;
}

export interface DeliveryPlan {
  readonly orgId: string;
  readonly kind: NotificationKind;
  readonly eventKey: string;
  readonly recipients: readonly Recipient[];
  readonly mail: Rendered;
}

export interface AttemptInfo {
  /** Attempts of the queue job that failed before this one. */
  readonly attemptsMade: number;
  readonly maxAttempts: number;
}

export interface DeliverySummary {
  readonly event_key: string;
  readonly sent: number;
  readonly skipped: number;
  readonly failed: number;
  readonly already_done: number;
}

export const NO_SMTP_REASON = 'SMTP is not configured (COUNTERSIGN_SMTP_URL is unset)';

/** Retryable: BullMQ retries the queue job with its backoff. */
export class DeliveriesPendingError extends Error {
  override name = 'DeliveriesPendingError';
}

export function messageIdFor(eventKey: string, recipient: string, domain: string): string {
  const h = createHash('sha256').update(recipient).digest('hex').slice(0, 16);
  return `<${eventKey}.${h}@${domain}>`;
}

/** The domain of a From address such as `Countersign <countersign@example.org>`. */
export function mailDomain(from: string): string {
  const m = /@([A-Za-z0-9.-]+)>?\s*$/.exec(from.trim());
  return m?.[1] ?? 'countersign.invalid';
}

/**
 * Retries `what` with backoff until it succeeds or `forMs` has passed. Used to record a mail the SMTP server
 * already accepted: while our claim holds no other notifier sends it, so riding out a database restart for
 * most of the lease is what keeps the recipient from getting it twice.
 */
async function retrying<T>(what: () => Promise<T>, forMs: number): Promise<T> {
  const deadline = Date.now() + forMs;
  for (let i = 1; ; i++) {
    try {
      return await what();
    } catch (err) {
      if (Date.now() >= deadline) throw err;
      await new Promise((r) => setTimeout(r, Math.min(200 * i, 2_000, Math.max(0, deadline - Date.now()))));
    }
  }
}

/**
 * New deliveries are claimed as they are recorded, at most this many per event: each claim's lease covers the
 * sends before it, so a larger batch would hold off a takeover for longer should this notifier die mid-event.
 */
export const CLAIMS_ON_RECORD = 5;

export async function deliver(deps: DeliveryDeps, plan: DeliveryPlan, attempt: AttemptInfo): Promise<DeliverySummary> {
  const { db, log, mailer } = deps;
  const { rows, inserted, claimed } = await notifications.recordDeliveries(
    db,
    { orgId: plan.orgId, eventKey: plan.eventKey, kind: plan.kind, subject: plan.mail.subject },
    plan.recipients.map((r) => ({ recipient: r.key, skipReason: r.skipReason ?? (mailer ? null : NO_SMTP_REASON) })),
    mailer ? { leaseMs: deps.leaseMs, max: CLAIMS_ON_RECORD } : undefined,
  );
  let skipped = inserted.filter((r) => r.status === 'skipped');
  if (!mailer) {
    // Rows left pending by a notifier that had SMTP configured are not lost either: recorded as skipped.
    skipped = [...skipped, ...(await notifications.skipPending(db, plan.eventKey, NO_SMTP_REASON))];
  }
  for (const r of skipped) {
    log.info(
      { event_key: plan.eventKey, kind: plan.kind, recipient: r.recipient, reason: r.last_error },
      'notification skipped',
    );
  }
  if (skipped.length) deps.count(plan.kind, 'skipped', skipped.length);

  const lastAttempt = attempt.attemptsMade + 1 >= attempt.maxAttempts;
  const summary = { event_key: plan.eventKey, sent: 0, skipped: skipped.length, failed: 0, already_done: 0 };
  const retry: string[] = [];
  const failed: string[] = [];
  let held = 0;
  // Those claimed on record go first, in claim order: the k-th one's lease covers exactly k sends.
  const sendOrder = [...rows.filter((r) => claimed.has(r.id)), ...rows.filter((r) => !claimed.has(r.id))];
  for (const row of sendOrder) {
    if (row.status !== 'pending' || !mailer) {
      if (!skipped.some((s) => s.id === row.id)) summary.already_done++;
      continue;
    }
    // Ours since it was recorded, or one that existed before: claimed now unless another notifier holds it.
    const mine = claimed.has(row.id) ? row : await notifications.claimDelivery(db, row.id, deps.leaseMs);
    if (!mine) {
      held++;
      continue;
    }
    const outcome = await sendOne(deps, mailer, plan, mine, lastAttempt);
    if (outcome.status === 'sent') summary.sent++;
    else if (outcome.status === 'failed') failed.push(`${mine.recipient}: ${outcome.error}`);
    else retry.push(`${mine.recipient}: ${outcome.error}`);
  }
  if (retry.length > 0) {
    throw new DeliveriesPendingError(
      `${retry.length} of ${rows.length} deliveries will be retried: ${retry.join('; ')}`,
    );
  }
  if (held > 0 && !lastAttempt) {
    // Another notifier holds them, or one that died mid-send; look again once its claim may have lapsed.
    throw new DeliveriesPendingError(`${held} deliveries are claimed by another notifier; checking again later`);
  }
  if (failed.length > 0) {
    // Recorded per recipient already; failing the queue job too makes it visible on the queue dashboards.
    throw new UnrecoverableError(`${failed.length} of ${rows.length} deliveries failed: ${failed.join('; ')}`);
  }
  return { ...summary, failed: failed.length };
}

async function sendOne(
  deps: DeliveryDeps,
  mailer: Mailer,
  plan: DeliveryPlan,
  row: notifications.DeliveryRow,
  lastAttempt: boolean,
): Promise<{ status: 'sent' | 'failed' | 'retry'; error?: string }> {
  const { db, log } = deps;
  const messageId = row.message_id ?? messageIdFor(plan.eventKey, row.recipient, deps.messageIdDomain);
  if (row.attempts > 1 && row.last_error === null) {
    // The previous SMTP transaction's outcome is unknown (its notifier died); same Message-ID as before.
    log.warn(
      { event_key: plan.eventKey, recipient: row.recipient, attempts: row.attempts },
      'taking over a lapsed claim',
    );
  }
  try {
    await mailer.send({
      to: row.recipient,
      subject: plan.mail.subject,
      text: plan.mail.text,
      html: plan.mail.html,
      messageId,
      headers: { 'X-Countersign-Event': plan.eventKey },
    });
  } catch (err) {
    const e =
      err instanceof SmtpError ? err : new SmtpError(err instanceof Error ? err.message : String(err), false, null);
    if (e.permanent || lastAttempt) {
      const reason = e.permanent ? e.message : `gave up after ${row.attempts} attempt(s): ${e.message}`;
      await notifications.markFailed(db, row.id, reason);
      deps.count(plan.kind, 'failed');
      log.error({ event_key: plan.eventKey, recipient: row.recipient, reason }, 'notification failed');
      return { status: 'failed', error: reason };
    }
    await notifications.releaseDelivery(db, row.id, e.message, e.unanswered);
    deps.count(plan.kind, 'retried');
    log.warn(
      { event_key: plan.eventKey, recipient: row.recipient, err: e.message, unanswered: e.unanswered },
      e.unanswered
        ? 'notification will be retried (no SMTP reply: the server may have it; same Message-ID)'
        : 'notification will be retried',
    );
    return { status: 'retry', error: e.message };
  }
  // The server has the mail: record it, riding out a database outage for half the claim's lease rather than
  // letting the claim lapse and another notifier send it again.
  const marked = await retrying(() => notifications.markSent(db, row.id, messageId), deps.leaseMs / 2);
  if (!marked) log.warn({ event_key: plan.eventKey, recipient: row.recipient }, 'delivery was already final');
  deps.count(plan.kind, 'sent');
  log.info({ event_key: plan.eventKey, kind: plan.kind, recipient: row.recipient }, 'notification sent');
  return { status: 'sent' };
}
