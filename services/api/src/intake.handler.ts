import { createHash, createPublicKey } from 'node:crypto';
import { appendAudit, type Db, idempotency, intakeKeys } from '@countersign/db';
import { type Actor, actorOf, DomainError, type Principal, type PrincipalKind, type Role } from '@countersign/domain';
import type { Logger } from '@countersign/observability';
import {
  checkRenewalRequestClaims,
  INTAKE_ALGORITHMS,
  INTAKE_JWS_MAX_CHARS,
  INTAKE_JWS_TYP,
  QUEUE_NAMES,
  type QueueContext,
  type RenewalRequestClaims,
  type RenewalRequestResult,
  validatePayload,
} from '@countersign/queues';
import {
  type Idempotency,
  renewCertificate,
  requestCertificate,
  requesterOf,
  type WorkflowSettings,
} from '@countersign/workflow';
import { DelayedError, type Job, UnrecoverableError, Worker, type WorkerOptions } from 'bullmq';
import { compactVerify } from 'jose';
import { type AbuseLimits, type RateLimiter, submitAllowance } from './rate-limit.ts';

/**
 * The `renewal-requests` intake queue (SPEC §4). A message is a compact JWS
 * signed with an intake key registered to a service principal (migration
 * 0018); it is filed exactly as that principal's HTTP request would be,
 * through the same use cases and under the same abuse limits, with the
 * message's idempotency_key playing the Idempotency-Key header.
 *
 * Nothing in Redis is trusted: the job's data is checked, the signature is
 * verified with the key its `kid` names, and only then are the claims read.
 * Every refusal before the use case is an UnrecoverableError whose message
 * starts with a stable reason code (IntakeRejection); it writes nothing but,
 * once the key has told which org the message claims to come from, an audit
 * record `intake_message_rejected` in that org (reason, kid, queue job: never
 * the JWS or the CSR). Domain refusals after verification fail the job with
 * `<domain code>: <message>`, as before.
 *
 * Replay: the submission's idempotency record stores the BullMQ job id and the
 * SHA-256 of the signed input (header and payload, which a re-encoded
 * signature cannot change) in the submission's own transaction. Afterwards:
 * - the same job again (a BullMQ retry or a redelivery after a crash) gets the
 *   first answer;
 * - a copy of the same signed message under another job id is `intake_replayed`;
 * - a fresh message the key holder signed again for the same idempotency_key
 *   (it lost its job, say to a Redis wipe) gets the first answer, or
 *   `idempotency_conflict` for another request, as over HTTP. Only the
 *   private key's holder can sign one, so nothing a Redis user can copy files
 *   a request twice.
 * A message older than COUNTERSIGN_INTAKE_MAX_AGE is refused as stale; the
 * configuration keeps that window inside the idempotency records' lifetime.
 *
 * Abuse limits: a message over its principal's submission budget or open
 * request bound is not lost but moved back to the delayed set until the
 * budget has room (Retry-After as HTTP would answer it, without spending one
 * of the job's attempts), with a log line naming the reason. It stays subject
 * to the age limit: one that waits past COUNTERSIGN_INTAKE_MAX_AGE fails as
 * `intake_stale` and must be signed again.
 */
export const INTAKE_REJECTIONS = [
  'intake_unsigned',
  'intake_too_large',
  'intake_invalid',
  'intake_unknown_key',
  'intake_revoked_key',
  'intake_bad_signature',
  'intake_principal_disabled',
  'intake_wrong_principal',
  'intake_stale',
  'intake_replayed',
] as const;
export type IntakeRejection = (typeof INTAKE_REJECTIONS)[number];

/** A message refused before anything was written; its message starts with the reason code. */
export class IntakeRefused extends UnrecoverableError {
  constructor(
    readonly reason: IntakeRejection,
    detail: string,
  ) {
    super(`${reason}: ${detail}`);
  }
}

/** An `iat` may run this far ahead of the api's clock (producers' clocks drift). */
export const INTAKE_FUTURE_SKEW_S = 60;

