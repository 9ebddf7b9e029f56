import {
  type ApprovalRow,
  appendAudit,
  approvals,
  type ConfigRequestRow,
  certificates,
  configRequests,
  notifications,
  profiles,
} from '@countersign/db';
import { SYSTEM_ACTORS } from '@countersign/domain';
import {
  approvalNotice,
  createWorker,
  enqueue,
  enqueueMany,
  type Job,
  jobIds,
  type PayloadOf,
  type QueueContext,
  type TypedQueue,
  UnrecoverableError,
  type Worker,
} from '@countersign/queues';
import { type DeliveryDeps, type DeliverySummary, deliver } from './deliveries.ts';
import { oneAtATime } from './one-at-a-time.ts';
import {
  adminRecipients,
  approverRecipients,
  configRequesterRecipient,
  contactRecipients,
  describePrincipal,
  mergeRecipients,
  type Recipient,
  type RecipientReads,
  recipientReads,
  requesterExclusions,
  requesterRecipient,
} from './recipients.ts';
import {
  type ConfigFacts,
  type MailSettings,
  type RequestFacts,
  renderConfigDecided,
  renderConfigSubmitted,
  renderDecided,
  renderIssued,
  renderReminder,
  renderSubmitted,
} from './templates.ts';

/**
 * The notifier's work: one `notifications` message in, the mails of that event
 * out. Every message is only a hint: the rows it names are read again, and the
 * recipients and content come from them. Escalation reminders additionally
 * write an `approval_escalated` audit record (once per round) and schedule the
 * next reminder while the request stays pending.
 */
export interface NotifierDeps extends DeliveryDeps {
  readonly settings: MailSettings;
  /** Where the next escalation reminder is scheduled. */
  readonly notifications: TypedQueue<'notifications'>;
  readonly now?: () => Date;
}

export type NotificationResult =
  | (DeliverySummary & { status: 'delivered'; next_round?: number | null })
  | { status: 'stopped'; event_key: string; reason: string }
  | { status: 'fanned_out'; messages: number };

type Payload = PayloadOf<'notifications'>;

/** A claimed delivery outlives any SMTP transaction: connect, greeting and data each time out separately. */
export const deliveryLeaseMs = (smtpTimeoutMs: number): number => 4 * smtpTimeoutMs;

const SYSTEM_NAMES: Record<string, string> = {
  [SYSTEM_ACTORS.reaper.id]: 'Countersign (the approval timeout passed)',
  [SYSTEM_ACTORS.bypass.id]: 'Countersign approval bypass (COUNTERSIGN_APPROVAL_BYPASS)',
  [SYSTEM_ACTORS.scheduler.id]: 'Countersign scheduler (automatic renewal)',
};

function required<T>(value: T | undefined | null, what: string): T {
  // The event names rows that do not exist: retrying cannot help.
  if (value === undefined || value === null) throw new UnrecoverableError(`${what} does not exist`);
  return value;
}

