import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureLocalBinaries, type LocalBinaries } from './binaries.ts';
import { isPortOpen } from './free-port.ts';
import { pingRedis, startRedis } from './redis.ts';
import { captureLog, makeTempDir } from './test-helpers.ts';

const execFileAsync = promisify(execFile);

describe('startRedis', () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  let bins: LocalBinaries;
  const { log } = captureLog();

  beforeAll(async () => {
    bins = await ensureLocalBinaries({ log });
    tmp = await makeTempDir('redis-test');
  });
  afterAll(async () => {
    await tmp.remove();
  });

  async function cli(port: number, ...args: string[]): Promise<string> {
    if (bins.redis.cli === null) throw new Error('redis-cli not installed');
    const { stdout } = await execFileAsync(bins.redis.cli, ['-h', '127.0.0.1', '-p', String(port), ...args]);
    return stdout.trim();
  }

  it('starts with noeviction and no persistence, and stops', { timeout: 30_000 }, async () => {
    const t0 = Date.now();
    const redis = await startRedis({ dir: `${tmp.path}/none`, log, persistence: 'none' });
    console.info(`redis start: ${Date.now() - t0} ms`);
    try {
      expect(redis.url).toBe(`redis://127.0.0.1:${redis.port}`);
      expect(await cli(redis.port, 'CONFIG', 'GET', 'maxmemory-policy')).toBe('maxmemory-policy\nnoeviction');
      expect(await cli(redis.port, 'CONFIG', 'GET', 'appendonly')).toBe('appendonly\nno');
      expect(await cli(redis.port, 'CONFIG', 'GET', 'save')).toBe('save');
      expect(await cli(redis.port, 'CONFIG', 'GET', 'bind')).toBe('bind\n127.0.0.1');
    } finally {
      await redis.stop();
    }
    expect(await isPortOpen(redis.port)).toBe(false);
    expect(await pingRedis(redis.port)).toBe(false);
  });

  it('keeps data across restart() with AOF persistence', { timeout: 30_000 }, async () => {
    const redis = await startRedis({ dir: `${tmp.path}/aof`, log, persistence: 'aof' });
    try {
      expect(await cli(redis.port, 'CONFIG', 'GET', 'appendonly')).toBe('appendonly\nyes');
      expect(await cli(redis.port, 'SET', 'k', 'v')).toBe('OK');
      const before = redis.pid;
      await redis.restart();
      expect(redis.pid).not.toBe(before);
      expect(await cli(redis.port, 'GET', 'k')).toBe('v');
    } finally {
      await redis.stop();
    }
  });

  it(
    'restart({ wipe, downtimeMs }) comes back empty after an outage, on the same port',
    { timeout: 30_000 },
    async () => {
      const redis = await startRedis({ dir: `${tmp.path}/wipe`, log, persistence: 'aof' });
      try {
        expect(await cli(redis.port, 'SET', 'k', 'v')).toBe('OK');
        const restarting = redis.restart({ wipe: true, downtimeMs: 500 });
        await new Promise((r) => setTimeout(r, 250));
        expect(await pingRedis(redis.port)).toBe(false);
        await restarting;
        expect(await cli(redis.port, 'GET', 'k')).toBe('');
        expect(await cli(redis.port, 'DBSIZE')).toBe('0');
      } finally {
        await redis.stop();
      }
    },
  );
});
