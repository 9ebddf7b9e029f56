import { MAX_CERTIFICATE_NAMES } from '@countersign/domain';
import { FormatRegistry, type Static, type TSchema, Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';

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

/*
 * The `renewal-requests` contract (SPEC §4). A message is `{ jws }`: a compact
 * JWS whose protected header names the algorithm and the registered intake key
 * (`kid`), and whose payload is one request plus who signed it (`sub`, the
 * service principal; `org`, its org) and when (`iat`, seconds). Nothing else
 * travels outside the signature: the api trusts no field it did not verify.
 */

/** The algorithms an intake key may use; never `none`, never a shared-secret HS*. */
export const INTAKE_ALGORITHMS = ['ES256', 'EdDSA', 'RS256'] as const;
export type IntakeAlgorithm = (typeof INTAKE_ALGORITHMS)[number];
/**
 * The largest compact JWS the intake accepts. Base64url adds a third, so the signed JSON may be about
 * 96 KiB: a CSR of the usual few KiB with room to spare. Larger messages are refused before any parsing
 * (intake_too_large), and signRenewalRequest refuses to produce one.
 */
export const INTAKE_JWS_MAX_CHARS = 128 * 1024;
/** The JWS `typ` producers set (explicit typing: a token signed for something else is not an intake message). */
export const INTAKE_JWS_TYP = 'countersign-intake+jwt';

const IdempotencyKey = Type.String({ minLength: 1, maxLength: 200 });
const renewExisting = {
  idempotency_key: IdempotencyKey,
  certificate_id: Uuid,
  justification: Type.String({ minLength: 1, maxLength: 4000 }),
  csr: Type.Optional(Pem),
};
const requestNew = {
  idempotency_key: IdempotencyKey,
  profile_id: Uuid,
  common_name: Type.String({ minLength: 1, maxLength: 253 }),
  sans: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 253 }), { maxItems: MAX_CERTIFICATE_NAMES })),
  justification: Type.Optional(Type.String({ minLength: 1, maxLength: 4000 })),
  csr: Pem,
};
/** Who signed and when: checked against the key the `kid` names, never taken on trust. */
const signedBy = {
  sub: Uuid,
  org: Uuid,
  /** Seconds since the epoch (JWT NumericDate), whole. */
  iat: Type.Integer({ minimum: 0 }),
  /** Optional nonce: two signatures of one request in the same second stay distinct messages. */
  jti: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
};
const Strict = { additionalProperties: false } as const;

/** One request as a producer asks for it: a renewal of a certificate, or a new certificate. */
export const RenewalRequest = Type.Union([Type.Object(renewExisting, Strict), Type.Object(requestNew, Strict)]);
export type RenewalRequest = Static<typeof RenewalRequest>;

/** The signed payload of a message: one request and its signer. */
export const RenewalRequestClaims = Type.Union([
  Type.Object({ ...signedBy, ...renewExisting }, Strict),
  Type.Object({ ...signedBy, ...requestNew }, Strict),
]);
export type RenewalRequestClaims = Static<typeof RenewalRequestClaims>;

/** What travels on the queue. */
export const RenewalRequestMessage = Type.Object(
  { jws: Type.String({ minLength: 1, maxLength: INTAKE_JWS_MAX_CHARS }) },
  { additionalProperties: false },
);
export type RenewalRequestMessage = Static<typeof RenewalRequestMessage>;
export type RenewalRequestResult = { job_id: string; approval_id: string | null; certificate_id: string };

type Checked<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly problems: string };

// Compiled on first use; ids are checked as UUIDs through TypeBox's format registry (queues.ts registers the same).
const compiled = new Map<TSchema, ReturnType<typeof TypeCompiler.Compile>>();
function check<T>(schema: TSchema, data: unknown): Checked<T> {
  if (!FormatRegistry.Has('uuid')) {
    FormatRegistry.Set('uuid', (v) => /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(v));
  }
  let v = compiled.get(schema);
  if (!v) {
    v = TypeCompiler.Compile(schema);
    compiled.set(schema, v);
  }
  if (v.Check(data)) return { ok: true, value: data as T };
  const problems = [...v.Errors(data)].slice(0, 5).map((e) => `${e.path || '/'}: ${e.message}`);
  return { ok: false, problems: problems.join('; ') };
}

/** Checks a request before it is signed (the producer). */
export const checkRenewalRequest = (data: unknown): Checked<RenewalRequest> => check(RenewalRequest, data);
/** Checks a verified payload (the api, after the signature): the request and its signer's claims. */
export const checkRenewalRequestClaims = (data: unknown): Checked<RenewalRequestClaims> =>
  check(RenewalRequestClaims, data);

export const IssuancePayload = Type.Object({ job_id: Uuid }, { additionalProperties: false });

export const NOTIFICATION_KINDS = [
  'approval_submitted',
  'approval_decided',
  'approval_escalation',
  'config_submitted',
  'config_decided',
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
    /** A configuration request (config_submitted, config_decided). */
    config_request_id: Type.Optional(Uuid),
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
  'expire-config-requests',
] as const;
export type MaintenanceTask = (typeof MAINTENANCE_TASKS)[number];

export const MaintenancePayload = Type.Object({}, { additionalProperties: true });

interface Contract<S extends TSchema> {
  readonly schema: S;
  readonly attempts: number;
  readonly backoffMs: number;
}

export const CONTRACTS = {
  // Transient failures (database restart) are retried; a refusal is an UnrecoverableError, and a principal
  // over its abuse limits is delayed without spending an attempt (services/api/src/intake.handler.ts).
  'renewal-requests': { schema: RenewalRequestMessage, attempts: 5, backoffMs: 1_000 },
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
