import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type DevstackLog, ensureLocalBinaries, startPostgres, startRedis } from '@countersign/devstack';

export interface TestInfra {
  /** Superuser-capable URL (tests create per-suite databases and roles). */
  databaseUrl: string;
  redisUrl: string;
  source: 'env' | 'testcontainers' | 'local';
  stop(): Promise<void>;
}

/** How long a container runtime gets to answer before we fall back to local servers. */
const RUNTIME_PROBE_TIMEOUT_MS = 2_500;

type LogFn = (message: string) => void;

function toLogFn(log: DevstackLog | undefined): LogFn {
  if (log === undefined) return () => {};
  if (typeof log === 'function') return log;
  return (message) => log.info(message);
}

/**
 * Finds a PostgreSQL + Redis pair for integration tests, in order of preference:
 * 1. COUNTERSIGN_TEST_DATABASE_URL + COUNTERSIGN_TEST_REDIS_URL (CI services, a dev's own servers);
 * 2. testcontainers, when a container runtime answers;
 * 3. local postgres/redis-server binaries via @countersign/devstack, in a temp dir.
 * COUNTERSIGN_TEST_INFRA=local|testcontainers forces one of the last two.
 * The caller owns the result and must call stop().
 */
export async function resolveTestInfra(options: { log?: DevstackLog } = {}): Promise<TestInfra> {
  const log = toLogFn(options.log);
  const envDb = process.env.COUNTERSIGN_TEST_DATABASE_URL;
  const envRedis = process.env.COUNTERSIGN_TEST_REDIS_URL;
  if (envDb && envRedis) {
    log('test infra: using COUNTERSIGN_TEST_DATABASE_URL / COUNTERSIGN_TEST_REDIS_URL');
    return { databaseUrl: envDb, redisUrl: envRedis, source: 'env', stop: async () => {} };
  }
  if (envDb || envRedis) {
    throw new Error('Set both COUNTERSIGN_TEST_DATABASE_URL and COUNTERSIGN_TEST_REDIS_URL, or neither');
  }

  const forced = process.env.COUNTERSIGN_TEST_INFRA;
  if (forced !== undefined && forced !== '' && forced !== 'local' && forced !== 'testcontainers') {
    throw new Error(`COUNTERSIGN_TEST_INFRA must be "local" or "testcontainers", got "${forced}"`);
  }
  if (forced !== 'local') {
    const runtime = await probeContainerRuntime(log);
    if (runtime) return startContainers(log);
    if (forced === 'testcontainers')
      throw new Error('COUNTERSIGN_TEST_INFRA=testcontainers but no container runtime answers');
  }
  return startLocal(options.log, log);
}

/**
 * testcontainers fails fast ("Could not find a working container runtime strategy") when
 * no Docker socket exists, but a socket whose daemon hangs could stall for much longer,
 * so the probe is bounded. The module is imported lazily: it is heavy and unused on the
 * local path.
 */
async function probeContainerRuntime(log: LogFn): Promise<boolean> {
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    const { getContainerRuntimeClient } = await import('testcontainers');
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`no answer within ${RUNTIME_PROBE_TIMEOUT_MS} ms`)),
        RUNTIME_PROBE_TIMEOUT_MS,
      );
    });
    await Promise.race([getContainerRuntimeClient(), timeout]);
    return true;
  } catch (err) {
    log(
      `test infra: no container runtime (${(err as Error).message}; ${Date.now() - started} ms), using local binaries`,
    );
    return false;
  } finally {
    clearTimeout(timer);
  }
}

async function startContainers(log: LogFn): Promise<TestInfra> {
  const [{ PostgreSqlContainer }, { RedisContainer }] = await Promise.all([
    import('@testcontainers/postgresql'),
    import('@testcontainers/redis'),
  ]);
  log('test infra: starting postgres:16-alpine and redis:7-alpine containers');
  const results = await Promise.allSettled([
    new PostgreSqlContainer('postgres:16-alpine')
      .withUsername('postgres')
      .withPassword('postgres')
      .withDatabase('postgres')
      // Same durability trade-offs as the local fallback: tests never need crash safety.
      .withCommand([
        'postgres',
        '-c',
        'fsync=off',
        '-c',
        'synchronous_commit=off',
        '-c',
        'full_page_writes=off',
        '-c',
        'max_connections=300',
      ])
      .start(),
    new RedisContainer('redis:7-alpine').withCommand(['redis-server', '--maxmemory-policy', 'noeviction']).start(),
  ]);
  const [pg, redis] = results;
  if (pg.status === 'rejected' || redis.status === 'rejected') {
    await Promise.allSettled(results.map((r) => (r.status === 'fulfilled' ? r.value.stop() : undefined)));
    const reason = pg.status === 'rejected' ? pg.reason : redis.status === 'rejected' ? redis.reason : undefined;
    throw reason instanceof Error ? reason : new Error(String(reason));
  }
  return {
    databaseUrl: pg.value.getConnectionUri(),
    redisUrl: redis.value.getConnectionUrl(),
    source: 'testcontainers',
    async stop() {
      await Promise.all([pg.value.stop(), redis.value.stop()]);
    },
  };
}

async function startLocal(devstackLog: DevstackLog | undefined, log: LogFn): Promise<TestInfra> {
  await ensureLocalBinaries({ log: devstackLog });
  const root = await mkdtemp(join(tmpdir(), 'countersign-test-'));
  // mkdtemp creates 0700 dirs; the postgres user (when we are root) must traverse it.
  await chmod(root, 0o755);
  const removeRoot = () => rm(root, { recursive: true, force: true });
  const results = await Promise.allSettled([
    startPostgres({ dataDir: join(root, 'pg', 'data'), log: devstackLog, fsyncOff: true }),
    startRedis({ dir: join(root, 'redis'), log: devstackLog, persistence: 'none' }),
  ]);
  const [pg, redis] = results;
  if (pg.status === 'rejected' || redis.status === 'rejected') {
    await Promise.allSettled(results.map((r) => (r.status === 'fulfilled' ? r.value.stop() : undefined)));
    await removeRoot();
    const reason = pg.status === 'rejected' ? pg.reason : redis.status === 'rejected' ? redis.reason : undefined;
    throw reason instanceof Error ? reason : new Error(String(reason));
  }
  log(`test infra: local postgres ${pg.value.url}, redis ${redis.value.url} in ${root}`);
  let stopping: Promise<void> | undefined;
  return {
    databaseUrl: pg.value.url,
    redisUrl: redis.value.url,
    source: 'local',
    stop() {
      stopping ??= Promise.allSettled([pg.value.stop(), redis.value.stop()]).then(async (settled) => {
        await removeRoot();
        const failed = settled.find((s) => s.status === 'rejected');
        if (failed) throw failed.reason;
      });
      return stopping;
    },
  };
}
