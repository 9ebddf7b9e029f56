import { parseDuration } from '@countersign/domain';

/**
 * The one configuration loader (SPEC §6). Every variable is read here, checked,
 * and given its default; a bad value stops the process naming the variable.
 * Only a service's main.ts calls this.
 */
export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`invalid configuration: ${variable} ${message}`);
    this.name = 'ConfigError';
  }
}

export type AuditVerifyMode = 'full' | 'tail' | 'off';
export type ServiceName = 'api' | 'approval' | 'issuer' | 'notifier' | 'reaper';

export const DEFAULT_METRICS_PORTS: Record<ServiceName, number> = {
  api: 9464,
  approval: 9465,
  issuer: 9466,
  notifier: 9467,
  reaper: 9468,
};

export interface Config {
  databaseUrl: string;
  /** Owner role used only by migrations; services never connect with it. */
  migrationDatabaseUrl: string | null;
  databasePoolSize: number;
  /** How long a pooled connection may sit idle before it is closed. */
  databaseIdleTimeoutMs: number;
  /** Distinct SQL texts sent as named (prepared) statements per process; 0: none. */
  databaseStatementCache: number;
  redisUrl: string;
  queuePrefix: string;
  smtpUrl: string | null;
  mailFrom: string;
  publicUrl: string;
  approvalTimeoutMs: number;
  escalationAfterMs: number;
  approvalBypass: boolean;
  auditVerifyOnStart: AuditVerifyMode;
  /** Ed25519 key (PKCS#8 PEM) that signs audit checkpoints; kept outside the database. */
  auditSigningKeyFile: string;
  /** Generate the signing key when the file is missing (dev); set false in production so a lost key stops start-up. */
  auditSigningKeyCreate: boolean;
  /** How often the reaper signs a checkpoint of every org's chain. */
  auditCheckpointIntervalMs: number;
  caDir: string;
  caCertFile: string | null;
  caKeyFile: string | null;
  caChainFile: string | null;
  httpHost: string;
  httpPort: number;
  metricsHost: string;
  metricsPort: number;
  logLevel: string;
  issuerConcurrency: number;
  notifierConcurrency: number;
  reconcileGraceMs: number;
  outboxPollMs: number;
  shutdownTimeoutMs: number;
  /** Reaper schedules (BullMQ job schedulers); every one accepts durations down to seconds. */
  reaperExpireIntervalMs: number;
  reaperReconcileIntervalMs: number;
  renewalScanIntervalMs: number;
  auditVerifyIntervalMs: number;
  idempotencyPruneIntervalMs: number;
  /** How long a stored Idempotency-Key answer is replayed before the reaper forgets it. */
  idempotencyTtlMs: number;
  /** How often each reaper refreshes the gauges it exports (pending approvals, queue depths). */
  gaugeRefreshMs: number;
  /** Rows one reaper task handles per transaction. */
  reaperBatchSize: number;
  /** Expiry transactions one reaper keeps going at once while it clears a backlog. */
  reaperExpiryConcurrency: number;
  /** SMTP connection, greeting and socket timeout; a claimed delivery is held for a multiple of it. */
  smtpTimeoutMs: number;
  /** Largest accepted request body (api); larger bodies get 413 payload_too_large. */
  httpBodyLimitBytes: number;
  /** Per principal and minute, counted in Redis across api replicas; 0 turns the limit off. */
  rateLimitSubmitPerMinute: number;
  rateLimitDecidePerMinute: number;
  /** Open jobs (awaiting approval, pending, running) one principal may have; 0 turns the bound off. */
  maxOpenRequests: number;
  /** mTLS listener of the api (client certificates required); null when not configured. */
  tls: TlsConfig | null;
}

export interface TlsConfig {
  certFile: string;
  keyFile: string;
  /** CA bundle that client certificates must chain to. */
  clientCaFile: string;
  host: string;
  port: number;
}

type Env = Record<string, string | undefined>;

const P = 'COUNTERSIGN_';

function str(env: Env, name: string, fallback?: string): string {
  const v = env[P + name];
  if (v === undefined || v === '') {
    if (fallback === undefined) throw new ConfigError(P + name, 'is required');
    return fallback;
  }
  return v;
}

function optional(env: Env, name: string): string | null {
  const v = env[P + name];
  return v === undefined || v === '' ? null : v;
}

