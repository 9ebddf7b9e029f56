import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { getPriority, setPriority } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Runs one Countersign service as its own OS process, exactly as production
 * does (one process per service, configured only by environment), so the dev
 * stack, the end-to-end tests, the benchmark and the chaos harness all
 * exercise the real thing: real signals, real crashes, real restarts.
 */
export const SERVICE_NAMES = ['api', 'approval', 'issuer', 'notifier', 'reaper'] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const require = createRequire(import.meta.url);
const TSX_LOADER = join(dirname(require.resolve('tsx/package.json')), 'dist', 'esm', 'index.mjs');

export interface ServiceProcess {
  readonly name: ServiceName;
  readonly id: string;
  pid(): number | undefined;
  running(): boolean;
  /** Resolves when the current process exits. */
  exited(): Promise<number | null>;
  /** SIGTERM (graceful), then SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
  signal(sig: NodeJS.Signals): void;
  /** Starts the process again (after a stop or a crash). */
  start(): void;
  readonly logFile: string | null;
}

export interface ServiceProcessOptions {
  readonly env: NodeJS.ProcessEnv;
  readonly logFile?: string | undefined;
  /** Echo the service's output to this process's stdout too. */
  readonly echo?: boolean | undefined;
  readonly id?: string | undefined;
  /** Run the bundle built by scripts/build-services.ts instead of the sources through tsx. */
  readonly bundled?: boolean | undefined;
  /** Niceness (0-19) added to this process's own: background work yields the cores to the request path. */
  readonly nice?: number | undefined;
}

/**
 * Node flags for every service: the heap budget (as the image's entrypoint
 * sets it), then any extra flags, e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`
 * to profile a bench or chaos run (NODE_OPTIONS refuses those flags).
 */
function nodeArgs(env: NodeJS.ProcessEnv): string[] {
  return [
    ...heapFlags(env.COUNTERSIGN_NODE_HEAP_MB),
    ...(process.env.COUNTERSIGN_SERVICE_NODE_ARGS ?? '').split(/\s+/).filter((a) => a !== ''),
  ];
}

/**
 * V8 grows a heap towards a limit derived from the machine's memory (gigabytes
 * here) before it collects in earnest, so an idle-ish service sat on 200-300 MB
 * of garbage. The services' live data is a few tens of MB (bounded batches,
 * streamed exports and verification), so a 96 MB old space and 8 MB
 * semi-spaces keep the workers under 150 MB resident, with throughput within
 * run-to-run noise (docs/performance.md). COUNTERSIGN_NODE_HEAP_MB changes the budget.
 */
export function heapFlags(heapMb: string | undefined): string[] {
  const mb = heapMb === undefined || heapMb === '' ? DEFAULT_HEAP_MB : Number(heapMb);
  if (!Number.isInteger(mb) || mb < 32) {
    throw new Error(`COUNTERSIGN_NODE_HEAP_MB must be a whole number of megabytes, at least 32 (got ${heapMb})`);
  }
  return [`--max-old-space-size=${mb}`, '--max-semi-space-size=8'];
}

export const DEFAULT_HEAP_MB = 96;

/**
 * On one machine every service shares the same cores. Mail can wait a moment;
 * a submission, a decision or an issuance should not wait behind it. The
 * notifier (2-3 ms of CPU per mail, the largest user after PostgreSQL)
 * therefore runs at a lower CPU priority: when the cores are busy it gets
 * what the request path leaves (its backlog, kept in Redis and PostgreSQL,
 * drains afterwards); when they are idle it runs at full speed. Not the
 * reaper: expiring requests on time is a deadline, and its own CPU is on the
 * path of every expiry batch (a niced reaper took 28-31 s instead of 21 s to
 * expire 100,000 requests). In containers, CPU shares do the same
 * (docker-compose.yml).
 */
export const BACKGROUND_SERVICES: readonly ServiceName[] = ['notifier'];
export const BACKGROUND_NICE = 10;

export function parseNice(value: string | undefined): number {
  if (value === undefined || value === '') return BACKGROUND_NICE;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 19) {
    throw new Error(`COUNTERSIGN_BACKGROUND_NICE must be a whole number from 0 to 19 (got ${value})`);
  }
  return n;
}

export function serviceProcess(name: ServiceName, opts: ServiceProcessOptions): ServiceProcess {
  let child: ChildProcess | null = null;
  let exit: Promise<number | null> = Promise.resolve(null);
  let log: WriteStream | null = opts.logFile ? createWriteStream(opts.logFile, { flags: 'a' }) : null;

  const start = () => {
    if (child && child.exitCode === null && child.signalCode === null) return;
    if (opts.logFile && !log) log = createWriteStream(opts.logFile, { flags: 'a' });
    const args = [
      ...nodeArgs(opts.env),
      ...(opts.bundled
        ? [join(REPO_ROOT, 'services', name, 'dist', 'main.mjs')]
        : ['--import', TSX_LOADER, join(REPO_ROOT, 'services', name, 'src', 'main.ts')]),
    ];
    const c = spawn(process.execPath, args, {
      cwd: REPO_ROOT,
      env: opts.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child = c;
    // Relative to ours, as nice(1) is: raising a child's niceness needs no privilege. A restart gets it again.
    if (opts.nice && c.pid !== undefined) {
      try {
        setPriority(c.pid, Math.min(19, getPriority() + opts.nice));
      } catch {
        // Already gone (it failed at once): its exit and log tell why; the priority no longer matters.
      }
    }
    for (const stream of [c.stdout, c.stderr]) {
      stream?.on('data', (chunk: Buffer) => {
        log?.write(chunk);
        if (opts.echo) process.stdout.write(chunk);
      });
    }
    exit = new Promise((res) => c.once('exit', (code) => res(code)));
  };

  const self: ServiceProcess = {
    name,
    id: opts.id ?? name,
    pid: () => child?.pid,
    running: () => child !== null && child.exitCode === null && child.signalCode === null,
    exited: () => exit,
    signal: (sig) => {
      if (self.running()) child?.kill(sig);
    },
    stop: async (graceMs = 10_000) => {
      if (!self.running()) return;
      child?.kill('SIGTERM');
      const t = setTimeout(() => child?.kill('SIGKILL'), graceMs);
      await exit;
      clearTimeout(t);
    },
    start,
    logFile: opts.logFile ?? null,
  };
  start();
  return self;
}

/** Polls a URL until it answers 200 (readiness), or fails with the service's last log lines. */
export async function waitForHttp(url: string, timeoutMs: number, proc?: ServiceProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    if (proc && !proc.running()) {
      const log = proc.logFile ? await readFile(proc.logFile, 'utf8').catch(() => '') : '';
      const tail = log.trim().split('\n').slice(-5).join('\n');
      throw new Error(`${proc.id} exited before ${url} was ready (see ${proc.logFile ?? 'its output'}):\n${tail}`);
    }
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
      if (res.ok) return;
      last = `${res.status} ${await res.text()}`;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} not ready after ${timeoutMs} ms: ${last}`);
}
