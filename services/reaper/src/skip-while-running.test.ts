import { describe, expect, it } from 'vitest';
import { SKIPPED, skipWhileRunning } from './skip-while-running.ts';

/** A run that finishes when the test says so. */
function gate() {
  let open: () => void = () => {};
  const opened = new Promise<void>((r) => {
    open = r;
  });
  return { open, opened };
}

describe('skipWhileRunning', () => {
  it('skips a guarded key while its run is in flight, and runs it again once that ended', async () => {
    const g = gate();
    const calls: string[] = [];
    let clock = 1_000;
    const { run, runningForMs } = skipWhileRunning(
      async (key: string) => {
        calls.push(key);
        await g.opened;
        return `done ${key}`;
      },
      (key) => (key === 'free' ? Number.POSITIVE_INFINITY : 1),
      () => clock,
    );
    expect(runningForMs('reconcile')).toBeNull();
    const first = run('reconcile');
    clock += 250;
    expect(await run('reconcile')).toBe(SKIPPED);
    expect(runningForMs('reconcile')).toBe(250);
    // Another key is not held up by the first.
    const other = run('verify');
    g.open();
    expect(await first).toBe('done reconcile');
    expect(await other).toBe('done verify');
    expect(runningForMs('reconcile')).toBeNull();
    expect(await run('reconcile')).toBe('done reconcile');
    expect(calls).toEqual(['reconcile', 'verify', 'reconcile']);
  });

  it('lets a key without a limit run any number of times at once', async () => {
    const g = gate();
    let running = 0;
    let most = 0;
    const { run } = skipWhileRunning(
      async () => {
        running++;
        most = Math.max(most, running);
        await g.opened;
        running--;
        return 'ok';
      },
      () => Number.POSITIVE_INFINITY,
    );
    const all = Promise.all([run('free'), run('free'), run('free')]);
    g.open();
    expect(await all).toEqual(['ok', 'ok', 'ok']);
    expect(most).toBe(3);
  });

  it('lets a key with a limit of two run twice at once, skips a third, and reports the oldest run', async () => {
    const gates = [gate(), gate(), gate()];
    let clock = 5_000;
    let started = 0;
    const { run, runningForMs } = skipWhileRunning(
      async () => {
        const mine = gates[started++];
        await mine?.opened;
        return 'expired';
      },
      (key: string) => (key === 'expire' ? 2 : 1),
      () => clock,
    );
    const first = run('expire');
    clock += 100;
    const second = run('expire');
    clock += 100;
    expect(await run('expire')).toBe(SKIPPED);
    expect(started).toBe(2);
    expect(runningForMs('expire')).toBe(200);
    // The oldest run ends: the newer one is now the oldest, and a slot is free again.
    gates[0]?.open();
    expect(await first).toBe('expired');
    expect(runningForMs('expire')).toBe(100);
    const third = run('expire');
    expect(started).toBe(3);
    expect(await run('expire')).toBe(SKIPPED);
    gates[1]?.open();
    gates[2]?.open();
    expect(await Promise.all([second, third])).toEqual(['expired', 'expired']);
    expect(runningForMs('expire')).toBeNull();
  });

  it('frees the key when a run fails', async () => {
    let fail = true;
    const { run } = skipWhileRunning(
      async () => {
        if (fail) throw new Error('boom');
        return 'ok';
      },
      () => 1,
    );
    await expect(run('task')).rejects.toThrow('boom');
    fail = false;
    expect(await run('task')).toBe('ok');
  });
});