function url(env: Env, name: string, protocols: string[], fallback?: string): string {
  const v = str(env, name, fallback);
  let parsed: URL;
  try {
    parsed = new URL(v);
  } catch {
    throw new ConfigError(P + name, 'is not a valid URL');
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(P + name, `must use one of ${protocols.join(', ')} (got ${parsed.protocol})`);
  }
  return v;
}

function int(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[P + name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new ConfigError(P + name, `must be an integer between ${min} and ${max} (got "${raw}")`);
  }
  return n;
}

function duration(env: Env, name: string, fallback: string): number {
  const raw = str(env, name, fallback);
  const ms = parseDuration(raw);
  if (ms === null || ms <= 0) {
    throw new ConfigError(P + name, `must be a duration such as 90s, 15m, 24h or 7d (got "${raw}")`);
  }
  return ms;
}

function bool(env: Env, name: string, fallback: boolean): boolean {
  const raw = env[P + name];
  if (raw === undefined || raw === '') return fallback;
  if (['true', '1', 'yes'].includes(raw.toLowerCase())) return true;
  if (['false', '0', 'no'].includes(raw.toLowerCase())) return false;
  throw new ConfigError(P + name, `must be true or false (got "${raw}")`);
}

function oneOf<T extends string>(env: Env, name: string, values: readonly T[], fallback: T): T {
  const raw = str(env, name, fallback);
  if (!values.includes(raw as T)) throw new ConfigError(P + name, `must be one of ${values.join(', ')} (got "${raw}")`);
  return raw as T;
}

/**
 * The api's mTLS listener exists only when certificate and key are both set;
 * it always requires client certificates, so the client CA is then required too.
 */
function tlsConfig(env: Env): TlsConfig | null {
  const certFile = optional(env, 'TLS_CERT_FILE');
  const keyFile = optional(env, 'TLS_KEY_FILE');
  const clientCaFile = optional(env, 'TLS_CLIENT_CA_FILE');
  if (certFile === null && keyFile === null) {
    if (clientCaFile !== null)
      throw new ConfigError(`${P}TLS_CERT_FILE`, `is required when ${P}TLS_CLIENT_CA_FILE is set`);
    return null;
  }
  if (certFile === null) throw new ConfigError(`${P}TLS_CERT_FILE`, `is required when ${P}TLS_KEY_FILE is set`);
  if (keyFile === null) throw new ConfigError(`${P}TLS_KEY_FILE`, `is required when ${P}TLS_CERT_FILE is set`);
  if (clientCaFile === null) {
    throw new ConfigError(`${P}TLS_CLIENT_CA_FILE`, 'is required: the TLS listener only accepts client certificates');
  }
  return {
    certFile,
    keyFile,
    clientCaFile,
    host: str(env, 'TLS_HOST', str(env, 'HTTP_HOST', '0.0.0.0')),
    port: int(env, 'TLS_PORT', 8443, 0, 65535),
  };
}

/**
 * Two expiry transactions at once by default: up to seven (runs stacked by the
 * schedule) put the api's p99 during a reap at 78-124 ms against 44-48 ms with
 * two; with the expiries' mail sent meanwhile one was about as fast as two,
 * without it two cleared the backlog in a quarter less time
 * (docs/performance.md). Each holds one of the reaper's pooled connections, and
 * its other tasks and gauges need one too: at most the pool size less one (so a
 * pool of one runs one).
 */
function expiryConcurrency(env: Env, poolSize: number): number {
  const most = Math.max(1, poolSize - 1);
  const n = int(env, 'REAPER_EXPIRY_CONCURRENCY', Math.min(2, most), 1, 32);
  if (n > most) {
    throw new ConfigError(
      `${P}REAPER_EXPIRY_CONCURRENCY`,
      `must be below ${P}DATABASE_POOL_SIZE (${poolSize}): each expiry transaction holds a connection, and the reaper's other tasks need one (got "${n}")`,
    );
  }
  return n;
}

