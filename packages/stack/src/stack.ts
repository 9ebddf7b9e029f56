import { chmod, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { ensureDevCa } from '@countersign/ca';
import { createDatabase, migrateToLatest, provisionDatabase } from '@countersign/db';
import {
  ensureLocalBinaries,
  type PostgresServer,
  type RedisServer,
  type SmtpSink,
  startPostgres,
  startRedis,
  startSmtpSink,
} from '@countersign/devstack';
import { loadOrCreateDashboardToken } from './dashboard-token.ts';
import { type DemoOrg, seedDemo } from './demo-seed.ts';
import { portAllocator } from './port-allocator.ts';
import { serviceEnv } from './service-env.ts';
import {
  BACKGROUND_SERVICES,
  parseNice,
  SERVICE_NAMES,
  type ServiceName,
  type ServiceProcess,
  serviceProcess,
  waitForHttp,
} from './service-process.ts';

/**
 * The whole stack on one machine: PostgreSQL, Redis (noeviction, AOF) and an
 * SMTP sink on loopback, the database provisioned with its two roles and
 * migrated, optionally the demo org, and the five services as processes.
 * Used by the README's start command, the end-to-end tests, the benchmark and
 * the chaos harness.
 */
export interface StackOptions {
  readonly dataDir: string;
  /** Use this PostgreSQL (a superuser URL) instead of starting one. */
  readonly superuserUrl?: string | undefined;
  /** Use this Redis instead of starting one. */
  readonly redisUrl?: string | undefined;
  readonly database?: string | undefined;
  /**
   * 'sink' starts the local SMTP sink (mail kept as .eml files); 'discard' a
   * sink that accepts and drops mail (benchmarks); a URL uses that server;
   * null records mail as skipped.
   */
  readonly smtp?: 'sink' | 'discard' | string | null | undefined;
  readonly replicas?: Partial<Record<ServiceName, number>> | undefined;
  readonly apiPort?: number | undefined;
  readonly env?: NodeJS.ProcessEnv | undefined;
  readonly seedDemo?: boolean | undefined;
  /** The demo org with a second, independent admin (erin): two-person ready, as `scripts/up.sh` shows it. */
  readonly demoSecondAdmin?: boolean | undefined;
  readonly echo?: boolean | undefined;
  readonly log?: ((line: string) => void) | undefined;
  readonly queuePrefix?: string | undefined;
  readonly redisPersistence?: 'aof' | 'none' | undefined;
  readonly fsyncOff?: boolean | undefined;
  /** Role passwords; the defaults suit a loopback dev cluster only. */
  readonly ownerPassword?: string | undefined;
  readonly appPassword?: string | undefined;
  /** Run the services from their bundles (scripts/build-services.ts), as the container image does. */
  readonly bundled?: boolean | undefined;
  /**
   * Niceness added to the background services (BACKGROUND_SERVICES: the notifier); default
   * COUNTERSIGN_BACKGROUND_NICE or BACKGROUND_NICE. 0 gives them the same CPU priority as the others.
   */
  readonly backgroundNice?: number | undefined;
}

export interface Stack {
  readonly apiUrl: string;
  readonly superuserUrl: string;
  readonly appDatabaseUrl: string;
  readonly ownerDatabaseUrl: string;
  readonly redisUrl: string;
  readonly smtpUrl: string | null;
  readonly sink: SmtpSink | null;
  readonly redis: RedisServer | null;
  readonly postgres: PostgresServer | null;
  readonly services: ServiceProcess[];
  readonly demo: DemoOrg | null;
  readonly demoKeysFile: string;
  /**
   * The queue dashboard and its operator token (kept in `<dataDir>/queue-dashboard-token`, 0600; the api
   * gets only its SHA-256). Null when `env` configures the dashboard itself (an empty
   * COUNTERSIGN_QUEUE_DASHBOARD_TOKEN_SHA256 leaves it unmounted).
   */
  readonly queueDashboard: { readonly url: string; readonly token: string; readonly tokenFile: string } | null;
  /** The offline CA step's directory (root key): given to no service; the issuer gets `<dataDir>/ca`. */
  readonly caOfflineDir: string;
  /** The environment the services get (without per-replica ports), before serviceEnv() takes out other services' secrets. */
  readonly env: NodeJS.ProcessEnv;
  metricsUrl(p: ServiceProcess): string;
  /** Starts one more replica of a service. */
  addService(name: ServiceName): Promise<ServiceProcess>;
  stop(): Promise<void>;
}

const DEV_OWNER_PASSWORD = 'countersign-owner-dev';
const DEV_APP_PASSWORD = 'countersign-app-dev';

export async function startStack(opts: StackOptions): Promise<Stack> {
  const log = opts.log ?? (() => {});
  const dataDir = opts.dataDir;
  await mkdir(join(dataDir, 'logs'), { recursive: true });
  let postgres: PostgresServer | null = null;
  let redis: RedisServer | null = null;
  let sink: SmtpSink | null = null;

  if (!opts.superuserUrl || !opts.redisUrl) await ensureLocalBinaries({ log: (m: string) => log(m) });
  if (!opts.superuserUrl) {
    // PostgreSQL runs as its own user when we are root: it must be able to reach the data directory.
    await chmod(dataDir, 0o755);
    postgres = await startPostgres({
      dataDir: join(dataDir, 'pg', 'data'),
      log: (m: string) => log(m),
      fsyncOff: opts.fsyncOff,
    });
  }
  if (!opts.redisUrl) {
    redis = await startRedis({
      dir: join(dataDir, 'redis'),
      log: (m: string) => log(m),
      persistence: opts.redisPersistence ?? 'aof',
    });
  }
  const superuserUrl = opts.superuserUrl ?? postgres?.url ?? '';
  const redisUrl = opts.redisUrl ?? redis?.url ?? '';
  let smtpUrl: string | null = null;
  if (opts.smtp === 'sink' || opts.smtp === 'discard') {
    sink = await startSmtpSink({ dir: join(dataDir, 'mail'), log: (m: string) => log(m), keep: opts.smtp === 'sink' });
    smtpUrl = sink.url;
  } else if (typeof opts.smtp === 'string') {
    smtpUrl = opts.smtp;
  }

  const urls = await provisionDatabase({
    superuserUrl,
    database: opts.database ?? 'countersign',
    ownerPassword: opts.ownerPassword ?? DEV_OWNER_PASSWORD,
    appPassword: opts.appPassword ?? DEV_APP_PASSWORD,
  });
  const applied = await migrateToLatest(urls.ownerUrl);
  if (applied.length) log(`migrations applied: ${applied.join(', ')}`);

  const demoKeysFile = join(dataDir, 'demo-keys.json');
  let demo: DemoOrg | null = null;
  if (opts.seedDemo) {
    const handle = createDatabase({ url: urls.appUrl, poolSize: 2 });
    try {
      demo = await seedDemo(handle.db, demoKeysFile, { secondAdmin: opts.demoSecondAdmin === true });
    } finally {
      await handle.close();
    }
  }

  // The offline step, run here for convenience into a directory no service is given.
  const caOfflineDir = join(dataDir, 'ca-offline');
  await ensureDevCa({ offlineDir: caOfflineDir, issuerDir: join(dataDir, 'ca') });

  // The queue dashboard is the installation's: its operator token is made once and kept with the data.
  const dashboardTokenFile = join(dataDir, 'queue-dashboard-token');
  const dashboardToken =
    opts.env?.COUNTERSIGN_QUEUE_DASHBOARD_TOKEN_SHA256 === undefined &&
    opts.env?.COUNTERSIGN_QUEUE_DASHBOARD_TOKEN_FILE === undefined
      ? await loadOrCreateDashboardToken(dashboardTokenFile)
      : null;

  const ports = portAllocator();
  if (opts.apiPort) ports.reserve(opts.apiPort);
  const apiPort = opts.apiPort ?? (await ports.next());
  const apiUrl = `http://127.0.0.1:${apiPort}`;
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    NODE_ENV: process.env.NODE_ENV ?? 'development',
    COUNTERSIGN_DATABASE_URL: urls.appUrl,
    COUNTERSIGN_REDIS_URL: redisUrl,
    COUNTERSIGN_PUBLIC_URL: apiUrl,
    COUNTERSIGN_CA_DIR: join(dataDir, 'ca'),
    COUNTERSIGN_AUDIT_SIGNING_KEY_FILE: join(dataDir, 'audit-signing.key'),
    COUNTERSIGN_HTTP_HOST: '127.0.0.1',
    COUNTERSIGN_HTTP_PORT: String(apiPort),
    COUNTERSIGN_METRICS_HOST: '127.0.0.1',
    COUNTERSIGN_LOG_LEVEL: 'info',
    ...(smtpUrl ? { COUNTERSIGN_SMTP_URL: smtpUrl } : {}),
    ...(opts.queuePrefix ? { COUNTERSIGN_QUEUE_PREFIX: opts.queuePrefix } : {}),
    ...(dashboardToken ? { COUNTERSIGN_QUEUE_DASHBOARD_TOKEN_SHA256: dashboardToken.sha256 } : {}),
    ...opts.env,
  };

  const backgroundNice = opts.backgroundNice ?? parseNice(process.env.COUNTERSIGN_BACKGROUND_NICE);
  const services: ServiceProcess[] = [];
  const metricsPorts = new Map<ServiceProcess, number>();
  const counters = new Map<ServiceName, number>();
  const launch = async (name: ServiceName): Promise<ServiceProcess> => {
    const n = (counters.get(name) ?? 0) + 1;
    counters.set(name, n);
    const id = n === 1 ? name : `${name}-${n}`;
    const metricsPort = await ports.next();
    const p = serviceProcess(name, {
      id,
      env: serviceEnv(name, { ...env, COUNTERSIGN_METRICS_PORT: String(metricsPort) }, { caOfflineDir }),
      logFile: join(dataDir, 'logs', `${id}.log`),
      echo: opts.echo,
      bundled: opts.bundled,
      nice: BACKGROUND_SERVICES.includes(name) ? backgroundNice : 0,
    });
    metricsPorts.set(p, metricsPort);
    services.push(p);
    return p;
  };
  const metricsUrl = (p: ServiceProcess) => `http://127.0.0.1:${metricsPorts.get(p)}`;
  const stopAll = async () => {
    // Workers first, api last, so nothing is left half-way; each stops gracefully on SIGTERM.
    await Promise.all(services.map((s) => s.stop()));
    await sink?.stop();
    await redis?.stop();
    await postgres?.stop();
  };

  try {
    for (const name of SERVICE_NAMES) {
      const count = opts.replicas?.[name] ?? 1;
      for (let i = 0; i < count; i++) await launch(name);
    }
    await Promise.all(services.map((s) => waitForHttp(`${metricsUrl(s)}/readyz`, 60_000, s)));
    await waitForHttp(
      `${apiUrl}/readyz`,
      60_000,
      services.find((s) => s.name === 'api'),
    );
    // A probe answered by the wrong process (a port taken by another) would pass: every service must
    // still be running once all have answered.
    const gone = services.filter((s) => !s.running());
    if (gone.length > 0) {
      throw new Error(
        `${gone.map((s) => s.id).join(', ')} exited during start-up (see ${gone[0]?.logFile ?? 'its output'})`,
      );
    }
  } catch (err) {
    await stopAll();
    throw err;
  }

  return {
    apiUrl,
    superuserUrl,
    appDatabaseUrl: urls.appUrl,
    ownerDatabaseUrl: urls.ownerUrl,
    redisUrl,
    smtpUrl,
    sink,
    redis,
    postgres,
    services,
    demo,
    demoKeysFile,
    queueDashboard: dashboardToken
      ? { url: `${apiUrl}/admin/queues`, token: dashboardToken.token, tokenFile: dashboardTokenFile }
      : null,
    caOfflineDir,
    env,
    metricsUrl,
    addService: async (name) => {
      const p = await launch(name);
      await waitForHttp(`${metricsUrl(p)}/readyz`, 60_000, p);
      return p;
    },
    stop: stopAll,
  };
}
