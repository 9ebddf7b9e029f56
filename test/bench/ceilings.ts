import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, sign } from 'node:crypto';
import { Redis } from 'ioredis';
import pg from 'pg';

/**
 * What this machine can physically do, measured in the same run as the
 * pipeline so every goal is a ratio to today's hardware, not a magic number.
 */
export async function pgbenchTps(superuserUrl: string, binDir: string, seconds: number): Promise<number> {
  const admin = new pg.Client({ connectionString: superuserUrl });
  await admin.connect();
  await admin.query('DROP DATABASE IF EXISTS bench_pgbench');
  await admin.query('CREATE DATABASE bench_pgbench');
  await admin.end();
  const u = new URL(superuserUrl);
  const args = ['-h', u.hostname, '-p', u.port, '-U', decodeURIComponent(u.username) || 'postgres'];
  execFileSync(`${binDir}/pgbench`, [...args, '-i', '-s', '10', '-q', 'bench_pgbench'], { stdio: 'ignore' });
  const out = execFileSync(`${binDir}/pgbench`, [
    ...args,
    '-c',
    '8',
    '-j',
    '2',
    '-T',
    String(seconds),
    'bench_pgbench',
  ]).toString();
  const m = /tps = ([\d.]+)/.exec(out);
  const cleanup = new pg.Client({ connectionString: superuserUrl });
  await cleanup.connect();
  await cleanup.query('DROP DATABASE IF EXISTS bench_pgbench');
  await cleanup.end();
  return m?.[1] ? Number(m[1]) : Number.NaN;
}

export function rawSignRate(seconds: number): number {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const data = Buffer.alloc(400, 7);
  const end = performance.now() + seconds * 1000;
  let n = 0;
  while (performance.now() < end) {
    for (let i = 0; i < 100; i++) sign('sha256', data, privateKey);
    n += 100;
  }
  return n / seconds;
}

export async function redisRoundTrips(url: string, seconds: number): Promise<number> {
  const r = new Redis(url);
  const end = performance.now() + seconds * 1000;
  let n = 0;
  while (performance.now() < end) {
    await r.ping();
    n++;
  }
  r.disconnect();
  return n / seconds;
}
