import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { chmod, chown, mkdir, readFile, stat } from 'node:fs/promises';
import { totalmem } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { findPostgresBinaries, type PostgresBinaries, postgresRunAs } from './binaries.ts';
import { freePort } from './free-port.ts';
import { type DevstackLog, type NormalizedLog, normalizeLog } from './log.ts';
import { isAlive, sleep, trackChild, untrackChild, waitForPidExit } from './processes.ts';

const execFileAsync = promisify(execFile);

export interface StartPostgresOptions {
  /** Cluster directory; created and initdb'ed when it holds no cluster yet. */
  dataDir: string;
  /** 0 or undefined picks a free loopback port. Ignored when an already running cluster is reused. */
  port?: number;
  log?: DevstackLog;
  /** Trade durability for speed (tests): fsync, synchronous_commit and full_page_writes off. */
  fsyncOff?: boolean;
  /** Extra `-c name=value` server settings. */
  settings?: Record<string, string | number | boolean>;
  /**
   * Let the server outlive this process (own process group, not killed by the exit
   * handler) so the next start on the same data dir reuses it. For the dev stack only.
   */
  detached?: boolean;
  startTimeoutMs?: number;
}

export interface PostgresServer {
  /** Superuser URL: postgres://postgres@127.0.0.1:PORT/postgres */
  url: string;
  port: number;
  /** Postmaster pid. */
  pid: number;
  dataDir: string;
  socketDir: string;
  logFile: string;
  /** True when an already running postmaster on dataDir was adopted instead of started. */
  reused: boolean;
  /** Fast shutdown (SIGINT: abort sessions, checkpoint) and wait for the postmaster to exit. Idempotent. */
  stop(): Promise<void>;
  /**
   * Stops the server and starts it again on the same data dir and port (clients reconnect to the
   * same URL). `immediate` crashes it (SIGQUIT, crash recovery at the next start) instead of a fast
   * shutdown; `downtimeMs` keeps it down that long. Not for an adopted (reused) server.
   */
  restart(opts?: PostgresRestartOptions): Promise<void>;
}

export interface PostgresRestartOptions {
  mode?: 'fast' | 'immediate';
  downtimeMs?: number;
}

const STOP_TIMEOUT_MS = 30_000;
/** sun_path is 108 bytes on Linux including the terminating NUL. */
const MAX_SOCKET_PATH = 107;

interface RunAs {
  uid: number;
  gid: number;
}

/**
 * Starts (or adopts) a PostgreSQL cluster listening only on 127.0.0.1.
 *
 * Authentication is `trust`: acceptable only because the server listens on loopback and
 * its unix socket lives in a directory next to the data dir; this is a local dev/test
 * stack, never a deployment. When running as root, postgres runs as the `postgres`
 * user (spawned with that uid/gid, the equivalent of `runuser -u postgres`, but keeping
 * the real postmaster pid as our child). The caller must call `stop()`; see processes.ts
 * for the exit-handler safety net.
 */
