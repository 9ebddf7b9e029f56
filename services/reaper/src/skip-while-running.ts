/** What a run skipped by `skipWhileRunning` returns (the maintenance job's recorded result). */
export const SKIPPED = { skipped: 'previous run still going' } as const;

/**
 * Wraps `run` so that a key runs at most once at a time in this process: a
 * call while one for that key is in flight returns SKIPPED at once instead of
 * doing the same work again. `runningForMs` says how long the run in flight
 * has been going (a run that never ends would otherwise silently turn its
 * task off).
 */
export function skipWhileRunning<K, R>(
  run: (key: K) => Promise<R>,
  now: () => number = Date.now,
): { run: (key: K) => Promise<R | typeof SKIPPED>; runningForMs: (key: K) => number | null } {
  const startedAt = new Map<K, number>();
  return {
    run: async (key) => {
      if (startedAt.has(key)) return SKIPPED;
      startedAt.set(key, now());
      try {
        return await run(key);
      } finally {
        startedAt.delete(key);
      }
    },
    runningForMs: (key) => {
      const at = startedAt.get(key);
      return at === undefined ? null : now() - at;
    },
  };
}