export function buildNotifier(deps: NotifierDeps) {
  const { db, log } = deps;
  const now = deps.now ?? (() => new Date());

  async function actorName(
    reads: RecipientReads,
    orgId: string,
    actorId: string,
    actorType: string | null,
  ): Promise<string> {
    if (actorType === 'system') return SYSTEM_NAMES[actorId] ?? actorId;
    return describePrincipal(await reads.principal(orgId, actorId), actorId);
  }

  async function requestFacts(reads: RecipientReads, a: ApprovalRow): Promise<RequestFacts> {
    const [facts, requester] = await Promise.all([
      approvals.findMailFacts(db, a),
      actorName(reads, a.org_id, a.requested_by, a.requester_type),
    ]);
    return {
      approvalId: a.id,
      certificateId: a.certificate_id,
      jobKind: required(facts.job_kind, `job ${a.job_id}`),
      commonName: required(facts.common_name, `job ${a.job_id}`),
      domains: a.domains,
      profileName: required(facts.profile_name, `profile ${a.profile_id}`),
      environment: a.environment,
      justification: a.justification,
      requester,
      requestedAt: a.requested_at,
      expiresAt: a.expires_at,
      approvalsRequired: a.approvals_required,
      votes: facts.votes,
    };
  }

  const loadApproval = async (d: Payload): Promise<ApprovalRow> =>
    required(await approvals.findApproval(db, d.org_id, required(d.approval_id, 'approval_id')), 'approval request');

  async function submitted(d: Payload, job: Job): Promise<NotificationResult> {
    const a = await loadApproval(d);
    const eventKey = jobIds.notification('approval_submitted', a.id);
    const reads = recipientReads(db);
    const [facts, approvers] = await Promise.all([requestFacts(reads, a), approverRecipients(reads, a)]);
    let recipients: Recipient[] = approvers;
    if (a.state !== 'pending') {
      // Decided before the mail went out (bypass, a fast approver): asking for a decision would only confuse.
      recipients = recipients.map((r) => ({ ...r, skipReason: r.skipReason ?? `request is already ${a.state}` }));
    }
    const summary = await deliver(
      deps,
      {
        orgId: a.org_id,
        kind: 'approval_submitted',
        eventKey,
        recipients,
        mail: renderSubmitted(deps.settings, facts),
      },
      attemptOf(job),
    );
    return { status: 'delivered', ...summary };
  }

  async function decided(d: Payload, job: Job): Promise<NotificationResult> {
    const a = await loadApproval(d);
    // The relay publishes after commit; a pending row means a stale read, worth a retry.
    if (a.state === 'pending') throw new Error(`approval request ${a.id} is still pending`);
    const eventKey = jobIds.notification('approval_decided', a.id);
    const reads = recipientReads(db);
    const [{ recipient }, facts, decidedBy] = await Promise.all([
      requesterRecipient(reads, {
        orgId: a.org_id,
        requestedBy: a.requested_by,
        requesterType: a.requester_type,
        certificateId: a.certificate_id,
      }),
      requestFacts(reads, a),
      actorName(reads, a.org_id, a.decided_by ?? '-', a.decided_by_type),
    ]);
    const mail = renderDecided(deps.settings, facts, {
      state: a.state,
      decidedBy,
      decidedAt: a.decided_at,
      note: a.decision_note,
    });
    const summary = await deliver(
      deps,
      { orgId: a.org_id, kind: 'approval_decided', eventKey, recipients: recipient ? [recipient] : [], mail },
      attemptOf(job),
    );
    return { status: 'delivered', ...summary };
  }

  async function issued(d: Payload, job: Job): Promise<NotificationResult> {
    const versionId = required(d.version_id, 'version_id');
    const issued = required(
      await certificates.findIssuedVersion(db, d.org_id, versionId),
      `certificate version ${versionId}`,
    );
    const { version } = issued;
    const j = required(issued.job, `job ${version.job_id}`);
    const profileName = required(issued.profileName, `the profile of job ${version.job_id}`);
    const { recipient } = await requesterRecipient(recipientReads(db), {
      orgId: d.org_id,
      requestedBy: j.requestedBy,
      requesterType: j.requesterType,
      certificateId: version.certificate_id,
    });
    const mail = renderIssued(deps.settings, {
      certificateId: version.certificate_id,
      jobId: version.job_id,
      jobKind: j.kind,
      commonName: j.commonName,
      sans: j.sans,
      profileName,
      serial: version.serial,
      fingerprint: version.fingerprint_sha256,
      notBefore: version.not_before,
      notAfter: version.not_after,
      issuer: version.issuer,
    });
    const eventKey = jobIds.notification('certificate_issued', version.id);
    const summary = await deliver(
      deps,
      { orgId: d.org_id, kind: 'certificate_issued', eventKey, recipients: recipient ? [recipient] : [], mail },
      attemptOf(job),
    );
    return { status: 'delivered', ...summary };
  }

  /**
   * Reminder `round` of a request. Under the request's row lock (which every
   * decision and the expiry also take) it checks the request is still pending
   * and appends the round's audit record unless a previous delivery of this
   * message already did; then it schedules the next round and mails.
   */
  async function escalation(d: Payload, job: Job): Promise<NotificationResult> {
    const round = d.round ?? 1;
    const approvalId = required(d.approval_id, 'approval_id');
    const eventKey = jobIds.notification('approval_escalation', approvalId, round);
    const at = now();
    const state = await db.transaction().execute(async (tx) => {
      const a = required(await approvals.lockApproval(tx, d.org_id, approvalId), 'approval request');
      if (a.state !== 'pending') return { pending: false as const, reason: `request is ${a.state}`, a };
      if (a.expires_at <= at) return { pending: false as const, reason: 'request is past its deadline', a };
      if (!(await notifications.hasEscalationRecord(tx, a.org_id, a.id, round))) {
        await appendAudit(tx, {
          orgId: a.org_id,
          actor: SYSTEM_ACTORS.notifier,
          action: 'approval_escalated',
          resourceType: 'approval',
          resourceId: a.id,
          details: {
            round,
            state: 'pending',
            job_id: a.job_id,
            waiting_seconds: Math.round((at.getTime() - a.requested_at.getTime()) / 1000),
            expires_at: a.expires_at.toISOString(),
          },
        });
      }
      return { pending: true as const, a };
    });
    if (!state.pending) {
      await notifications.skipPending(db, eventKey, state.reason);
      log.info({ approval_id: approvalId, round, reason: state.reason }, 'escalation stopped');
      return { status: 'stopped', event_key: eventKey, reason: state.reason };
    }
    const a = state.a;
    const nextRound = await scheduleNext(a, round, at);
    const profile = required(await profiles.findProfile(db, a.org_id, a.profile_id), `profile ${a.profile_id}`);
    const reads = recipientReads(db);
    const recipients = mergeRecipients(
      [await approverRecipients(reads, a), contactRecipients(profile.escalation_contacts)],
      await requesterExclusions(reads, a),
    );
    const mail = renderReminder(deps.settings, await requestFacts(reads, a), round, at);
    const summary = await deliver(
      deps,
      { orgId: a.org_id, kind: 'approval_escalation', eventKey, recipients, mail },
      attemptOf(job),
    );
    return { status: 'delivered', ...summary, next_round: nextRound };
  }

  /**
   * The next reminder, the same interval after this round's due time so
   * reminders do not drift. When this round ran late (a notifier was down),
   * the next one comes a full interval from now instead: no burst of
   * catch-up reminders. None past the request's deadline.
   */
  async function scheduleNext(a: ApprovalRow, round: number, at: Date): Promise<number | null> {
    if (!a.escalate_at) return null;
    const interval = a.escalate_at.getTime() - a.requested_at.getTime();
    if (interval <= 0) return null;
    const anchored = a.escalate_at.getTime() + round * interval;
    const nextAt = anchored - at.getTime() < interval / 2 ? at.getTime() + interval : anchored;
    if (nextAt >= a.expires_at.getTime()) return null;
    await enqueue(
      deps.notifications,
      'notifications',
      { kind: 'approval_escalation', org_id: a.org_id, approval_id: a.id, round: round + 1 },
      {
        jobId: jobIds.notification('approval_escalation', a.id, round + 1),
        delay: Math.max(0, nextAt - at.getTime()),
      },
    );
    return round + 1;
  }

  /**
   * An expiry batch: each request's decision mail becomes its own message
   * (the same job id the relay gives a single decision, so a re-delivered
   * batch adds nothing twice and the reconciler finds them as usual).
   * Batches fan out one at a time in this notifier: a reap delivers dozens
   * within seconds, and building several batches' messages at once raised the
   * notifier's peak memory and Redis's load while the api shared the cores
   * (docs/performance.md). A batch waiting its turn holds a worker slot, idle.
   */
  const fanOutInTurn = oneAtATime();
  async function expiryBatch(d: Payload): Promise<NotificationResult> {
    const ids = required(d.approval_ids, 'approval_ids');
    await fanOutInTurn(() =>
      enqueueMany(
        deps.notifications,
        'notifications',
        ids.map((id) => approvalNotice('approval_decided', d.org_id, id)),
      ),
    );
    return { status: 'fanned_out', messages: ids.length };
  }

  async function configFacts(reads: RecipientReads, r: ConfigRequestRow): Promise<ConfigFacts> {
    return {
      requestId: r.id,
      summary: r.summary,
      justification: r.justification,
      requester: await actorName(reads, r.org_id, r.requested_by, 'user'),
      requestedAt: r.requested_at,
      expiresAt: r.expires_at,
    };
  }

  const loadConfig = async (d: Payload): Promise<ConfigRequestRow> =>
    required(
      await configRequests.findConfigRequest(db, d.org_id, required(d.config_request_id, 'config_request_id')),
      'configuration request',
    );

  /** A configuration change waits: every other enabled admin of the org may approve it. */
  async function configSubmitted(d: Payload, job: Job): Promise<NotificationResult> {
    const r = await loadConfig(d);
    const reads = recipientReads(db);
    const [facts, admins] = await Promise.all([
      configFacts(reads, r),
      adminRecipients(reads, r.org_id, r.requested_by),
    ]);
    const recipients =
      r.state === 'pending'
        ? admins
        : admins.map((a) => ({ ...a, skipReason: a.skipReason ?? `request is already ${r.state}` }));
    const summary = await deliver(
      deps,
      {
        orgId: r.org_id,
        kind: 'config_submitted',
        eventKey: jobIds.notification('config_submitted', r.id),
        recipients,
        mail: renderConfigSubmitted(deps.settings, facts),
      },
      attemptOf(job),
    );
    return { status: 'delivered', ...summary };
  }

  async function configDecided(d: Payload, job: Job): Promise<NotificationResult> {
    const r = await loadConfig(d);
    if (r.state === 'pending') throw new Error(`configuration request ${r.id} is still pending`);
    const reads = recipientReads(db);
    const [facts, recipient, decidedBy] = await Promise.all([
      configFacts(reads, r),
      configRequesterRecipient(reads, r.org_id, r.requested_by),
      actorName(reads, r.org_id, r.decided_by ?? '-', r.decided_by_type),
    ]);
    const mail = renderConfigDecided(deps.settings, facts, {
      state: r.state,
      decidedBy,
      decidedAt: r.decided_at,
      note: r.decision_note,
    });
    const summary = await deliver(
      deps,
      {
        orgId: r.org_id,
        kind: 'config_decided',
        eventKey: jobIds.notification('config_decided', r.id),
        recipients: recipient ? [recipient] : [],
        mail,
      },
      attemptOf(job),
    );
    return { status: 'delivered', ...summary };
  }

  const handlers: Record<Payload['kind'], (d: Payload, job: Job) => Promise<NotificationResult>> = {
    config_submitted: configSubmitted,
    config_decided: configDecided,
    approval_submitted: submitted,
    approval_decided: decided,
    approval_escalation: escalation,
    certificate_issued: issued,
    approvals_expired: expiryBatch,
  };

  return {
    handle: (d: Payload, job: Job): Promise<NotificationResult> => handlers[d.kind](d, job),
  };
}

