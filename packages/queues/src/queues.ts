import { FormatRegistry } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { type Job, type JobsOptions, Queue, UnrecoverableError, Worker, type WorkerOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import { CONTRACTS, type PayloadOf, type QueueName } from './contracts.ts';

// TypeBox checks formats only through its registry; ids in payloads are UUIDs.
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
if (!FormatRegistry.Has('uuid')) FormatRegistry.Set('uuid', (v) => UUID.test(v));

const validators = Object.fromEntries(
  Object.entries(CONTRACTS).map(([name, c]) => [name, TypeCompiler.Compile(c.schema)]),
) as { [Q in QueueName]: ReturnType<typeof TypeCompiler.Compile<(typeof CONTRACTS)[Q]['schema']>> };

export class InvalidPayloadError extends UnrecoverableError {}

/** Checks a payload against its queue's contract; the message names every bad field. */
export function validatePayload<Q extends QueueName>(queue: Q, data: unknown): PayloadOf<Q> {
  const v = validators[queue];
  if (v.Check(data)) return data as PayloadOf<Q>;
  const problems = [...v.Errors(data)].slice(0, 5).map((e) => `${e.path || '/'}: ${e.message}`);
  throw new InvalidPayloadError(`invalid ${queue} payload: ${problems.join('; ')}`);
}

export function defaultJobOptions(queue: QueueName): JobsOptions {
  const c = CONTRACTS[queue];
  return {
    attempts: c.attempts,
    backoff: { type: 'exponential', delay: c.backoffMs },
    // Completed jobs are not the record (PostgreSQL is); keep a short tail for the dashboard.
    removeOnComplete: { age: 3600, count: 1000 },
    removeOnFail: { age: 7 * 24 * 3600 },
  };
}

export interface QueueContext {
  readonly connection: Redis;
  readonly prefix: string;
}

/** The payload type lives on enqueue(), which validates; the queue object itself stays untyped. */
export type TypedQueue<Q extends QueueName> = Queue & { readonly __contract?: Q };

export function openQueue<Q extends QueueName>(name: Q, ctx: QueueContext): TypedQueue<Q> {
  return new Queue(name, {
    connection: ctx.connection,
    prefix: ctx.prefix,
    defaultJobOptions: defaultJobOptions(name),
  });
}

/** Adds a job after validating it against the contract: a producer can never enqueue a bad payload. */
export async function enqueue<Q extends QueueName>(
  queue: TypedQueue<Q>,
  name: Q,
  data: PayloadOf<Q>,
  opts: JobsOptions = {},
): Promise<Job<PayloadOf<Q>>> {
  const valid = validatePayload(name, data);
  return (await queue.add(name, valid, opts)) as Job<PayloadOf<Q>>;
}

/** A job for enqueueMany: its payload and options. */
export interface JobSpec<Q extends QueueName> {
  readonly data: PayloadOf<Q>;
  readonly opts?: JobsOptions;
}

/**
 * Jobs per Redis transaction in enqueueMany. Redis runs a MULTI to its end
 * before serving anyone else, so one expiry batch's 2,000 mails in one
 * transaction would stall every other client for its whole length.
 */
export const ENQUEUE_CHUNK = 500;

/**
 * Adds several jobs, every payload validated against the contract before any
 * is added: a batch that breaks the contract adds nothing. Up to
 * ENQUEUE_CHUNK jobs go in one Redis transaction (BullMQ addBulk: one round
 * trip, all or none); a failure between chunks leaves the earlier ones added,
 * which callers publishing under deterministic job ids simply repeat.
 */
export async function enqueueMany<Q extends QueueName>(
  queue: TypedQueue<Q>,
  name: Q,
  jobs: readonly JobSpec<Q>[],
): Promise<void> {
  const valid = jobs.map((j) => ({ name, data: validatePayload(name, j.data), opts: j.opts ?? {} }));
  for (let from = 0; from < valid.length; from += ENQUEUE_CHUNK) {
    await queue.addBulk(valid.slice(from, from + ENQUEUE_CHUNK));
  }
}

export type Handler<Q extends QueueName, R> = (data: PayloadOf<Q>, job: Job) => Promise<R>;

/** A worker whose handler only ever sees payloads that passed the contract. */
export function createWorker<Q extends QueueName, R>(
  name: Q,
  ctx: QueueContext,
  handler: Handler<Q, R>,
  opts: Omit<WorkerOptions, 'connection' | 'prefix'> = {},
): Worker {
  return new Worker(
    name,
    async (job: Job) => {
      const data = validatePayload(name, job.data);
      return handler(data, job);
    },
    { connection: ctx.connection, prefix: ctx.prefix, ...opts },
  );
}
