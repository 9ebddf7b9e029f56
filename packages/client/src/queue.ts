import { createHash } from 'node:crypto';
import {
  enqueue,
  openQueue,
  type QueueContext,
  type RenewalRequestPayload,
  type TypedQueue,
  validatePayload,
} from '@countersign/queues';

/**
 * The `renewal-requests` queue (SPEC §4): how an upstream system asks for a
 * certificate or a renewal without HTTP. The payload is validated against the
 * queue contract before it is sent, so a bad payload fails here, in the
 * producer, with the field named; it carries ids and a CSR, never a key.
 */
export type { RenewalRequestPayload, RenewalRequestResult } from '@countersign/queues';

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
export function renewalRequestJobId(payload: Pick<RenewalRequestPayload, 'principal_id' | 'idempotency_key'>): string {
  const digest = createHash('sha256')
    .update(`${payload.principal_id}\n${payload.idempotency_key}`)
    .digest('hex')
    .slice(0, 32);
  return `rr-${digest}`;
}

export interface EnqueuedRenewalRequest {
  /** BullMQ job id; the job's return value is `{job_id, approval_id, certificate_id}`. */
  readonly queueJobId: string;
}

/**
 * Enqueues one request. Pass an open queue (from openRenewalRequests) when
 * sending many; with a bare connection a queue is opened and closed per call.
 */
export async function enqueueRenewalRequest(
  target: RenewalQueueConnection | TypedQueue<'renewal-requests'>,
  payload: RenewalRequestPayload,
): Promise<EnqueuedRenewalRequest> {
  const valid = validatePayload('renewal-requests', payload);
  const jobId = renewalRequestJobId(valid);
  if (isQueue(target)) {
    const job = await enqueue(target, 'renewal-requests', valid, { jobId });
    return { queueJobId: job.id ?? jobId };
  }
  const queue = openRenewalRequests(target);
  try {
    const job = await enqueue(queue, 'renewal-requests', valid, { jobId });
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