/** Who records a refusal: the sender is not proven, so no principal is named as the actor. */
const INTAKE_ACTOR: Actor = { id: 'system-intake', type: 'system' };

const HEADER_MEMBERS = new Set(['alg', 'kid', 'typ']);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const BASE64URL = /^[A-Za-z0-9_-]*$/;

export interface IntakeDeps {
  readonly db: Db;
  readonly settings: WorkflowSettings;
  readonly log: Logger;
  /** COUNTERSIGN_INTAKE_MAX_AGE: the oldest `iat` accepted. */
  readonly maxAgeMs: number;
  /** The api's limiter and limits: a principal's queue and HTTP submissions share one budget. */
  readonly limiter: RateLimiter;
  readonly limits: AbuseLimits;
  /** Counts a refusal (countersign_intake_rejected_total{reason}). */
  readonly onRejected?: (reason: IntakeRejection) => void;
}

/** The key a message named, once it was found: refusals from here on are audited in its org. */
interface KeyContext {
  readonly orgId: string;
  readonly kid: string;
  readonly principalId: string;
}

interface Verified {
  readonly principal: Principal;
  readonly claims: RenewalRequestClaims;
  /** SHA-256 (hex) of the signed input: the message's identity for replay. */
  readonly digest: string;
}

const refuse = (reason: IntakeRejection, detail: string): IntakeRefused => new IntakeRefused(reason, detail);

/** The job's data as Redis holds it, before anything is trusted. */
function compactJwsOf(data: unknown): string {
  const jws = typeof data === 'object' && data !== null ? (data as { jws?: unknown }).jws : undefined;
  if (typeof jws !== 'string') {
    throw refuse('intake_unsigned', 'the message is not signed: expected {"jws": "<compact JWS>"}');
  }
  if (jws.length > INTAKE_JWS_MAX_CHARS) {
    throw refuse('intake_too_large', `the JWS has ${jws.length} characters; at most ${INTAKE_JWS_MAX_CHARS}`);
  }
  try {
    validatePayload(QUEUE_NAMES.renewalRequests, data);
  } catch (err) {
    throw refuse('intake_invalid', err instanceof Error ? err.message : String(err));
  }
  return jws;
}

function protectedHeaderOf(parts: readonly string[]): Record<string, unknown> {
  if (parts.length !== 3 || !parts.every((p) => BASE64URL.test(p)) || parts[0] === '' || parts[1] === '') {
    throw refuse('intake_unsigned', 'not a compact JWS (header.payload.signature, base64url)');
  }
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(parts[0] ?? '', 'base64url').toString('utf8'));
  } catch {
    throw refuse('intake_unsigned', 'the JWS protected header is not JSON');
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw refuse('intake_unsigned', 'the JWS protected header is not a JSON object');
  }
  return header as Record<string, unknown>;
}

