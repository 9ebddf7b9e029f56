import { type Config, ConfigError, loadConfig, type ServiceName } from '@countersign/config';
import { createDatabase, type DatabaseHandle } from '@countersign/db';
import {
  createLogger,
  createRegistry,
  createShutdown,
  type Logger,
  type OpsServer,
  type ReadinessCheck,
  type Registry,
  type Shutdown,
  startOpsServer,
} from '@countersign/observability';
import { assertNoEviction, createRedis, type QueueContext } from '@countersign/queues';
import type { Redis } from 'ioredis';
import { sql } from 'kysely';

export { openSigningKeyOrExit } from './audit-signing-key.ts';

/**
 * The start-up every service shares: validated configuration, logger, metrics
 * registry, database pool, Redis (refused unless `noeviction`), the ops port
 * with /metrics, /healthz and /readyz, and one ordered shutdown. Each service's
 * main.ts calls this and then wires only its own work.
 */
export interface ServiceRuntime {
  readonly name: ServiceName;
  readonly config: Config;
  readonly log: Logger;
  readonly registry: Registry;
  readonly database: DatabaseHandle;
  /** Connection for producers (fails fast). */
  readonly redis: Redis;
  /** Connection for BullMQ workers (blocking commands, retries forever). */
  readonly workerRedis: Redis;
  readonly queues: QueueContext;
  readonly workerQueues: QueueContext;
  readonly shutdown: Shutdown;
  /** Adds a readiness check reported by /readyz. */
  addReadiness(name: string, check: ReadinessCheck): void;
  startOps(): Promise<OpsServer>;
}

export async function startService(name: ServiceName, env: NodeJS.ProcessEnv = process.env): Promise<ServiceRuntime> {
  let config: Config;
  try {
    config = loadConfig(name, env);
  } catch (err) {
    if (err instanceof ConfigError) {
      // One clear line, then stop: a service with bad configuration never half-starts.
      process.stderr.write(`countersign-${name}: ${err.message}\n`);
      process.exit(78);
    }
    throw err;
  }
  const log = createLogger(name, config.logLevel);
  const registry = createRegistry(name);
  const database = createDatabase({
    url: config.databaseUrl,
    poolSize: config.databasePoolSize,
    idleTimeoutMs: config.databaseIdleTimeoutMs,
    statementCacheSize: config.databaseStatementCache,
    applicationName: `countersign-${name}`,
    onError: (err) => log.warn({ err: err.message }, 'idle database connection lost'),
  });
  const redis = createRedis(config.redisUrl, 'producer');
  const workerRedis = createRedis(config.redisUrl, 'worker');
  for (const r of [redis, workerRedis])
    r.on('error', (err) => log.warn({ err: err.message }, 'redis connection error'));
  const shutdown = createShutdown(log, config.shutdownTimeoutMs);

  try {
    await waitForRedis(redis, 15_000);
    await redis.ping();
    await assertNoEviction(redis);
  } catch (err) {
    log.fatal({ err: err instanceof Error ? err.message : String(err) }, 'refusing to start: Redis check failed');
    process.stderr.write(`countersign-${name}: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }

  const checks: Record<string, ReadinessCheck> = {
    database: async () => {
      await sql`SELECT 1`.execute(database.db);
      return { ok: true };
    },
    redis: async () => ({ ok: (await redis.ping()) === 'PONG' }),
  };
  const runtime: ServiceRuntime = {
    name,
    config,
    log,
    registry,
    database,
    redis,
    workerRedis,
    queues: { connection: redis, prefix: config.queuePrefix },
    workerQueues: { connection: workerRedis, prefix: config.queuePrefix },
    shutdown,
    addReadiness: (n, c) => {
      checks[n] = c;
    },
    startOps: async () => {
      const ops = await startOpsServer({ host: config.metricsHost, port: config.metricsPort, registry, checks });
      log.info({ port: ops.port }, 'metrics and health listening');
      return ops;
    },
  };
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled rejection'));
  return runtime;
}

/** Producers do not queue commands while disconnected, so start-up waits for the first connection. */
function waitForRedis(redis: Redis, timeoutMs: number): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      redis.off('ready', onReady);
      reject(new Error(`Redis did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    redis.once('ready', onReady);
  });
}

/** Registers the closing of the shared clients; call after the service's own steps. */
export function closeSharedClients(rt: ServiceRuntime): void {
  rt.shutdown.add('redis', async () => {
    await Promise.allSettled([rt.redis.quit(), rt.workerRedis.quit()]);
  });
  rt.shutdown.add('database', () => rt.database.close());
}
