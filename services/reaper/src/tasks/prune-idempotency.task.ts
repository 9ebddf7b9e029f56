import { type Db, idempotency } from '@countersign/db';

/** Forgets stored Idempotency-Key answers older than the replay window, in bounded batches. */
export interface PruneDeps {
  readonly db: Db;
  readonly ttlMs: number;
  readonly batchSize: number;
  readonly maxBatches: number;
  readonly now?: () => Date;
}

export function pruneIdempotencyTask(deps: PruneDeps) {
  return async (): Promise<{ deleted: number }> => {
    const cutoff = new Date((deps.now?.() ?? new Date()).getTime() - deps.ttlMs);
    let deleted = 0;
    for (let batch = 0; batch < deps.maxBatches; batch++) {
      const n = await idempotency.deleteIdempotentBatchOlderThan(deps.db, cutoff, deps.batchSize);
      deleted += n;
      if (n < deps.batchSize) break;
    }
    return { deleted };
  };
}