export async function startPostgres(options: StartPostgresOptions): Promise<PostgresServer> {
  const log = normalizeLog(options.log);
  const bins = await findPostgresBinaries();
  if (bins === null) {
    throw new Error(
      'PostgreSQL 15+ binaries not found; call ensureLocalBinaries() or run: apt-get install -y postgresql',
    );
  }
  const runAs = await postgresRunAs();
  const dataDir = resolve(options.dataDir);
  const parent = dirname(dataDir);
  const socketDir = join(parent, `${basename(dataDir)}.sock`);
  const logFile = join(parent, `${basename(dataDir)}.log`);
  const timeoutMs = options.startTimeoutMs ?? 60_000;
  const paths = { dataDir, socketDir, logFile };

  const running = await readRunningPostmaster(dataDir);
  if (running !== null) {
    if (options.port && options.port !== running.port) {
      log.warn(
        `postgres: ${dataDir} is already running on port ${running.port}; ignoring requested port ${options.port}`,
      );
    }
    log.info(`postgres: reusing running cluster ${dataDir} (pid ${running.pid}, port ${running.port})`);
    await waitUntilReady(
      bins,
      running.port,
      timeoutMs,
      () => (isAlive(running.pid) ? null : 'postmaster exited'),
      logFile,
    );
    return {
      ...paths,
      url: pgUrl(running.port),
      port: running.port,
      pid: running.pid,
      reused: true,
      restart: async () => {
        throw new Error('postgres: cannot restart a cluster this process did not start');
      },
      stop: once(async () => {
        log.info(`postgres: stopping reused postmaster ${running.pid}`);
        signal(running.pid, 'SIGINT');
        if (!(await waitForPidExit(running.pid, STOP_TIMEOUT_MS))) {
          signal(running.pid, 'SIGQUIT');
          await waitForPidExit(running.pid, 5_000);
        }
      }),
    };
  }

  await prepareDirectories(dataDir, socketDir, runAs);
  await ensureCluster(bins, dataDir, socketDir, runAs, options.fsyncOff ?? false, log);

  // An auto-picked port can be taken between freePort() and the bind: retry with another.
  const autoPort = !options.port;
  for (let attempt = 1; ; attempt++) {
    const port = options.port || (await freePort());
    const socketPath = join(socketDir, `.s.PGSQL.${port}`);
    if (socketPath.length > MAX_SOCKET_PATH) {
      throw new Error(
        `postgres: unix socket path ${socketPath} is too long (max ${MAX_SOCKET_PATH}); use a shorter dataDir`,
      );
    }
    const started = Date.now();
    const child = spawnPostmaster(bins, dataDir, socketDir, logFile, port, options, runAs);
    const pid = child.pid;
    if (pid === undefined) throw new Error(`postgres: failed to spawn ${bins.postgres}`);
    const exited = new Promise<void>((res) => child.once('exit', () => res()));
    if (!options.detached) trackChild(pid, 'postgres', 'SIGQUIT');
    try {
      await waitUntilReady(bins, port, timeoutMs, () => exitReason(child), logFile, exited);
    } catch (err) {
      untrackChild(pid);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGQUIT');
        await exited;
      }
      const message = (err as Error).message;
      if (autoPort && attempt < 3 && /could not bind|address already in use|could not create any TCP/i.test(message)) {
        log.warn(`postgres: port ${port} was taken, retrying with another port`);
        continue;
      }
      throw err;
    }
    log.info(`postgres: ${dataDir} ready on port ${port} (pid ${pid}, ${Date.now() - started} ms)`);
    if (options.detached) child.unref();

    let current = { child, pid, exited };
    let stopped = false;
    const stopCurrent = async (sig: NodeJS.Signals) => {
      const c = current;
      if (c.child.exitCode === null && c.child.signalCode === null && isAlive(c.pid)) {
        c.child.kill(sig);
        const timedOut = await Promise.race([c.exited.then(() => false), sleep(STOP_TIMEOUT_MS).then(() => true)]);
        if (timedOut) {
          log.warn(`postgres: shutdown of ${c.pid} timed out, sending SIGQUIT`);
          c.child.kill('SIGQUIT');
          await c.exited;
        }
      }
      untrackChild(c.pid);
    };
    const server: PostgresServer = {
      ...paths,
      url: pgUrl(port),
      port,
      pid,
      reused: false,
      stop: once(async () => {
        stopped = true;
        await stopCurrent('SIGINT');
        log.info(`postgres: stopped ${dataDir}`);
      }),
      restart: async (opts: PostgresRestartOptions = {}) => {
        if (stopped) throw new Error('postgres: cannot restart a stopped server');
        await stopCurrent(opts.mode === 'immediate' ? 'SIGQUIT' : 'SIGINT');
        if (opts.downtimeMs) await sleep(opts.downtimeMs);
        const next = spawnPostmaster(bins, dataDir, socketDir, logFile, port, options, runAs);
        if (next.pid === undefined) throw new Error(`postgres: failed to spawn ${bins.postgres}`);
        const nextExited = new Promise<void>((res) => next.once('exit', () => res()));
        current = { child: next, pid: next.pid, exited: nextExited };
        if (!options.detached) trackChild(next.pid, 'postgres', 'SIGQUIT');
        await waitUntilReady(bins, port, timeoutMs, () => exitReason(next), logFile, nextExited);
        if (options.detached) next.unref();
        server.pid = next.pid;
        log.info(`postgres: ${dataDir} restarted on port ${port} (pid ${next.pid})`);
      },
    };
    return server;
  }
}

