/** What a run skipped by `skipWhileRunning` returns (the maintenance job's recorded result). */
export const SKIPPED = { skipped: 'previous run still going' } as const;

/**
 * Wraps `run` so that a key which `guarded` selects runs at most once at a
 * time in this process: a call while one for that key is in flight returns
 * SKIPPED at once instead of doing the same work again.
 */
export function skipWhileRunning<K, R>(
  run: (key: K) => Promise<R>,
  guarded: (key: K) => boolean,
): (key: K) => Promise<R | typeof SKIPPED> {
  const inFlight = new Set<K>();
  return async (key) => {
    if (!guarded(key)) return run(key);
    if (inFlight.has(key)) return SKIPPED;
    inFlight.add(key);
    try {
      return await run(key);
    } finally {
      inFlight.delete(key);
    }
  };
}
