import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Every metric of SPEC §7 is declared here once. Each service creates only the
 * ones it owns (the service where the event happens), so a number is never
 * counted twice across services.
 */
export function createRegistry(service: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry });
  return registry;
}

export const PENDING_AGE_BUCKETS = [60, 300, 1800, 3600, 21600, 86400];

export const metricFactories = {
  decisions: (r: Registry) =>
    new Counter({
      name: 'countersign_approval_decisions_total',
      help: 'Approval requests that reached a terminal state, by outcome',
      labelNames: ['outcome', 'profile_id'] as const,
      registers: [r],
    }),
  pendingAge: (r: Registry) =>
    new Histogram({
      name: 'countersign_approval_pending_age_seconds',
      help: 'Time an approval request waited before its decision, observed at decision',
      labelNames: ['profile_id'] as const,
      buckets: PENDING_AGE_BUCKETS,
      registers: [r],
    }),
  pendingGauge: (r: Registry) =>
    new Gauge({
      name: 'countersign_approvals_pending',
      help: 'Approval requests currently pending, by profile',
      labelNames: ['profile_id'] as const,
      registers: [r],
    }),
  /**
   * Beyond SPEC §7, for the "about to expire" alert: seconds until the earliest
   * pending request of a profile expires (exported by the reaper with the pending gauge).
   */
  nextExpiry: (r: Registry) =>
    new Gauge({
      name: 'countersign_approval_next_expiry_seconds',
      help: 'Seconds until the earliest pending approval request of the profile expires',
      labelNames: ['profile_id'] as const,
      registers: [r],
    }),
  issued: (r: Registry) =>
    new Counter({
      name: 'countersign_certificates_issued_total',
      help: 'Certificates signed and recorded',
      labelNames: ['profile_id', 'issuer'] as const,
      registers: [r],
    }),
  issuanceSeconds: (r: Registry) =>
    new Histogram({
      name: 'countersign_issuance_seconds',
      help: 'Time from release of a job to its certificate being recorded',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [r],
    }),
  notifications: (r: Registry) =>
    new Counter({
      name: 'countersign_notifications_total',
      help: 'Notification deliveries by kind and outcome',
      labelNames: ['kind', 'outcome'] as const,
      registers: [r],
    }),
  /** 1 when the org has two enabled admins neither created by the other (SPEC §1.6), else 0. */
  twoPersonReady: (r: Registry) =>
    new Gauge({
      name: 'countersign_org_two_person_ready',
      help: 'Whether the org is two-person ready (two independent enabled admins): 1 or 0',
      labelNames: ['org_id'] as const,
      registers: [r],
    }),
  queueJobs: (r: Registry) =>
    new Gauge({
      name: 'countersign_queue_jobs',
      help: 'BullMQ jobs by queue and state',
      labelNames: ['queue', 'state'] as const,
      registers: [r],
    }),
  outboxLag: (r: Registry) =>
    new Gauge({
      name: 'countersign_outbox_lag_seconds',
      help: 'Age of the oldest unpublished outbox event',
      registers: [r],
    }),
  /** Relay batches: `empty` ones found nothing to publish (another relay had it, or a poll found the outbox empty). */
  outboxBatches: (r: Registry) =>
    new Counter({
      name: 'countersign_outbox_relay_batches_total',
      help: 'Outbox relay batches committed, by whether they published rows',
      labelNames: ['result'] as const,
      registers: [r],
    }),
  /** Outbox rows whose payload broke their queue contract, kept in outbox_dead_letters instead of published. */
  outboxDeadLetters: (r: Registry) =>
    new Counter({
      name: 'countersign_outbox_dead_letters_total',
      help: 'Outbox rows the relay could not publish (payload breaks the queue contract), kept in outbox_dead_letters',
      registers: [r],
    }),
  /**
   * Beyond SPEC §7: `renewal-requests` messages the api refused before writing anything (unsigned, forged,
   * stale, replayed, ...), by reason code. Domain refusals of verified messages are not counted here.
   */
  intakeRejected: (r: Registry) =>
    new Counter({
      name: 'countersign_intake_rejected_total',
      help: 'Intake queue messages refused before anything was written, by reason',
      labelNames: ['reason'] as const,
      registers: [r],
    }),
  auditChainOk: (r: Registry) =>
    new Gauge({
      name: 'countersign_audit_chain_ok',
      help: '1 when the last audit chain verification succeeded, else 0',
      registers: [r],
    }),
  httpDuration: (r: Registry) =>
    new Histogram({
      name: 'countersign_http_request_duration_seconds',
      help: 'HTTP request duration by method, route and status',
      labelNames: ['method', 'route', 'status'] as const,
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [r],
    }),
};

export type { Registry } from 'prom-client';