function pgUrl(port: number): string {
  return `postgres://postgres@127.0.0.1:${port}/postgres`;
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let pending: Promise<void> | undefined;
  return () => {
    pending ??= fn();
    return pending;
  };
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Already gone.
  }
}

function exitReason(child: ChildProcess): string | null {
  if (child.exitCode !== null) return `postgres exited with code ${child.exitCode}`;
  if (child.signalCode !== null) return `postgres was killed by ${child.signalCode}`;
  return null;
}

/**
 * postmaster.pid lines: pid, data dir, start time, port, socket dir, listen address,
 * shmem key, status. Reuse only when the pid is alive and really is a postgres process
 * (pids get recycled after crashes/reboots, leaving a stale file behind).
 */
async function readRunningPostmaster(dataDir: string): Promise<{ pid: number; port: number } | null> {
  let content: string;
  try {
    content = await readFile(join(dataDir, 'postmaster.pid'), 'utf8');
  } catch {
    return null;
  }
  const lines = content.split('\n');
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || pid <= 0 || !Number.isInteger(port) || port <= 0) return null;
  if (!isAlive(pid)) return null;
  try {
    const comm = (await readFile(`/proc/${pid}/comm`, 'utf8')).trim();
    if (!comm.startsWith('postgres') && !comm.startsWith('postmaster')) return null;
  } catch {
    // No /proc (not Linux): trust the liveness check.
  }
  return { pid, port };
}

async function prepareDirectories(dataDir: string, socketDir: string, runAs: RunAs | null): Promise<void> {
  await mkdir(dataDir, { recursive: true });
  await mkdir(socketDir, { recursive: true });
  if (runAs === null) {
    await chmod(dataDir, 0o700);
    return;
  }
  const owner = await stat(dataDir);
  if (owner.uid !== runAs.uid) await chown(dataDir, runAs.uid, runAs.gid);
  await chmod(dataDir, 0o700);
  await chown(socketDir, runAs.uid, runAs.gid);
  // A root-owned 0700 ancestor (e.g. an mkdtemp dir or /root) makes the data dir
  // unreachable for the postgres user; postgres would fail with a confusing message.
  try {
    await execFileAsync('test', ['-w', dataDir, '-a', '-w', socketDir], { uid: runAs.uid, gid: runAs.gid });
  } catch {
    throw new Error(
      `postgres: user "postgres" cannot reach ${dataDir}; make every parent directory searchable (chmod o+x) or choose another location`,
    );
  }
}

async function ensureCluster(
  bins: PostgresBinaries,
  dataDir: string,
  cwd: string,
  runAs: RunAs | null,
  fsyncOff: boolean,
  log: NormalizedLog,
): Promise<void> {
  let existing: string | null = null;
  try {
    existing = (await readFile(join(dataDir, 'PG_VERSION'), 'utf8')).trim();
  } catch {
    existing = null;
  }
  if (existing !== null) {
    if (Number(existing) !== bins.major) {
      throw new Error(
        `postgres: ${dataDir} holds a PostgreSQL ${existing} cluster but the binaries are ${bins.major}; remove the directory or install PostgreSQL ${existing}`,
      );
    }
    return;
  }
  const started = Date.now();
  const args = [
    '-D',
    dataDir,
    '--username=postgres',
    '--encoding=UTF8',
    '--locale=C',
    '--auth=trust',
    '--no-instructions',
    // Skipping the final fsync of a throwaway test cluster saves ~1 s.
    ...(fsyncOff ? ['--no-sync'] : []),
  ];
  try {
    await execFileAsync(bins.initdb, args, {
      cwd,
      env: { ...process.env, LC_ALL: 'C', LANG: 'C' },
      ...(runAs ?? {}),
    });
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`postgres: initdb ${dataDir} failed: ${(e.stderr || e.stdout || e.message).trim()}`);
  }
  log.info(`postgres: initdb ${dataDir} (${Date.now() - started} ms)`);
}

