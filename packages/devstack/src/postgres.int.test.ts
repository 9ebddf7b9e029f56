import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureLocalBinaries } from './binaries.ts';
import { isPortOpen } from './free-port.ts';
import { defaultSharedBuffersMb, startPostgres } from './postgres.ts';
import { captureLog, makeTempDir } from './test-helpers.ts';

async function query<T extends pg.QueryResultRow>(url: string, sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

describe('defaultSharedBuffersMb', () => {
  it('is a sixteenth of the memory, at least 128 MB and at most 1 GB', () => {
    const gib = 2 ** 30;
    expect(defaultSharedBuffersMb(1 * gib)).toBe(128);
    expect(defaultSharedBuffersMb(4 * gib)).toBe(256);
    expect(defaultSharedBuffersMb(24 * gib)).toBe(1024);
  });
});

describe('startPostgres', () => {
  let tmp: Awaited<ReturnType<typeof makeTempDir>>;
  const { log } = captureLog();

  beforeAll(async () => {
    await ensureLocalBinaries({ log });
    tmp = await makeTempDir('pg-test');
  });
  afterAll(async () => {
    await tmp.remove();
  });

  it('initdb-s a fresh cluster, serves queries on loopback and stops', { timeout: 60_000 }, async () => {
    const dataDir = join(tmp.path, 'fresh', 'data');
    const t0 = Date.now();
    const server = await startPostgres({ dataDir, log, fsyncOff: true });
    const startMs = Date.now() - t0;
    try {
      expect(server.reused).toBe(false);
      expect(server.url).toBe(`postgres://postgres@127.0.0.1:${server.port}/postgres`);
      const [row] = await query<{ version: string }>(server.url, 'SELECT version()');
      expect(row?.version).toMatch(/^PostgreSQL 1[5-9]/);
      const settings = await query<{ name: string; setting: string }>(
        server.url,
        `SELECT name, setting FROM pg_settings
         WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'max_connections', 'listen_addresses',
                        'server_encoding', 'shared_buffers')
         ORDER BY name`,
      );
      expect(Object.fromEntries(settings.map((s) => [s.name, s.setting]))).toEqual({
        fsync: 'off',
        full_page_writes: 'off',
        listen_addresses: '127.0.0.1',
        max_connections: '300',
        server_encoding: 'UTF8',
        // In 8 kB pages.
        shared_buffers: String((defaultSharedBuffersMb() * 1024) / 8),
        synchronous_commit: 'off',
      });
    } finally {
      await server.stop();
    }
    expect(await isPortOpen(server.port)).toBe(false);
    console.info(`postgres fresh initdb+start: ${startMs} ms`);

    // Second start of the same (stopped) cluster skips initdb.
    const t1 = Date.now();
    const again = await startPostgres({ dataDir, log });
    const restartMs = Date.now() - t1;
    try {
      const [row] = await query<{ fsync: string }>(again.url, 'SHOW fsync');
      expect(row?.fsync).toBe('on');
    } finally {
      await again.stop();
    }
    console.info(`postgres start of existing cluster: ${restartMs} ms`);
  });

  it('reuses a data dir whose postmaster is already running', { timeout: 60_000 }, async () => {
    const dataDir = join(tmp.path, 'reuse', 'data');
    const first = await startPostgres({ dataDir, log, fsyncOff: true });
    try {
      const t0 = Date.now();
      const second = await startPostgres({ dataDir, log, port: 1 });
      console.info(`postgres reuse of running cluster: ${Date.now() - t0} ms`);
      expect(second.reused).toBe(true);
      expect(second.port).toBe(first.port);
      expect(second.pid).toBe(first.pid);
      const [row] = await query<{ one: number }>(second.url, 'SELECT 1 AS one');
      expect(row?.one).toBe(1);
      // Stopping through the adopted handle stops the server for everyone.
      await second.stop();
      expect(await isPortOpen(first.port)).toBe(false);
    } finally {
      await first.stop();
    }
  });
});

describe('PostgresServer.restart', () => {
  it(
    'comes back on the same port with committed data, after a fast or an immediate stop',
    { timeout: 90_000 },
    async () => {
      const tmp = await makeTempDir('pg-restart');
      const server = await startPostgres({ dataDir: join(tmp.path, 'data') });
      try {
        await query(server.url, 'CREATE TABLE t (v int); INSERT INTO t VALUES (1)');
        const first = server.pid;
        await server.restart();
        expect(server.pid).not.toBe(first);
        await query(server.url, 'INSERT INTO t VALUES (2)');
        await server.restart({ mode: 'immediate', downtimeMs: 200 });
        const rows = await query<{ v: number }>(server.url, 'SELECT v FROM t ORDER BY v');
        expect(rows.map((r) => r.v)).toEqual([1, 2]);
      } finally {
        await server.stop();
        await tmp.remove();
      }
      expect(await isPortOpen(server.port)).toBe(false);
    },
  );
});

describe('startPostgres failures', () => {
  it('reports the server log when the requested port is taken', { timeout: 60_000 }, async () => {
    const tmp = await makeTempDir('pg-busy');
    const { createServer } = await import('node:net');
    const blocker = createServer();
    await new Promise<void>((res) => blocker.listen(0, '127.0.0.1', res));
    const address = blocker.address();
    const port = typeof address === 'object' && address !== null ? address.port : 0;
    try {
      await expect(startPostgres({ dataDir: join(tmp.path, 'data'), port, fsyncOff: true })).rejects.toThrow(
        /could not (bind|create)/i,
      );
    } finally {
      blocker.close();
      await tmp.remove();
    }
  });
});
