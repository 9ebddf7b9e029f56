import type { approvals, Db } from '@countersign/db';
import { createLogger } from '@countersign/observability';
import { describe, expect, it } from 'vitest';
import { expireApprovalsTask } from './expire-approvals.task.ts';

/**
 * A backlog of `due` requests that stand-in transactions take from, `limit`
 * at a time, each held open until the test lets it finish. The task's own
 * logic (budget, concurrency, stopping, failures) runs as in production; the
 * transactions themselves are tested against PostgreSQL in reaper.int.test.ts.
 */
function backlog(due: number) {
  let left = due;
  let inFlight = 0;
  let most = 0;
  const waiting: { finish: () => void; fail: (e: Error) => void }[] = [];
  const expire = async (_db: Db, _now: Date, limit: number): Promise<approvals.ExpiredApproval[]> => {
    inFlight++;
    most = Math.max(most, inFlight);
    const take = Math.min(limit, left);
    left -= take;
    try {
      await new Promise<void>((finish, fail) => waiting.push({ finish, fail }));
    } finally {
      inFlight--;
    }
    return Array.from({ length: take }, (_, i) => ({
      id: `a${i}`,
      job_id: `j${i}`,
      profile_id: 'p',
      waited_seconds: 1,
      job_cancelled: true,
    }));
  };
  /** Lets every transaction in flight finish, until none is left. */
  const finishAll = async () => {
    while (waiting.length > 0 || inFlight > 0) {
      for (const w of waiting.splice(0)) w.finish();
      await new Promise((r) => setImmediate(r));
    }
  };
  return { expire, finishAll, waiting, most: () => most, inFlight: () => inFlight };
}

const log = createLogger('expire-test', 'silent');
const task = (b: ReturnType<typeof backlog>, o: { batchSize: number; maxBatches: number; concurrency: number }) => {
  let counted = 0;
  const run = expireApprovalsTask({
    db: {} as Db,
    log,
    ...o,
    expire: b.expire,
    onExpired: () => {
      counted++;
    },
  });
  return { run, counted: () => counted };
};
const tick = () => new Promise((r) => setImmediate(r));
/** A whole run over a backlog of `due`, every transaction let finish. */
async function runToEnd(due: number, o: { batchSize: number; maxBatches: number; concurrency: number }) {
  const b = backlog(due);
  const t = task(b, o);
  const running = t.run();
  await b.finishAll();
  return { result: await running, most: b.most() };
}

describe('expireApprovalsTask', () => {
  it('runs one batch when it comes back short, and the configured number at once while a backlog lasts', async () => {
    const small = await runToEnd(3, { batchSize: 10, maxBatches: 50, concurrency: 4 });
    expect(small.result).toEqual({ expired: 3, batches: 1 });
    expect(small.most).toBe(1);

    const big = backlog(25);
    const many = task(big, { batchSize: 2, maxBatches: 50, concurrency: 3 });
    const running = many.run();
    await tick();
    expect(big.inFlight()).toBe(1);
    big.waiting.shift()?.finish();
    await tick();
    expect(big.inFlight()).toBe(3);
    await big.finishAll();
    const result = await running;
    expect(result.expired).toBe(25);
    expect(many.counted()).toBe(25);
    expect(big.most()).toBe(3);
    // 13 batches hold the 25 (the last one short); each of the other two transactions finds nothing at the end.
    expect(result.batches).toBeGreaterThanOrEqual(13);
    expect(result.batches).toBeLessThanOrEqual(15);
  });

  it('stops at the run budget with the rest still due', async () => {
    expect((await runToEnd(100, { batchSize: 5, maxBatches: 4, concurrency: 2 })).result).toEqual({
      expired: 20,
      batches: 4,
    });
    expect((await runToEnd(100, { batchSize: 5, maxBatches: 0, concurrency: 2 })).result).toEqual({
      expired: 0,
      batches: 0,
    });
  });

  it('fails the run only once every transaction in flight has ended, and starts no batch after a failure', async () => {
    const b = backlog(100);
    const t = task(b, { batchSize: 5, maxBatches: 50, concurrency: 2 });
    let settled = false;
    const running = t.run().finally(() => {
      settled = true;
    });
    await tick();
    b.waiting.shift()?.finish();
    await tick();
    expect(b.inFlight()).toBe(2);
    b.waiting.shift()?.fail(new Error('connection terminated'));
    await tick();
    // The other transaction is still going: the run has not ended, and no new batch began.
    expect(settled).toBe(false);
    expect(b.inFlight()).toBe(1);
    b.waiting.shift()?.finish();
    await expect(running).rejects.toThrow('connection terminated');
    expect(b.inFlight()).toBe(0);
    expect(t.counted()).toBe(10);
  });
});
