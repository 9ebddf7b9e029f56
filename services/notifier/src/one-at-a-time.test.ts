import { describe, expect, it } from 'vitest';
import { oneAtATime } from './one-at-a-time.ts';

describe('oneAtATime', () => {
  it('starts a call only after the one before it has settled, in call order', async () => {
    const inTurn = oneAtATime();
    const events: string[] = [];
    let running = 0;
    let most = 0;
    const job = (name: string, ms: number) => async () => {
      running++;
      most = Math.max(most, running);
      events.push(`start ${name}`);
      await new Promise((r) => setTimeout(r, ms));
      events.push(`end ${name}`);
      running--;
      return name;
    };
    const results = await Promise.all([inTurn(job('a', 20)), inTurn(job('b', 1)), inTurn(job('c', 5))]);
    expect(results).toEqual(['a', 'b', 'c']);
    expect(most).toBe(1);
    expect(events).toEqual(['start a', 'end a', 'start b', 'end b', 'start c', 'end c']);
  });

  it('fails only the caller whose function failed; the next one still runs', async () => {
    const inTurn = oneAtATime();
    const failing = inTurn(async () => {
      throw new Error('redis gone');
    });
    const next = inTurn(async () => 'ran');
    await expect(failing).rejects.toThrow('redis gone');
    expect(await next).toBe('ran');
  });
});
