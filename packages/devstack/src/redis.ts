import { type ChildProcess, spawn } from 'node:child_process';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { join, resolve } from 'node:path';
import { findRedisBinaries } from './binaries.ts';
import { freePort } from './free-port.ts';
import { type DevstackLog, normalizeLog } from './log.ts';
import { sleep, trackChild, untrackChild } from './processes.ts';

export interface StartRedisOptions {
  /** Working dir: AOF/RDB files and redis.log live here. Created if missing. */
  dir: string;
  /** 0 or undefined picks a free loopback port. */
  port?: number;
  log?: DevstackLog;
  /** 'aof' (default) survives restarts, which the dev stack wants; 'none' for throwaway test servers. */
  persistence?: 'aof' | 'none';
  startTimeoutMs?: number;
}

export interface RedisServer {
  url: string;
  port: number;
  /** Current server pid (changes after restart()). */
  readonly pid: number;
  dir: string;
  logFile: string;
  /** SHUTDOWN-equivalent (SIGTERM: redis saves/flushes per persistence) and wait for exit. Idempotent. */
  stop(): Promise<void>;
  /**
   * Stop and start again on the same port and dir, e.g. to test reconnection or AOF recovery.
   * `downtimeMs` keeps it down that long (an outage); `wipe` deletes the AOF/RDB files first,
   * so it comes back empty like a server restarted without persistence.
   */
  restart(opts?: RedisRestartOptions): Promise<void>;
}

export interface RedisRestartOptions {
  downtimeMs?: number;
  wipe?: boolean;
}

const STOP_TIMEOUT_MS = 15_000;

/**
 * Starts redis-server on 127.0.0.1. `maxmemory-policy noeviction` is mandatory for BullMQ
 * (evicting queue keys silently loses jobs). The caller must call `stop()`; see
 * processes.ts for the exit-handler safety net.
 */
export async function startRedis(options: StartRedisOptions): Promise<RedisServer> {
  const log = normalizeLog(options.log);
  const bins = await findRedisBinaries();
  if (bins === null)
    throw new Error('redis-server not found; call ensureLocalBinaries() or run: apt-get install -y redis-server');
  const dir = resolve(options.dir);
  await mkdir(dir, { recursive: true });
  const logFile = join(dir, 'redis.log');
  const persistence = options.persistence ?? 'aof';
  const timeoutMs = options.startTimeoutMs ?? 30_000;

  const launch = async (port: number): Promise<{ child: ChildProcess; exited: Promise<void> }> => {
    const args = [
      '--bind',
      '127.0.0.1',
      '--port',
      String(port),
      '--protected-mode',
      'yes',
      '--daemonize',
      'no',
      '--dir',
      dir,
      '--logfile',
      logFile,
      '--maxmemory-policy',
      'noeviction',
      ...(persistence === 'aof' ? ['--appendonly', 'yes'] : ['--appendonly', 'no', '--save', '']),
    ];
    const started = Date.now();
    const child = spawn(bins.server, args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
    const pid = child.pid;
    if (pid === undefined) throw new Error(`redis: failed to spawn ${bins.server}`);
    const exited = new Promise<void>((res) => child.once('exit', () => res()));
    // Argument errors are printed to stderr before the logfile setting takes effect.
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    trackChild(pid, 'redis');
    try {
      await waitForPong(port, timeoutMs, () => {
        if (child.exitCode === null && child.signalCode === null) return null;
        return `redis-server exited (${child.exitCode ?? child.signalCode})`;
      });
    } catch (err) {
      untrackChild(pid);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
      const logTail = await readFile(logFile, 'utf8').then(
        (s) => s.trimEnd().split('\n').slice(-10).join('\n'),
        () => '',
      );
      throw new Error(`${(err as Error).message}\n${stderr}${logTail}`);
    }
    log.info(`redis: ready on port ${port} (pid ${pid}, ${Date.now() - started} ms, persistence ${persistence})`);
    return { child, exited };
  };

  // An auto-picked port can be taken between freePort() and the bind: retry with another.
  let current: { child: ChildProcess; exited: Promise<void> } | undefined;
  let port = options.port || 0;
  for (let attempt = 1; current === undefined; attempt++) {
    const candidate = options.port || (await freePort());
    try {
      current = await launch(candidate);
      port = candidate;
    } catch (err) {
      if (options.port || attempt >= 3 || !/address already in use/i.test((err as Error).message)) throw err;
      log.warn(`redis: port ${candidate} was taken, retrying with another port`);
    }
  }

  const stopCurrent = async (): Promise<void> => {
    if (current === undefined) return;
    const { child, exited } = current;
    current = undefined;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timedOut = await Promise.race([exited.then(() => false), sleep(STOP_TIMEOUT_MS).then(() => true)]);
      if (timedOut) {
        log.warn('redis: SIGTERM shutdown timed out, sending SIGKILL');
        child.kill('SIGKILL');
        await exited;
      }
    }
    if (child.pid !== undefined) untrackChild(child.pid);
  };

  let pid = current.child.pid ?? 0;
  let stopped = false;
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    get pid() {
      return pid;
    },
    dir,
    logFile,
    async stop() {
      stopped = true;
      await stopCurrent();
      log.info(`redis: stopped port ${port}`);
    },
    async restart(opts: RedisRestartOptions = {}) {
      if (stopped) throw new Error('redis: cannot restart a stopped server');
      await stopCurrent();
      if (opts.wipe) await removePersistence(dir);
      if (opts.downtimeMs) await sleep(opts.downtimeMs);
      if (stopped) return;
      current = await launch(port);
      pid = current.child.pid ?? 0;
    },
  };
}

/** The AOF directory (Redis 7) and RDB snapshot; redis.log stays. */
async function removePersistence(dir: string): Promise<void> {
  for (const name of await readdir(dir)) {
    if (name === 'appendonlydir' || name.endsWith('.aof') || name.endsWith('.rdb')) {
      await rm(join(dir, name), { recursive: true, force: true });
    }
  }
}

/** Sends inline `PING` and resolves once the reply is `+PONG` (not `-LOADING` while the AOF replays). */
export function pingRedis(port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((res) => {
    const socket = connect({ host: '127.0.0.1', port });
    let reply = '';
    const done = (ok: boolean) => {
      socket.destroy();
      res(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.setEncoding('utf8').on('data', (chunk: string) => {
      reply += chunk;
      if (reply.includes('\r\n')) done(reply.startsWith('+PONG'));
    });
  });
}

async function waitForPong(port: number, timeoutMs: number, failure: () => string | null): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const failed = failure();
    if (failed !== null) throw new Error(`redis: ${failed} before answering PING on port ${port}`);
    if (await pingRedis(port)) return;
    if (Date.now() > deadline) throw new Error(`redis: no PONG on port ${port} after ${timeoutMs} ms`);
    await sleep(25);
  }
}
