import { readFileSync } from 'node:fs';
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
  /**
   * Key id (32 hex digits) of the signing key being replaced on purpose; null: a key other than the one that
   * signed the newest checkpoints stops start-up (docs/operator-guide.md, "Rotate the audit signing key").
   */
  auditSigningKeyRotateFrom: string | null;
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
  /** Oldest `iat` a signed `renewal-requests` message may carry (api); below COUNTERSIGN_IDEMPOTENCY_TTL. */
  intakeMaxAgeMs: number;
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
  /** The installation's BullMQ dashboard on the api (/admin/queues); null (the default): not mounted at all. */
  queueDashboard: QueueDashboardConfig | null;
}

/**
 * The queues are shared by every org, so the board opens only with a credential of the installation's
 * operator, never an org's API key. The environment holds the token's SHA-256 (no secret), or the path
 * of a file holding the token itself (a mounted secret), which the api reads and hashes at start.
 */
export interface QueueDashboardConfig {
  token: { sha256: string } | { file: string };
  /** Pause, retry, add, clean and the like from the board; false: read-only, refused by the server. */
  writes: boolean;
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
  return checkedUrl(P + name, str(env, name, fallback), protocols);
}

// Errors never quote the value: it may hold a password.
function checkedUrl(variable: string, v: string, protocols: string[]): string {
  // The URL parser would trim it, but the raw value is what reaches the drivers.
  if (/\s/.test(v)) throw new ConfigError(variable, 'contains whitespace or a line break');
  let parsed: URL;
  try {
    parsed = new URL(v);
  } catch {
    throw new ConfigError(variable, 'is not a valid URL');
  }
  if (!protocols.includes(parsed.protocol)) {
    throw new ConfigError(variable, `must use one of ${protocols.join(', ')} (got ${parsed.protocol})`);
  }
  return v;
}

/**
 * A secret from COUNTERSIGN_<name>, or from the file named by
 * COUNTERSIGN_<name>_FILE, so that it stays out of the environment (`docker
 * inspect`, /proc/<pid>/environ, crash reports): docker-compose.yml and the
 * Kubernetes manifests mount such files. One trailing newline is dropped.
 * `variable` is the one to name in errors; null when neither is set.
 */
export function secretFromEnv(env: Env, name: string): { value: string; variable: string } | null {
  const variable = P + name;
  const fileVariable = `${variable}_FILE`;
  const direct = env[variable];
  const file = env[fileVariable];
  if (file === undefined || file === '')
    return direct === undefined || direct === '' ? null : { value: direct, variable };
  if (direct !== undefined && direct !== '') {
    throw new ConfigError(fileVariable, `and ${variable} are both set; set only one`);
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(fileVariable, `names ${file}, which cannot be read (${(err as NodeJS.ErrnoException).code})`);
  }
  const value = text.replace(/\r?\n$/, '');
  if (value === '') throw new ConfigError(fileVariable, `names ${file}, which is empty`);
  return { value, variable: fileVariable };
}

/** A URL that may carry a password: COUNTERSIGN_<name> or COUNTERSIGN_<name>_FILE. */
function secretUrl(env: Env, name: string, protocols: string[]): string | null {
  const s = secretFromEnv(env, name);
  return s === null ? null : checkedUrl(s.variable, s.value, protocols);
}

function requiredSecret(name: string): never {
  throw new ConfigError(P + name, `is required (or ${P}${name}_FILE naming a file that holds it)`);
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

/** An audit signing key id as start-up and the checkpoints print it: 32 lower-case hex digits. */
function keyId(env: Env, name: string): string | null {
  const v = optional(env, name);
  if (v !== null && !/^[0-9a-f]{32}$/.test(v)) {
    throw new ConfigError(P + name, `must be a key id of 32 lower-case hex digits (got "${v}")`);
  }
  return v;
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

/** SHA-256 of the empty string: a hash of no token at all. */
const SHA256_OF_NOTHING = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

function queueDashboardConfig(env: Env): QueueDashboardConfig | null {
  const sha256 = optional(env, 'QUEUE_DASHBOARD_TOKEN_SHA256');
  const file = optional(env, 'QUEUE_DASHBOARD_TOKEN_FILE');
  const writes = bool(env, 'QUEUE_DASHBOARD_WRITES', false);
  if (sha256 !== null && file !== null) {
    throw new ConfigError(
      `${P}QUEUE_DASHBOARD_TOKEN_FILE`,
      `cannot be set together with ${P}QUEUE_DASHBOARD_TOKEN_SHA256: give the operator token one way`,
    );
  }
  if (sha256 === null && file === null) {
    if (writes) {
      throw new ConfigError(
        `${P}QUEUE_DASHBOARD_WRITES`,
        `has no dashboard to apply to: set ${P}QUEUE_DASHBOARD_TOKEN_SHA256 or ${P}QUEUE_DASHBOARD_TOKEN_FILE (the operator token) to serve it`,
      );
    }
    return null;
  }
  if (file !== null) return { token: { file }, writes };
  const hex = String(sha256).toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex)) {
    throw new ConfigError(
      `${P}QUEUE_DASHBOARD_TOKEN_SHA256`,
      'must be the SHA-256 of the operator token as 64 hex digits (`countersign dashboard token` prints it)',
    );
  }
  if (hex === SHA256_OF_NOTHING) {
    throw new ConfigError(`${P}QUEUE_DASHBOARD_TOKEN_SHA256`, 'is the SHA-256 of an empty token');
  }
  return { token: { sha256: hex }, writes };
}

