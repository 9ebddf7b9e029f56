import { resolve, sep } from 'node:path';
import { APP_ROLE } from '@countersign/db';
import type { ServiceName } from './service-process.ts';

/**
 * Each service process gets only the secrets it uses, as in docker-compose.yml
 * and infra/k8s: a process that is taken over can then leak only its own.
 * Deny-listed rather than allow-listed so that ordinary settings (and new
 * ones) still reach every service; what is listed here is a credential or
 * the path of one.
 */
export const SECRETS_ONLY_FOR: Readonly<Record<string, readonly ServiceName[]>> = {
  COUNTERSIGN_CA_DIR: ['issuer'],
  COUNTERSIGN_CA_CERT_FILE: ['issuer'],
  COUNTERSIGN_CA_KEY_FILE: ['issuer'],
  COUNTERSIGN_CA_CHAIN_FILE: ['issuer'],
  COUNTERSIGN_AUDIT_SIGNING_KEY_FILE: ['api', 'reaper'],
  COUNTERSIGN_AUDIT_SIGNING_KEY_CREATE: ['api', 'reaper'],
  COUNTERSIGN_SMTP_URL: ['notifier'],
  COUNTERSIGN_SMTP_URL_FILE: ['notifier'],
  COUNTERSIGN_TLS_CERT_FILE: ['api'],
  COUNTERSIGN_TLS_KEY_FILE: ['api'],
  COUNTERSIGN_TLS_CLIENT_CA_FILE: ['api'],
  COUNTERSIGN_QUEUE_DASHBOARD_TOKEN_FILE: ['api'],
};

/** The owner's and the superuser's credentials: for migrations and provisioning, before any service starts. */
export const NEVER_FOR_SERVICES: readonly string[] = [
  'COUNTERSIGN_MIGRATION_DATABASE_URL',
  'COUNTERSIGN_MIGRATION_DATABASE_URL_FILE',
  'COUNTERSIGN_SUPERUSER_DATABASE_URL',
  'COUNTERSIGN_SUPERUSER_DATABASE_URL_FILE',
  'COUNTERSIGN_OWNER_PASSWORD',
  'COUNTERSIGN_OWNER_PASSWORD_FILE',
  'COUNTERSIGN_APP_PASSWORD',
  'COUNTERSIGN_APP_PASSWORD_FILE',
];

export interface ServiceEnvGuard {
  /** The offline CA directory (root key): no service may be given any path inside it. */
  readonly caOfflineDir: string;
}

/**
 * The environment for one service: the stack's, less the secrets of other
 * services and of the owner and superuser. Refuses (throws) when what is left
 * still names a PostgreSQL role other than the application role, or a path in
 * the offline CA directory, whatever the caller passed in `StackOptions.env`.
 */
export function serviceEnv(name: ServiceName, env: NodeJS.ProcessEnv, guard: ServiceEnvGuard): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(env)) {
    if (value === undefined || NEVER_FOR_SERVICES.includes(key)) continue;
    const only = SECRETS_ONLY_FOR[key];
    if (only && !only.includes(name)) continue;
    out[key] = value;
  }
  const offline = resolve(guard.caOfflineDir);
  for (const [key, value] of Object.entries(out)) {
    if (value === undefined) continue;
    const role = postgresRole(value);
    if (role !== null && role !== APP_ROLE) {
      throw new Error(
        `${name} would be given ${key} with the PostgreSQL role "${role}"; services connect as ${APP_ROLE} only`,
      );
    }
    const path = value.startsWith('/') || value.startsWith('.') ? resolve(value) : null;
    if (path !== null && (path === offline || path.startsWith(`${offline}${sep}`))) {
      throw new Error(
        `${name} would be given ${key} inside the offline CA directory ${offline}, which holds the root key`,
      );
    }
  }
  return out;
}

function postgresRole(value: string): string | null {
  if (!/^postgres(ql)?:\/\//.test(value)) return null;
  try {
    // No user in the URL means the OS user's role: as privileged as whoever runs the stack.
    return decodeURIComponent(new URL(value).username) || '(the OS user)';
  } catch {
    return '(unparseable URL)';
  }
}
