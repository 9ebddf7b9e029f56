import { type Db, idempotency } from '@countersign/db';
import { DomainError } from '@countersign/domain';
import type { FastifyReply, FastifyRequest } from 'fastify';

/**
 * Abuse limits (SPEC §3 `rate_limited`): per-principal rate limits on the
 * submission and decision endpoints, and a bound on how many requests one
 * principal may have open. Routes opt in with `config: { rateLimited }`.
 *
 * Counters live behind the RateLimiter port: main.ts passes the Redis one so
 * every api replica shares a principal's budget; tests inject the in-memory
 * one through the same port.
 */
export type LimitedAction = 'submit' | 'decide';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Counts the request against its principal's budget for this action. */
    rateLimited?: LimitedAction;
  }
}

export interface AbuseLimits {
  /** Requests per principal per minute; 0 turns the limit off. */
  readonly submitPerMinute: number;
  readonly decidePerMinute: number;
  /** Open jobs (awaiting approval, pending, running) per principal; 0 turns the bound off. */
  readonly maxOpenRequests: number;
}

/** The defaults of COUNTERSIGN_RATE_LIMIT_SUBMIT / _DECIDE / _MAX_OPEN_REQUESTS. */
export const DEFAULT_ABUSE_LIMITS: AbuseLimits = { submitPerMinute: 600, decidePerMinute: 600, maxOpenRequests: 1000 };

export interface RateLimitDecision {
  readonly allowed: boolean;
  /** Hits counted in the current window, this one included. */
  readonly count: number;
  /** Until the current window ends. */
  readonly resetMs: number;
}

export interface RateLimiter {
  /** Counts one hit of `subject` in its current fixed window of `windowMs`. */
  hit(subject: string, limit: number, windowMs: number): Promise<RateLimitDecision>;
}

const WINDOW_MS = 60_000;

/** What the Redis limiter needs of a client (ioredis satisfies it). */
export interface EvalClient {
  eval(script: string, numKeys: number, ...args: (string | number)[]): Promise<unknown>;
}

/*
 * Fixed window started by the first hit, so replicas with skewed clocks still
 * share one window. INCR and PEXPIRE run in one script: a counter can never be
 * left without its expiry by a process dying between the two.
 */
const FIXED_WINDOW = `
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}`;

export interface RedisRateLimiterOptions {
  /** The deployment's queue prefix, so limits of two deployments sharing a Redis stay apart. */
  readonly keyPrefix: string;
  /** A Redis that does not answer within this time lets the request through. */
  readonly timeoutMs?: number;
  /** Called (at most every 10 s) when Redis fails and a request was let through. */
  readonly onUnavailable?: (err: Error) => void;
}

/**
 * Counters in Redis, shared by every api replica. When Redis is unreachable
 * the limiter fails open: the api keeps accepting requests and decisions
 * during a Redis outage (PostgreSQL is the record, SPEC §1.4), and the open
 * request bound, which lives in PostgreSQL, still holds.
 */
