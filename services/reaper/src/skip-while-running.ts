/** What a run skipped by `skipWhileRunning` returns (the maintenance job's recorded result). */
export const SKIPPED = { skipped: 'previous run still going' } as const;

/**
 * Wraps `run` so that a key runs at most `runsAtOnce(key)` times at once in
 * this process: a call while that many for the key are in flight returns
 * SKIPPED at once instead of adding another. `runningForMs` says how long the
 * oldest run in flight has been going (a run that never ends would otherwise
 * silently turn its task off).
 */
export function skipWhileRunning<K, R>(
  run: (key: K) => Promise<R>,
  runsAtOnce: (key: K) => number,
  now: () => number = Date.now,
): { run: (key: K) => Promise<R | typeof SKIPPED>; runningForMs: (key: K) => number | null } {
  const startedAt = new Map<K, number[]>();
  return {
    run: async (key) => {
      const running = startedAt.get(key) ?? [];
      if (running.length >= runsAtOnce(key)) return SKIPPED;
      const at = now();
      running.push(at);
      startedAt.set(key, running);
      try {
        return await run(key);
      } finally {
        running.splice(running.indexOf(at), 1);
        if (running.length === 0) startedAt.delete(key);
      }
    },
    runningForMs: (key) => {
      const oldest = startedAt.get(key)?.[0];
      return oldest === undefined ? null : now() - oldest;
    },
  };
}
