import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { resolveTestInfra } from '../../testing/src/infra.ts';
import { pingRedis } from './redis.ts';
import { captureLog } from './test-helpers.ts';

describe('resolveTestInfra (from @countersign/testing)', () => {
  it(
    'falls back to local servers quickly when no env vars or container runtime exist',
    { timeout: 60_000 },
    async () => {
      const saved = {
        db: process.env.COUNTERSIGN_TEST_DATABASE_URL,
        redis: process.env.COUNTERSIGN_TEST_REDIS_URL,
        mode: process.env.COUNTERSIGN_TEST_INFRA,
      };
      delete process.env.COUNTERSIGN_TEST_DATABASE_URL;
      delete process.env.COUNTERSIGN_TEST_REDIS_URL;
      delete process.env.COUNTERSIGN_TEST_INFRA;
      const { log, lines } = captureLog();
      const t0 = Date.now();
      try {
        const infra = await resolveTestInfra({ log });
        console.info(`resolveTestInfra(local): ${Date.now() - t0} ms`);
        try {
          expect(infra.source).toBe('local');
          const client = new pg.Client({ connectionString: infra.databaseUrl });
          await client.connect();
          const { rows } = await client.query<{ rolsuper: boolean }>(
            'SELECT rolsuper FROM pg_roles WHERE rolname = current_user',
          );
          await client.end();
          expect(rows[0]?.rolsuper).toBe(true);
          const port = Number(new URL(infra.redisUrl).port);
          expect(await pingRedis(port)).toBe(true);
        } finally {
          await infra.stop();
        }
        const probe = lines.find((l) => l.startsWith('test infra: no container runtime'));
        expect(probe).toBeDefined();
        const probeMs = Number(/; (\d+) ms\)/.exec(probe ?? '')?.[1]);
        expect(probeMs).toBeLessThan(3_000);
      } finally {
        if (saved.db !== undefined) process.env.COUNTERSIGN_TEST_DATABASE_URL = saved.db;
        if (saved.redis !== undefined) process.env.COUNTERSIGN_TEST_REDIS_URL = saved.redis;
        if (saved.mode !== undefined) process.env.COUNTERSIGN_TEST_INFRA = saved.mode;
      }
    },
  );

  it('uses the env URLs when both are set', async () => {
    const saved = { db: process.env.COUNTERSIGN_TEST_DATABASE_URL, redis: process.env.COUNTERSIGN_TEST_REDIS_URL };
    process.env.COUNTERSIGN_TEST_DATABASE_URL = 'postgres://postgres@127.0.0.1:1/postgres';
    process.env.COUNTERSIGN_TEST_REDIS_URL = 'redis://127.0.0.1:2';
    try {
      const infra = await resolveTestInfra({});
      expect(infra).toMatchObject({ source: 'env', redisUrl: 'redis://127.0.0.1:2' });
      await infra.stop();
    } finally {
      if (saved.db === undefined) delete process.env.COUNTERSIGN_TEST_DATABASE_URL;
      else process.env.COUNTERSIGN_TEST_DATABASE_URL = saved.db;
      if (saved.redis === undefined) delete process.env.COUNTERSIGN_TEST_REDIS_URL;
      else process.env.COUNTERSIGN_TEST_REDIS_URL = saved.redis;
    }
  });
});