/**
 * How old a signed intake message may be. A message is refused as replayed by
 * its idempotency record, which the reaper forgets after
 * COUNTERSIGN_IDEMPOTENCY_TTL: the window (plus the 60 s of clock skew allowed
 * for an `iat` in the future) must end before the record does, or an old copy
 * could be filed again.
 */
function intakeMaxAge(env: Env): number {
  const ms = duration(env, 'INTAKE_MAX_AGE', '15m');
  const ttl = duration(env, 'IDEMPOTENCY_TTL', '24h');
  if (ms + 60_000 >= ttl) {
    throw new ConfigError(
      `${P}INTAKE_MAX_AGE`,
      `must be more than 60s shorter than ${P}IDEMPOTENCY_TTL (${env[`${P}IDEMPOTENCY_TTL`] ?? '24h'}): a message older than the replay records could be filed twice`,
    );
  }
  return ms;
}

export function loadConfig(service: ServiceName, env: Env = process.env): Config {
  const databasePoolSize = int(env, 'DATABASE_POOL_SIZE', 10, 1, 200);
  return {
    databaseUrl: secretUrl(env, 'DATABASE_URL', ['postgres:', 'postgresql:']) ?? requiredSecret('DATABASE_URL'),
    migrationDatabaseUrl: secretUrl(env, 'MIGRATION_DATABASE_URL', ['postgres:', 'postgresql:']),
    databasePoolSize,
    databaseIdleTimeoutMs: duration(env, 'DATABASE_IDLE_TIMEOUT', '10m'),
    databaseStatementCache: int(env, 'DATABASE_STATEMENT_CACHE', 200, 0, 5000),
    redisUrl: secretUrl(env, 'REDIS_URL', ['redis:', 'rediss:']) ?? 'redis://127.0.0.1:6379',
    queuePrefix: str(env, 'QUEUE_PREFIX', '{countersign}'),
    smtpUrl: secretUrl(env, 'SMTP_URL', ['smtp:', 'smtps:']),
    mailFrom: str(env, 'MAIL_FROM', 'Countersign <countersign@localhost>'),
    publicUrl: url(env, 'PUBLIC_URL', ['http:', 'https:'], 'http://localhost:8080'),
    approvalTimeoutMs: duration(env, 'APPROVAL_TIMEOUT', '168h'),
    escalationAfterMs: duration(env, 'ESCALATION_AFTER', '24h'),
    approvalBypass: bool(env, 'APPROVAL_BYPASS', false),
    auditVerifyOnStart: oneOf(env, 'AUDIT_VERIFY_ON_START', ['full', 'tail', 'off'] as const, 'full'),
    auditSigningKeyFile: str(env, 'AUDIT_SIGNING_KEY_FILE', '.data/audit/checkpoint-signing-key.pem'),
    auditSigningKeyCreate: bool(env, 'AUDIT_SIGNING_KEY_CREATE', true),
    auditSigningKeyRotateFrom: keyId(env, 'AUDIT_SIGNING_KEY_ROTATE_FROM'),
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
    intakeMaxAgeMs: intakeMaxAge(env),
    gaugeRefreshMs: duration(env, 'REAPER_GAUGE_INTERVAL', '15s'),
    reaperBatchSize: int(env, 'REAPER_BATCH_SIZE', 100, 1, 10_000),
    reaperExpiryConcurrency: expiryConcurrency(env, databasePoolSize),
    smtpTimeoutMs: duration(env, 'SMTP_TIMEOUT', '30s'),
    httpBodyLimitBytes: int(env, 'HTTP_BODY_LIMIT', 256 * 1024, 1024, 64 * 1024 * 1024),
    rateLimitSubmitPerMinute: int(env, 'RATE_LIMIT_SUBMIT', 600, 0, 1_000_000),
    rateLimitDecidePerMinute: int(env, 'RATE_LIMIT_DECIDE', 600, 0, 1_000_000),
    maxOpenRequests: int(env, 'MAX_OPEN_REQUESTS', 1000, 0, 1_000_000),
    tls: tlsConfig(env),
    queueDashboard: queueDashboardConfig(env),
  };
}
