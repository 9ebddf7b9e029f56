/**
 * Registry of server processes this package started.
 *
 * Callers must call `stop()` on every handle. As a safety net (test runners that crash,
 * forgotten handles) a single process 'exit' handler kills whatever is still registered,
 * so servers do not outlive the Node process that owns them. 'exit' handlers must be
 * synchronous, hence signals rather than graceful waits. Note that 'exit' does not fire
 * on an unhandled SIGINT/SIGTERM; a terminal Ctrl-C still reaches the children because
 * they share the foreground process group (they are spawned non-detached).
 */
const tracked = new Map<number, { name: string; signal: NodeJS.Signals }>();
let handlerInstalled = false;

function killAllTracked(): void {
  for (const [pid, { signal }] of tracked) {
    try {
      process.kill(pid, signal);
    } catch {
      // Already gone: nothing to clean up.
    }
  }
  tracked.clear();
}

/**
 * `signal` defaults to SIGKILL. Postgres registers SIGQUIT instead: it is the postmaster's
 * "immediate shutdown", which also takes the backends down; SIGKILL on the postmaster
 * would leave orphaned backends holding shared memory for a moment and make an immediate
 * restart on the same data dir fail.
 */
export function trackChild(pid: number, name: string, signal: NodeJS.Signals = 'SIGKILL'): void {
  tracked.set(pid, { name, signal });
  if (!handlerInstalled) {
    handlerInstalled = true;
    process.on('exit', killAllTracked);
  }
}

export function untrackChild(pid: number): void {
  tracked.delete(pid);
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM means the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Unref'd so a timeout raced against a child's exit never keeps the process alive afterwards. */
export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms).unref());

/** Polls until `pid` is gone; used for processes that are not our children (no 'exit' event). */
export async function waitForPidExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) return false;
    await sleep(25);
  }
  return true;
}
