import { createHash } from 'node:crypto';
import { enqueue, openQueue, type QueueContext, type RenewalRequest, type TypedQueue } from '@countersign/queues';
import { type IntakeSigner, signRenewalRequest } from './intake-signing.ts';

/**
 * The `renewal-requests` queue (SPEC §4): how an upstream system asks for a
 * certificate or a renewal without HTTP. Each message is signed here with the
 * producer's intake key (intake-signing.ts), so the api files it as the
 * service principal the key is registered to; the queue carries only the
 * signed message, never a key or a secret.
 */
export type { RenewalRequest, RenewalRequestResult } from '@countersign/queues';
export {
  type GeneratedIntakeKey,
  generateIntakeKeyPair,
  type IntakeSigner,
  intakeAlgorithmOf,
  signRenewalRequest,
} from './intake-signing.ts';

export const RENEWAL_REQUESTS_QUEUE = 'renewal-requests';
/** The default Redis key prefix of a Countersign deployment (COUNTERSIGN_QUEUE_PREFIX). */
export const DEFAULT_QUEUE_PREFIX = '{countersign}';

export interface RenewalQueueConnection {
  /** An ioredis connection to the deployment's Redis. */
  readonly connection: QueueContext['connection'];
  /** Key prefix; defaults to `{countersign}`. */
  readonly prefix?: string;
}

/**
 * A BullMQ job id derived from the principal and the idempotency key: while
 * the first message is still in Redis, enqueuing the same request again is a
 * no-op, and the api's idempotency record covers the rest.
 */
export function renewalRequestJobId(principalId: string, idempotencyKey: string): string {
  const digest = createHash('sha256').update(`${principalId}\n${idempotencyKey}`).digest('hex').slice(0, 32);
  return `rr-${digest}`;
}

export interface EnqueuedRenewalRequest {
  /** BullMQ job id; the job's return value is `{job_id, approval_id, certificate_id}`. */
  readonly queueJobId: string;
}

export interface EnqueueOptions {
  /** Overrides the derived job id (renewalRequestJobId): a resubmission after a lost job needs a new one. */
  readonly jobId?: string;
}

/**
 * Signs one request with the signer's intake key and enqueues it. Pass an
 * open queue (from openRenewalRequests) when sending many; with a bare
 * connection a queue is opened and closed per call.
 */
export async function enqueueRenewalRequest(
  target: RenewalQueueConnection | TypedQueue<'renewal-requests'>,
  request: RenewalRequest,
  signer: IntakeSigner,
  opts: EnqueueOptions = {},
): Promise<EnqueuedRenewalRequest> {
  const jws = await signRenewalRequest(request, signer);
  const jobId = opts.jobId ?? renewalRequestJobId(signer.principalId, request.idempotency_key);
  if (isQueue(target)) {
    const job = await enqueue(target, 'renewal-requests', { jws }, { jobId });
    return { queueJobId: job.id ?? jobId };
  }
  const queue = openRenewalRequests(target);
  try {
    const job = await enqueue(queue, 'renewal-requests', { jws }, { jobId });
    return { queueJobId: job.id ?? jobId };
  } finally {
    await queue.close();
  }
}

export function openRenewalRequests(conn: RenewalQueueConnection): TypedQueue<'renewal-requests'> {
  return openQueue('renewal-requests', { connection: conn.connection, prefix: conn.prefix ?? DEFAULT_QUEUE_PREFIX });
}

function isQueue(t: RenewalQueueConnection | TypedQueue<'renewal-requests'>): t is TypedQueue<'renewal-requests'> {
  return typeof (t as { add?: unknown }).add === 'function';
}