function attemptOf(job: Job) {
  return { attemptsMade: job.attemptsMade, maxAttempts: job.opts.attempts ?? 1 };
}

export interface NotifierWorkerOptions {
  readonly concurrency: number;
  readonly leaseMs: number;
}

/**
 * The BullMQ worker. Its lock lasts as long as a delivery claim, so a message
 * whose notifier died is handed to another one about when that notifier's
 * claims lapse.
 */
export function createNotifierWorker(ctx: QueueContext, deps: NotifierDeps, opts: NotifierWorkerOptions): Worker {
  const notifier = buildNotifier(deps);
  const worker = createWorker('notifications', ctx, (data, job) => notifier.handle(data, job), {
    concurrency: opts.concurrency,
    lockDuration: opts.leaseMs,
    stalledInterval: Math.max(1_000, Math.floor(opts.leaseMs / 2)),
    maxStalledCount: 5,
  });
  worker.on('failed', (job, err) => {
    const final = job ? job.attemptsMade >= (job.opts.attempts ?? 1) : true;
    deps.log[final ? 'error' : 'warn'](
      { jobId: job?.id, attempts: job?.attemptsMade, err: err.message },
      final ? 'notification job failed for good' : 'notification job will be retried',
    );
  });
  worker.on('error', (err) => deps.log.warn({ err: err.message }, 'notifier worker error'));
  return worker;
}
