import type { Executor } from './database.ts';

/** Stored first answers of requests sent with an Idempotency-Key, per principal. */
export async function findIdempotent(ex: Executor, principalId: string, key: string) {
  return ex
    .selectFrom('idempotency_keys')
    .selectAll()
    .where('principal_id', '=', principalId)
    .where('key', '=', key)
    .executeTakeFirst();
}

/** Where an intake queue answer came from: the BullMQ job and the SHA-256 (hex) of the signed message. */
export interface QueueOrigin {
  readonly queueJobId: string;
  readonly messageDigest: string;
}

export async function insertIdempotent(
  ex: Executor,
  r: {
    principalId: string;
    key: string;
    orgId: string;
    requestHash: string;
    status: number;
    body: unknown;
    queue?: QueueOrigin | undefined;
  },
) {
  await ex
    .insertInto('idempotency_keys')
    .values({
      principal_id: r.principalId,
      key: r.key,
      org_id: r.orgId,
      request_hash: r.requestHash,
      response_status: r.status,
      response_body: JSON.stringify(r.body),
      ...(r.queue ? { queue_job_id: r.queue.queueJobId, message_digest: r.queue.messageDigest } : {}),
    })
    .execute();
}

/** Forgets first answers older than the replay window. */
export async function deleteIdempotentOlderThan(ex: Executor, cutoff: Date): Promise<number> {
  const r = await ex.deleteFrom('idempotency_keys').where('created_at', '<', cutoff).executeTakeFirst();
  return Number(r.numDeletedRows);
}

/**
 * Forgets up to `limit` first answers older than `cutoff`. Bounded so one
 * statement never holds many locks. Several reapers pruning at once are safe:
 * a row another one deleted first is simply not counted (the services' role
 * has no UPDATE on this table, so rows cannot be claimed FOR UPDATE).
 * Returns how many rows went.
 */
export async function deleteIdempotentBatchOlderThan(ex: Executor, cutoff: Date, limit: number): Promise<number> {
  const r = await ex
    .deleteFrom('idempotency_keys')
    .where(({ eb, refTuple, selectFrom }) =>
      eb(
        refTuple('principal_id', 'key'),
        'in',
        selectFrom('idempotency_keys')
          .select(['principal_id', 'key'])
          .where('created_at', '<', cutoff)
          .limit(limit)
          .$asTuple('principal_id', 'key'),
      ),
    )
    .executeTakeFirst();
  return Number(r.numDeletedRows);
}