export function redisRateLimiter(redis: EvalClient, opts: RedisRateLimiterOptions): RateLimiter {
  const timeoutMs = opts.timeoutMs ?? 250;
  let lastReport = 0;
  const failOpen = (err: Error, windowMs: number): RateLimitDecision => {
    const now = Date.now();
    if (now - lastReport >= 10_000) {
      lastReport = now;
      opts.onUnavailable?.(err);
    }
    return { allowed: true, count: 0, resetMs: windowMs };
  };
  return {
    hit: async (subject, limit, windowMs) => {
      const key = `${opts.keyPrefix}:rate-limit:${subject}`;
      let timer: NodeJS.Timeout | undefined;
      try {
        const answer = await Promise.race([
          redis.eval(FIXED_WINDOW, 1, key, windowMs),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`Redis did not answer within ${timeoutMs} ms`)), timeoutMs);
          }),
        ]);
        if (!Array.isArray(answer) || typeof answer[0] !== 'number' || typeof answer[1] !== 'number') {
          return failOpen(new Error('unexpected answer from the rate limit script'), windowMs);
        }
        const [count, ttl] = answer as [number, number];
        return { allowed: count <= limit, count, resetMs: Math.max(0, ttl) };
      } catch (err) {
        return failOpen(err instanceof Error ? err : new Error(String(err)), windowMs);
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/** Counters in this process only: for a single api instance, and for tests. */
export function memoryRateLimiter(now: () => number = Date.now): RateLimiter {
  const windows = new Map<string, { count: number; resetAt: number }>();
  return {
    hit: async (subject, limit, windowMs) => {
      const t = now();
      if (windows.size > 10_000) {
        for (const [k, w] of windows) if (w.resetAt <= t) windows.delete(k);
      }
      let w = windows.get(subject);
      if (!w || w.resetAt <= t) {
        w = { count: 0, resetAt: t + windowMs };
        windows.set(subject, w);
      }
      w.count++;
      return { allowed: w.count <= limit, count: w.count, resetMs: w.resetAt - t };
    },
  };
}

const OPEN_STATUSES = ['awaiting_approval', 'pending', 'running'];

/** How many open jobs the principal asked for, counted up to `cap` (the partial index of 0004 keeps it cheap). */
async function countOpenJobs(db: Db, principalId: string, cap: number): Promise<number> {
  const row = await db
    .selectFrom((eb) =>
      eb
        .selectFrom('jobs')
        .select('id')
        .where('requested_by', '=', principalId)
        .where('status', 'in', OPEN_STATUSES)
        .limit(cap)
        .as('open'),
    )
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** The counter of one principal's budget for an action, whichever way its requests arrive. */
const budgetOf = (action: LimitedAction, principalId: string): string => `${action}:${principalId}`;

export type SubmitAllowance =
  | { readonly allowed: true }
  | {
      readonly allowed: false;
      readonly code: 'rate_limited' | 'too_many_open_requests';
      readonly retryAfterMs: number;
      readonly message: string;
    };

/**
 * The submission limits of one principal outside HTTP (the `renewal-requests`
 * intake): one hit on the same budget its HTTP submissions count against,
 * then the open-requests bound, with the same numbers. The caller skips it
 * for a replay of an answer already given, as the HTTP hooks do.
 */
export async function submitAllowance(
  limiter: RateLimiter,
  db: Db,
  limits: AbuseLimits,
  principal: { readonly id: string; readonly name: string },
): Promise<SubmitAllowance> {
  if (limits.submitPerMinute > 0) {
    const d = await limiter.hit(budgetOf('submit', principal.id), limits.submitPerMinute, WINDOW_MS);
    if (!d.allowed) {
      return {
        allowed: false,
        code: 'rate_limited',
        retryAfterMs: Math.max(1000, d.resetMs),
        message: `principal ${principal.name} exceeded ${limits.submitPerMinute} submissions per minute`,
      };
    }
  }
  if (limits.maxOpenRequests > 0) {
    const open = await countOpenJobs(db, principal.id, limits.maxOpenRequests);
    if (open >= limits.maxOpenRequests) {
      return {
        allowed: false,
        code: 'too_many_open_requests',
        retryAfterMs: 60_000,
        message: `principal ${principal.name} already has ${open} open requests (the limit is ${limits.maxOpenRequests})`,
      };
    }
  }
  return { allowed: true };
}

/**
 * Per-principal rate limit for routes marked `rateLimited`; runs right after
 * authentication, before the body is parsed, so a limited request costs one
 * counter and writes nothing.
 */
export function rateLimitHook(limiter: RateLimiter, limits: AbuseLimits) {
  return async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const action = req.routeOptions.config?.rateLimited;
    const p = req.principal;
    if (!action || !p) return;
    const limit = action === 'submit' ? limits.submitPerMinute : limits.decidePerMinute;
    if (limit <= 0) return;
    const d = await limiter.hit(budgetOf(action, p.id), limit, WINDOW_MS);
    if (d.allowed) return;
    const seconds = Math.max(1, Math.ceil(d.resetMs / 1000));
    reply.header('retry-after', String(seconds));
    throw new DomainError(
      'rate_limited',
      `principal ${p.name} exceeded ${limit} ${action === 'submit' ? 'submissions' : 'decisions'} per minute; retry in ${seconds} s`,
    );
  };
}

/**
 * Bound on open requests per principal for submissions, checked after the
 * body validated (so bad input still answers 400). Checked before the
 * submitting transaction, so concurrent submissions of one principal may
 * overshoot it by at most their number in flight. An Idempotency-Key replay
 * of an answer already given is never refused.
 */
export function openRequestsHook(db: Db, limits: AbuseLimits) {
  return async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const p = req.principal;
    if (req.routeOptions.config?.rateLimited !== 'submit' || !p || limits.maxOpenRequests <= 0) return;
    const open = await countOpenJobs(db, p.id, limits.maxOpenRequests);
    if (open < limits.maxOpenRequests) return;
    const key = req.headers['idempotency-key'];
    if (typeof key === 'string') {
      if (await idempotency.findIdempotent(db, p.id, key)) return;
    }
    // A hint, not a promise: requests close when approvers decide or the issuer signs.
    reply.header('retry-after', '60');
    throw new DomainError(
      'too_many_open_requests',
      `principal ${p.name} already has ${open} open requests (the limit is ${limits.maxOpenRequests}); wait for some to be decided or issued`,
    );
  };
}
