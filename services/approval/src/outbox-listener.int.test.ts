import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import type { Logger } from '@countersign/observability';
import { createTestDatabase, type TestDatabase } from '@countersign/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOutboxListener } from './outbox-listener.ts';

let tdb: TestDatabase;
beforeAll(async () => {
  tdb = await createTestDatabase();
});
afterAll(async () => tdb?.drop());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(what: string, check: () => Promise<boolean> | boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting until ${what}`);
    await sleep(25);
  }
}

/** Counts warnings instead of printing them. */
function countingLog(): Logger & { warnings: () => number } {
  let warnings = 0;
  const log = { warn: () => warnings++, warnings: () => warnings };
  return log as unknown as Logger & { warnings: () => number };
}

describe('outbox listener', () => {
  it('keeps exactly one LISTEN session through repeated terminations, and still hears notifications', async () => {
    const app = `countersign-listen-test-${randomBytes(4).toString('hex')}`;
    const sessions = async () =>
      (
        await tdb.superuser<{ pid: number }>(
          'SELECT pid FROM pg_stat_activity WHERE application_name = $1 ORDER BY pid',
          [app],
        )
      ).rows.map((r) => r.pid);
    const heard: string[] = [];
    let listening = 0;
    const listener = await startOutboxListener({
      url: tdb.appUrl,
      log: countingLog(),
      applicationName: app,
      retryMs: 50,
      onNotify: (payload) => heard.push(payload),
      onListening: () => listening++,
    });
    try {
      expect(listener.listening()).toBe(true);
      expect(await sessions()).toHaveLength(1);
      for (let round = 0; round < 5; round++) {
        const [pid] = await sessions();
        await tdb.superuser('SELECT pg_terminate_backend($1)', [pid]);
        await until('a new session listens', async () => {
          const now = await sessions();
          return listener.listening() && now.length > 0 && !now.includes(pid ?? -1);
        });
      }
      // Replacements that a doubled loss report would add arrive within a few retry periods.
      await sleep(500);
      expect(await sessions()).toHaveLength(1);
      expect(listening).toBe(6);
      await tdb.superuser(`NOTIFY countersign_outbox, 'row-42'`);
      await until('the notification arrives', () => heard.includes('row-42'));
    } finally {
      await listener.close();
    }
    await until('the session is closed', async () => (await sessions()).length === 0);
    expect(listener.listening()).toBe(false);
  });

  it('retries a refused connection once per period, and stops retrying when closed', async () => {
    // A port that accepts and closes at once: every connect fails.
    const refuser = createServer((socket) => socket.destroy());
    await new Promise<void>((r) => refuser.listen(0, '127.0.0.1', r));
    const address = refuser.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    const log = countingLog();
    const listener = await startOutboxListener({
      url: `postgres://nobody@127.0.0.1:${port}/none`,
      log,
      retryMs: 50,
      onNotify: () => {},
      onListening: () => {},
    });
    try {
      expect(listener.listening()).toBe(false);
      await sleep(1_000);
      // About one attempt per 50 ms: a retry per loss report would grow the attempts exponentially.
      expect(log.warnings()).toBeGreaterThanOrEqual(5);
      expect(log.warnings()).toBeLessThanOrEqual(25);
    } finally {
      await listener.close();
      const after = log.warnings();
      await sleep(300);
      expect(log.warnings()).toBe(after);
      await new Promise<void>((r) => refuser.close(() => r()));
    }
  });
});