/**
 * PostgreSQL's own default of 128 MB is sized for the smallest machines: with
 * the benchmark's million requests stored, expiring 100,000 took 12.6-13.3 s
 * against 10.4-11.2 s with 1 GB (A/B, docs/performance.md). A sixteenth of the memory,
 * between 128 MB and 1 GB, leaves most of it to the services and the page
 * cache; the pages are touched only as they are used. `settings` overrides it.
 */
export function defaultSharedBuffersMb(totalBytes = totalmem()): number {
  return Math.max(128, Math.min(1024, Math.floor(totalBytes / 16 / 2 ** 20)));
}

function spawnPostmaster(
  bins: PostgresBinaries,
  dataDir: string,
  socketDir: string,
  logFile: string,
  port: number,
  options: StartPostgresOptions,
  runAs: RunAs | null,
): ChildProcess {
  const settings: Record<string, string | number | boolean> = {
    listen_addresses: '127.0.0.1',
    port,
    unix_socket_directories: socketDir,
    max_connections: 300,
    shared_buffers: `${defaultSharedBuffersMb()}MB`,
    ...(options.fsyncOff ? { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off' } : {}),
    ...options.settings,
  };
  const args = ['-D', dataDir];
  for (const [name, value] of Object.entries(settings)) {
    args.push('-c', `${name}=${typeof value === 'boolean' ? (value ? 'on' : 'off') : value}`);
  }
  // Opened by us so it works whatever the server user; the child keeps its own copy.
  const fd = openSync(logFile, 'a');
  try {
    return spawn(bins.postgres, args, {
      cwd: socketDir,
      env: { ...process.env, LC_ALL: 'C', LANG: 'C' },
      stdio: ['ignore', fd, fd],
      detached: options.detached ?? false,
      ...(runAs ?? {}),
    });
  } finally {
    closeSync(fd);
  }
}

async function tail(file: string, lines = 15): Promise<string> {
  try {
    return (await readFile(file, 'utf8')).trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

async function waitUntilReady(
  bins: PostgresBinaries,
  port: number,
  timeoutMs: number,
  failure: () => string | null,
  logFile: string,
  exited?: Promise<void>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const failed = failure();
    if (failed !== null)
      throw new Error(`postgres: ${failed} before accepting connections; ${logFile}:\n${await tail(logFile)}`);
    try {
      // Exit 0 means "accepting connections"; 1 (starting up) and 2 (no response) mean retry.
      // libpq's minimum connect timeout is 2 s, so if something else holds the port and never
      // answers, racing against the postmaster's exit reports the failure without that delay.
      const ready = execFileAsync(bins.pgIsready, [
        '-q',
        '-h',
        '127.0.0.1',
        '-p',
        String(port),
        '-U',
        'postgres',
        '-d',
        'postgres',
        '-t',
        '2',
      ]);
      if (exited === undefined) await ready;
      else if (
        (await Promise.race([ready.then(() => 'ready' as const), exited.then(() => 'exited' as const)])) === 'exited'
      ) {
        ready.catch(() => {});
        continue;
      }
      return;
    } catch {
      if (Date.now() > deadline) {
        throw new Error(
          `postgres: not accepting connections on port ${port} after ${timeoutMs} ms; ${logFile}:\n${await tail(logFile)}`,
        );
      }
      await sleep(50);
    }
  }
}
