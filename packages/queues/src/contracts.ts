import { type Static, type TSchema, Type } from '@sinclair/typebox';

/**
 * Queue contracts are data: one map from queue name to payload schema and
 * retry policy. Producers and consumers infer their types from it, and
 * consumers validate every payload against it before acting.
 */
export const QUEUE_NAMES = {
  /** Public intake: upstream systems enqueue certificate requests and renewals here (SPEC §4). */
  renewalRequests: 'renewal-requests',
  /** The pending queue: released jobs, consumed only by the issuer. */
  issuance: 'issuance',
  /** Mails to send, including delayed escalation reminders. */
  notifications: 'notifications',
  /** The reaper's job schedulers. */
  maintenance: 'maintenance',
} as const;
export type QueueName = (typeof QUEUE_NAMES)[keyof typeof QUEUE_NAMES];

const Uuid = Type.String({ format: 'uuid' });
const Pem = Type.String({ minLength: 1, maxLength: 65_536 });

const RenewExisting = Type.Object(
  {
    idempotency_key: Type.String({ minLength: 1, maxLength: 200 }),
    principal_id: Uuid,
    certificate_id: Uuid,
    justification: Type.String({ minLength: 1, maxLength: 4000 }),
    csr: Type.Optional(Pem),
  },
  { additionalProperties: false },
);

const RequestNew = Type.Object(
  {
    idempotency_key: Type.String({ minLength: 1, maxLength: 200 }),
    principal_id: Uuid,
    profile_id: Uuid,
    common_name: Type.String({ minLength: 1, maxLength: 253 }),
    sans: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 253 }), { maxItems: 100 })),
    justification: Type.Optional(Type.String({ minLength: 1, maxLength: 4000 })),
    csr: Pem,
  },
  { additionalProperties: false },
);

export const RenewalRequestPayload = Type.Union([RenewExisting, RequestNew]);
export type RenewalRequestPayload = Static<typeof RenewalRequestPayload>;
export type RenewalRequestResult = { job_id: string; approval_id: string | null; certificate_id: string };

export const IssuancePayload = Type.Object({ job_id: Uuid }, { additionalProperties: false });

export const NOTIFICATION_KINDS = [
  'approval_submitted',
  'approval_decided',
  'approval_escalation',
  'certificate_issued',
] as const;
export type NotificationKind = (typeof NOTIFICATION_KINDS)[number];

/**
 * Not a mail: the requests one reaper batch expired (one org), which the
 * notifier turns into each request's `approval_decided` message. Adding up to
 * a batch's worth of messages in the relay competed with the expiry itself
 * for the cores; the notifier runs at a lower CPU priority.
 */
export const EXPIRY_BATCH = 'approvals_expired' as const;
/** Ids one expiry batch message carries at most (COUNTERSIGN_REAPER_BATCH_SIZE's ceiling). */
export const EXPIRY_BATCH_MAX_IDS = 10_000;

export const NotificationPayload = Type.Object(
  {
    kind: Type.Union(([...NOTIFICATION_KINDS, EXPIRY_BATCH] as const).map((k) => Type.Literal(k))),
    org_id: Uuid,
    approval_id: Type.Optional(Uuid),
    /** The expired requests of an expiry batch. */
    approval_ids: Type.Optional(Type.Array(Uuid, { minItems: 1, maxItems: EXPIRY_BATCH_MAX_IDS })),
    job_id: Type.Optional(Uuid),
    version_id: Type.Optional(Uuid),
    /** Reminder number for escalations, so each reminder is its own event. */
    round: Type.Optional(Type.Integer({ minimum: 1 })),
  },
  { additionalProperties: false },
);

export const MAINTENANCE_TASKS = [
  'expire-approvals',
  'reconcile-released',
  'reconcile-notifications',
  'renewal-scan',
  'verify-audit',
  'checkpoint-audit',
  'prune-idempotency',
] as const;
export type MaintenanceTask = (typeof MAINTENANCE_TASKS)[number];

export const MaintenancePayload = Type.Object({}, { additionalProperties: true });

interface Contract<S extends TSchema> {
  readonly schema: S;
  readonly attempts: number;
  readonly backoffMs: number;
}

export const CONTRACTS = {
  'renewal-requests': { schema: RenewalRequestPayload, attempts: 5, backoffMs: 1_000 },
  // Transient failures (database restart) are retried; the issuer re-checks the row every time.
  issuance: { schema: IssuancePayload, attempts: 12, backoffMs: 250 },
  notifications: { schema: NotificationPayload, attempts: 8, backoffMs: 2_000 },
  maintenance: { schema: MaintenancePayload, attempts: 1, backoffMs: 1_000 },
} as const satisfies Record<QueueName, Contract<TSchema>>;

export type Contracts = typeof CONTRACTS;
export type PayloadOf<Q extends QueueName> = Static<Contracts[Q]['schema']>;

/**
 * Deterministic job ids make re-publishing idempotent while the job is still in
 * Redis. BullMQ forbids ':' in custom ids, and all-digit ids collide with its own.
 */
export const jobIds = {
  issuance: (jobId: string) => `issue-${jobId}`,
  notification: (kind: NotificationKind, id: string, round?: number) =>
    round === undefined ? `${kind}-${id}` : `${kind}-${id}-r${round}`,
  /** Named after the batch's first (lowest) request id: a request expires once, so no two batches share it. */
  expiryBatch: (approvalIds: readonly string[]) => `${EXPIRY_BATCH}-${approvalIds.reduce((a, b) => (b < a ? b : a))}`,
} as const;

/** The mail message for a request submitted or decided: one per request and kind (its job id dedupes replays). */
export function approvalNotice(
  kind: 'approval_submitted' | 'approval_decided',
  org_id: string,
  approval_id: string,
): { data: Static<typeof NotificationPayload>; opts: { jobId: string } } {
  return { data: { kind, org_id, approval_id }, opts: { jobId: jobIds.notification(kind, approval_id) } };
}
