import { Redis, type RedisOptions } from 'ioredis';

/**
 * Redis connections for BullMQ. Workers need `maxRetriesPerRequest: null` so a
 * blocking call survives a Redis restart; producers fail fast instead, which
 * lets an HTTP request see an error (and the outbox keep the event) rather than hang.
 */
export function createRedis(url: string, role: 'worker' | 'producer', extra: RedisOptions = {}): Redis {
  return new Redis(url, {
    maxRetriesPerRequest: role === 'worker' ? null : 2,
    enableReadyCheck: true,
    enableOfflineQueue: role === 'worker',
    retryStrategy: (times) => Math.min(times * 200, 2_000),
    ...extra,
  });
}

export class RedisPolicyError extends Error {}

/**
 * BullMQ loses jobs when Redis evicts keys; refuse to start unless the
 * eviction policy is `noeviction` (SPEC §5, fail fast at start).
 */
export async function assertNoEviction(redis: Redis): Promise<void> {
  const info = await redis.info('memory');
  const policy = /maxmemory_policy:(\S+)/.exec(info)?.[1];
  if (policy !== undefined && policy !== 'noeviction') {
    throw new RedisPolicyError(
      `Redis maxmemory-policy is "${policy}"; Countersign requires "noeviction" (set it in redis.conf or with CONFIG SET maxmemory-policy noeviction)`,
    );
  }
}
