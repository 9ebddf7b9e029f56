import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { access, readdir, readFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import { type DevstackLog, type NormalizedLog, normalizeLog } from './log.ts';

const execFileAsync = promisify(execFile);

/** BullMQ's scripts rely on Redis 6.2+ commands; Countersign's schema needs Postgres 15+. */
const MIN_PG_MAJOR = 15;
const MIN_REDIS = [6, 2] as const;
const PG_ROOT = '/usr/lib/postgresql';

export interface PostgresBinaries {
  major: number;
  binDir: string;
  postgres: string;
  initdb: string;
  pgCtl: string;
  pgIsready: string;
  psql: string;
}

export interface RedisBinaries {
  version: string;
  server: string;
  /** redis-cli ships with redis-tools on Debian; the devstack itself never needs it. */
  cli: string | null;
}

export interface LocalBinaries {
  postgres: PostgresBinaries;
  redis: RedisBinaries;
}

async function isExecutable(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Highest installed PostgreSQL >= 15 under /usr/lib/postgresql/<major>/bin (Debian layout). */
export async function findPostgresBinaries(): Promise<PostgresBinaries | null> {
  let entries: string[];
  try {
    entries = await readdir(PG_ROOT);
  } catch {
    return null;
  }
  const majors = entries
    .filter((e) => /^\d+$/.test(e))
    .map(Number)
    .filter((m) => m >= MIN_PG_MAJOR)
    .sort((a, b) => b - a);
  for (const major of majors) {
    const binDir = join(PG_ROOT, String(major), 'bin');
    const bins: PostgresBinaries = {
      major,
      binDir,
      postgres: join(binDir, 'postgres'),
      initdb: join(binDir, 'initdb'),
      pgCtl: join(binDir, 'pg_ctl'),
      pgIsready: join(binDir, 'pg_isready'),
      psql: join(binDir, 'psql'),
    };
    const checks = await Promise.all([bins.postgres, bins.initdb, bins.pgIsready].map(isExecutable));
    if (checks.every(Boolean)) return bins;
  }
  return null;
}

async function which(name: string): Promise<string | null> {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/bin', '/usr/local/bin', '/usr/sbin'];
  for (const dir of dirs) {
    if (dir === '') continue;
    const candidate = join(dir, name);
    if (await isExecutable(candidate)) return candidate;
  }
  return null;
}

export async function findRedisBinaries(): Promise<RedisBinaries | null> {
  const server = await which('redis-server');
  if (server === null) return null;
  const { stdout } = await execFileAsync(server, ['--version']);
  const version = /v=(\d+\.\d+\.\d+)/.exec(stdout)?.[1] ?? 'unknown';
  return { version, server, cli: await which('redis-cli') };
}

const isRoot = (): boolean => process.getuid?.() === 0;

let aptUpdated = false;

async function aptInstall(pkg: string, log: NormalizedLog): Promise<void> {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const run = async (args: string[]) => {
    try {
      await execFileAsync('apt-get', args, { env, maxBuffer: 64 * 1024 * 1024 });
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`apt-get ${args.join(' ')} failed: ${e.stderr?.trim() || e.message}`);
    }
  };
  if (!aptUpdated) {
    log.info('devstack: apt-get update');
    await run(['update']);
    aptUpdated = true;
  }
  log.info(`devstack: apt-get install -y ${pkg} (this can take a minute)`);
  await run(['install', '-y', '--no-install-recommends', pkg]);
}

function compareVersion(version: string, min: readonly [number, number]): boolean {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major > min[0] || (major === min[0] && minor >= min[1]);
}

/**
 * Makes sure PostgreSQL 15+ and redis-server are installed. When running as root on a
 * Debian-like machine, missing packages are installed with apt-get; otherwise it fails
 * with the command to run. Safe to call repeatedly: it only inspects the file system
 * once everything is present.
 */
export async function ensureLocalBinaries(options: { log?: DevstackLog } = {}): Promise<LocalBinaries> {
  const log = normalizeLog(options.log);

  let postgres = await findPostgresBinaries();
  if (postgres === null) {
    if (!isRoot()) {
      throw new Error(
        `PostgreSQL ${MIN_PG_MAJOR}+ server binaries not found under ${PG_ROOT}/<major>/bin. ` +
          'Install them with: sudo apt-get install -y postgresql',
      );
    }
    // Debian's postgresql package also creates and starts a "main" cluster on 5432; the
    // devstack ignores it and runs its own clusters on other ports.
    await aptInstall('postgresql', log);
    postgres = await findPostgresBinaries();
    if (postgres === null) {
      throw new Error(
        `apt-get installed postgresql but no PostgreSQL ${MIN_PG_MAJOR}+ binaries appeared under ${PG_ROOT}; ` +
          'this distribution ships an older major version (use the PGDG apt repository).',
      );
    }
  }

  let redis = await findRedisBinaries();
  if (redis === null) {
    if (!isRoot()) {
      throw new Error('redis-server not found on PATH. Install it with: sudo apt-get install -y redis-server');
    }
    await aptInstall('redis-server', log);
    redis = await findRedisBinaries();
    if (redis === null) throw new Error('apt-get installed redis-server but it is still not on PATH');
  }
  if (!compareVersion(redis.version, MIN_REDIS)) {
    log.warn(`devstack: redis-server ${redis.version} is older than ${MIN_REDIS.join('.')}; BullMQ may misbehave`);
  }

  return { postgres, redis };
}

/**
 * The uid/gid to run Postgres under. Postgres refuses to run as root, so when we are root
 * it runs as the `postgres` system user (created by the Debian package); otherwise it runs
 * as the current user and null is returned.
 */
export async function postgresRunAs(): Promise<{ uid: number; gid: number } | null> {
  if (!isRoot()) return null;
  const passwd = await readFile('/etc/passwd', 'utf8');
  for (const line of passwd.split('\n')) {
    const [name, , uid, gid] = line.split(':');
    if (name === 'postgres' && uid !== undefined && gid !== undefined) {
      return { uid: Number(uid), gid: Number(gid) };
    }
  }
  throw new Error(
    'Running as root but there is no "postgres" system user to run PostgreSQL as ' +
      '(it is created by `apt-get install -y postgresql`).',
  );
}
