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
  it('skips a key while its run is in flight, and runs it again once that ended', async () => {
    const g = gate();
    const calls: string[] = [];
    let clock = 1_000;
    const { run, runningForMs } = skipWhileRunning(
      async (key: string) => {
        calls.push(key);
        await g.opened;
        return `done ${key}`;
      },
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

  it('frees the key when a run fails', async () => {
    let fail = true;
    const { run } = skipWhileRunning(async () => {
      if (fail) throw new Error('boom');
      return 'ok';
    });
    await expect(run('task')).rejects.toThrow('boom');
    fail = false;
    expect(await run('task')).toBe('ok');
  });
});