export function loadConfig(service: ServiceName, env: Env = process.env): Config {
  const databasePoolSize = int(env, 'DATABASE_POOL_SIZE', 10, 1, 200);
  return {
    databaseUrl: url(env, 'DATABASE_URL', ['postgres:', 'postgresql:']),
    migrationDatabaseUrl: optional(env, 'MIGRATION_DATABASE_URL'),
    databasePoolSize,
    databaseIdleTimeoutMs: duration(env, 'DATABASE_IDLE_TIMEOUT', '10m'),
    databaseStatementCache: int(env, 'DATABASE_STATEMENT_CACHE', 200, 0, 5000),
    redisUrl: url(env, 'REDIS_URL', ['redis:', 'rediss:'], 'redis://127.0.0.1:6379'),
    queuePrefix: str(env, 'QUEUE_PREFIX', '{countersign}'),
    smtpUrl: optional(env, 'SMTP_URL') === null ? null : url(env, 'SMTP_URL', ['smtp:', 'smtps:']),
    mailFrom: str(env, 'MAIL_FROM', 'Countersign <countersign@localhost>'),
    publicUrl: url(env, 'PUBLIC_URL', ['http:', 'https:'], 'http://localhost:8080'),
    approvalTimeoutMs: duration(env, 'APPROVAL_TIMEOUT', '168h'),
    escalationAfterMs: duration(env, 'ESCALATION_AFTER', '24h'),
    approvalBypass: bool(env, 'APPROVAL_BYPASS', false),
    auditVerifyOnStart: oneOf(env, 'AUDIT_VERIFY_ON_START', ['full', 'tail', 'off'] as const, 'full'),
    auditSigningKeyFile: str(env, 'AUDIT_SIGNING_KEY_FILE', '.data/audit/checkpoint-signing-key.pem'),
    auditSigningKeyCreate: bool(env, 'AUDIT_SIGNING_KEY_CREATE', true),
    auditCheckpointIntervalMs: duration(env, 'AUDIT_CHECKPOINT_INTERVAL', '1h'),
    caDir: str(env, 'CA_DIR', '.data/ca'),
    caCertFile: optional(env, 'CA_CERT_FILE'),
    caKeyFile: optional(env, 'CA_KEY_FILE'),
    caChainFile: optional(env, 'CA_CHAIN_FILE'),
    httpHost: str(env, 'HTTP_HOST', '0.0.0.0'),
    httpPort: int(env, 'HTTP_PORT', 8080, 0, 65535),
    metricsHost: str(env, 'METRICS_HOST', '0.0.0.0'),
    metricsPort: int(env, 'METRICS_PORT', DEFAULT_METRICS_PORTS[service], 0, 65535),
    logLevel: oneOf(env, 'LOG_LEVEL', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const, 'info'),
    issuerConcurrency: int(env, 'ISSUER_CONCURRENCY', 16, 1, 1000),
    notifierConcurrency: int(env, 'NOTIFIER_CONCURRENCY', 8, 1, 1000),
    reconcileGraceMs: duration(env, 'RECONCILE_GRACE', '60s'),
    outboxPollMs: duration(env, 'OUTBOX_POLL_INTERVAL', '1s'),
    shutdownTimeoutMs: duration(env, 'SHUTDOWN_TIMEOUT', '10s'),
    reaperExpireIntervalMs: duration(env, 'REAPER_EXPIRE_INTERVAL', '30s'),
    reaperReconcileIntervalMs: duration(env, 'REAPER_RECONCILE_INTERVAL', '30s'),
    renewalScanIntervalMs: duration(env, 'RENEWAL_SCAN_INTERVAL', '1h'),
    auditVerifyIntervalMs: duration(env, 'AUDIT_VERIFY_INTERVAL', '1h'),
    idempotencyPruneIntervalMs: duration(env, 'IDEMPOTENCY_PRUNE_INTERVAL', '1h'),
    idempotencyTtlMs: duration(env, 'IDEMPOTENCY_TTL', '24h'),
    gaugeRefreshMs: duration(env, 'REAPER_GAUGE_INTERVAL', '15s'),
    reaperBatchSize: int(env, 'REAPER_BATCH_SIZE', 100, 1, 10_000),
    reaperExpiryConcurrency: expiryConcurrency(env, databasePoolSize),
    smtpTimeoutMs: duration(env, 'SMTP_TIMEOUT', '30s'),
    httpBodyLimitBytes: int(env, 'HTTP_BODY_LIMIT', 256 * 1024, 1024, 64 * 1024 * 1024),
    rateLimitSubmitPerMinute: int(env, 'RATE_LIMIT_SUBMIT', 600, 0, 1_000_000),
    rateLimitDecidePerMinute: int(env, 'RATE_LIMIT_DECIDE', 600, 0, 1_000_000),
    maxOpenRequests: int(env, 'MAX_OPEN_REQUESTS', 1000, 0, 1_000_000),
    tls: tlsConfig(env),
  };
}