export function intakeProcessor(deps: IntakeDeps) {
  const { db, log } = deps;

  async function verify(job: Job, seen: (k: KeyContext) => void): Promise<Verified> {
    const jws = compactJwsOf(job.data);
    const parts = jws.split('.');
    const header = protectedHeaderOf(parts);
    // The key first: an unsigned or forged message naming a real key is recorded in that key's org.
    const kid = header.kid;
    const key =
      typeof kid === 'string' && UUID.test(kid) ? await intakeKeys.findIntakeKeyForVerification(db, kid) : undefined;
    if (key) seen({ orgId: key.org_id, kid: key.id, principalId: key.principal_id });
    const alg = header.alg;
    if (typeof alg !== 'string' || !(INTAKE_ALGORITHMS as readonly string[]).includes(alg)) {
      throw refuse(
        'intake_unsigned',
        `alg ${JSON.stringify(alg ?? null)} is not a signature this intake accepts (${INTAKE_ALGORITHMS.join(', ')})`,
      );
    }
    if (parts[2] === '') throw refuse('intake_unsigned', 'the JWS carries no signature');
    if (typeof kid !== 'string' || !UUID.test(kid)) {
      throw refuse('intake_unknown_key', 'the JWS header names no intake key id (kid)');
    }
    if (!key) throw refuse('intake_unknown_key', `no intake key ${kid}`);
    const extra = Object.keys(header).filter((m) => !HEADER_MEMBERS.has(m));
    if (extra.length > 0) {
      throw refuse('intake_invalid', `JWS header members not accepted: ${extra.slice(0, 5).join(', ')}`);
    }
    if (header.typ !== undefined && header.typ !== INTAKE_JWS_TYP) {
      throw refuse('intake_invalid', `JWS typ must be ${INTAKE_JWS_TYP}`);
    }
    if (key.revoked_at !== null) {
      throw refuse('intake_revoked_key', `intake key ${kid} was revoked at ${key.revoked_at.toISOString()}`);
    }
    if (alg !== key.alg) throw refuse('intake_bad_signature', `intake key ${kid} is an ${key.alg} key, not ${alg}`);
    let payload: Uint8Array;
    try {
      const publicKey = createPublicKey({ key: key.public_key, format: 'der', type: 'spki' });
      ({ payload } = await compactVerify(jws, publicKey, { algorithms: [key.alg] }));
    } catch {
      throw refuse('intake_bad_signature', `the signature does not verify with intake key ${kid}`);
    }
    if (key.disabled_at !== null) throw refuse('intake_principal_disabled', `principal ${key.name} is disabled`);
    if (key.kind !== 'service') {
      throw refuse('intake_wrong_principal', `principal ${key.name} is not a service account`);
    }

    let claims: unknown;
    try {
      claims = JSON.parse(Buffer.from(payload).toString('utf8'));
    } catch {
      throw refuse('intake_invalid', 'the JWS payload is not JSON');
    }
    if (typeof claims !== 'object' || claims === null || Array.isArray(claims)) {
      throw refuse('intake_invalid', 'the JWS payload is not a JSON object');
    }
    const c = claims as Record<string, unknown>;
    if (c.sub !== key.principal_id || c.org !== key.org_id) {
      throw refuse(
        'intake_wrong_principal',
        `the message speaks for ${JSON.stringify(c.sub ?? null)} of org ${JSON.stringify(c.org ?? null)}; intake key ${kid} belongs to principal ${key.principal_id} of org ${key.org_id}`,
      );
    }
    const iat = c.iat;
    if (typeof iat !== 'number' || !Number.isInteger(iat)) {
      throw refuse('intake_stale', 'the message carries no iat (whole seconds since the epoch)');
    }
    const now = Date.now() / 1000;
    if (iat > now + INTAKE_FUTURE_SKEW_S) {
      throw refuse(
        'intake_stale',
        `iat is ${Math.round(iat - now)} s in the future (at most ${INTAKE_FUTURE_SKEW_S} s)`,
      );
    }
    const maxAgeS = deps.maxAgeMs / 1000;
    if (now - iat > maxAgeS) {
      throw refuse(
        'intake_stale',
        `signed ${Math.round(now - iat)} s ago; messages older than ${maxAgeS} s are refused`,
      );
    }
    const checked = checkRenewalRequestClaims(claims);
    if (!checked.ok) throw refuse('intake_invalid', `invalid renewal-requests payload: ${checked.problems}`);

    return {
      principal: {
        id: key.principal_id,
        orgId: key.org_id,
        role: key.role as Role,
        kind: key.kind as PrincipalKind,
        name: key.name,
      },
      claims: checked.value,
      digest: createHash('sha256').update(`${parts[0]}.${parts[1]}`).digest('hex'),
    };
  }

  /** Moves the job back to the delayed set without spending an attempt; BullMQ runs it again later. */
  async function defer(job: Job, code: string, message: string, retryAfterMs: number): Promise<never> {
    // Jitter, so a burst of one principal's deferred messages does not come back all at once.
    const delay = retryAfterMs + Math.floor(Math.random() * 1000);
    log.info({ jobId: job.id, reason: code, retry_in_ms: delay }, `renewal-requests message deferred: ${message}`);
    if (!job.token) throw new Error(`${code}: ${message}; retry later`);
    await job.moveToDelayed(Date.now() + delay, job.token);
    throw new DelayedError();
  }

  async function file(job: Job, v: Verified): Promise<RenewalRequestResult> {
    const { principal, claims, digest } = v;
    const queueJobId = String(job.id);
    const judgeReplay = (prior: { queue_job_id: string | null; message_digest: string | null }) => {
      if (prior.queue_job_id !== null && prior.queue_job_id !== queueJobId && prior.message_digest === digest) {
        throw refuse(
          'intake_replayed',
          `this signed message was already filed by queue job ${prior.queue_job_id} (idempotency_key ${JSON.stringify(claims.idempotency_key)})`,
        );
      }
    };
    // Judged before the limits: a copy of a message must not spend its principal's budget, and a retry of an
    // answered request is answered, never refused for being over a limit (as over HTTP).
    const prior = await idempotency.findIdempotent(db, principal.id, claims.idempotency_key);
    if (prior) {
      judgeReplay(prior);
    } else {
      const allowance = await submitAllowance(deps.limiter, db, deps.limits, principal);
      if (!allowance.allowed) await defer(job, allowance.code, allowance.message, allowance.retryAfterMs);
    }

    const who = requesterOf(principal, actorOf(principal));
    const queue: Idempotency['queue'] = { origin: { queueJobId, messageDigest: digest }, judgeReplay };
    try {
      if ('certificate_id' in claims) {
        const body = { justification: claims.justification, csr: claims.csr };
        const r = await renewCertificate(db, deps.settings, who, claims.certificate_id, body, {
          key: claims.idempotency_key,
          fingerprint: { operation: `renew:${claims.certificate_id}`, body },
          queue,
        });
        return { job_id: r.job.id, approval_id: r.approval?.id ?? null, certificate_id: r.certificate.id };
      }
      const body = {
        profile_id: claims.profile_id,
        common_name: claims.common_name,
        sans: claims.sans,
        csr: claims.csr,
        justification: claims.justification,
      };
      const r = await requestCertificate(db, deps.settings, who, body, {
        key: claims.idempotency_key,
        fingerprint: { operation: 'request', body },
        queue,
      });
      return { job_id: r.job.id, approval_id: r.approval?.id ?? null, certificate_id: r.certificate.id };
    } catch (err) {
      if (err instanceof DomainError) throw new UnrecoverableError(`${err.code}: ${err.message}`);
      throw err;
    }
  }

  /** Records a refusal; a failure to record it is transient, so the job is retried and refused again. */
  async function reject(job: Job, err: IntakeRefused, key: KeyContext | null): Promise<void> {
    if (key) {
      await appendAudit(db, {
        orgId: key.orgId,
        actor: INTAKE_ACTOR,
        action: 'intake_message_rejected',
        resourceType: 'intake_key',
        resourceId: key.kid,
        details: { reason: err.reason, kid: key.kid, principal_id: key.principalId, queue_job_id: String(job.id) },
      });
    }
    deps.onRejected?.(err.reason);
  }

  return async (job: Job): Promise<RenewalRequestResult> => {
    let key: KeyContext | null = null;
    try {
      const verified = await verify(job, (k) => {
        key = k;
      });
      return await file(job, verified);
    } catch (err) {
      if (err instanceof IntakeRefused) await reject(job, err, key);
      throw err;
    }
  };
}

/** The api's `renewal-requests` consumer. */
export function createIntakeWorker(
  ctx: QueueContext,
  deps: IntakeDeps,
  opts: Omit<WorkerOptions, 'connection' | 'prefix'> = {},
): Worker {
  return new Worker(QUEUE_NAMES.renewalRequests, intakeProcessor(deps), {
    connection: ctx.connection,
    prefix: ctx.prefix,
    ...opts,
  });
}
