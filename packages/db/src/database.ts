import { Kysely, PostgresDialect, sql, type Transaction } from 'kysely';
import pg from 'pg';
import type { Database } from './schema.ts';
import { NamingPool, StatementNames } from './statement-cache.ts';

export type Db = Kysely<Database>;
export type Tx = Transaction<Database>;
/** Repositories accept either the pool or a transaction, so use cases choose the boundary. */
export type Executor = Db | Tx;

/**
 * Runs a background read (gauges, maintenance scans) with no parallel
 * workers: at a large backlog a parallel scan takes every core the api and
 * the workers serve from (the pending gauge over a million pending rows: 199
 * ms of both cores, every 15 s); without workers it takes one.
 */
export async function backgroundRead<T>(db: Db, read: (tx: Tx) => Promise<T>): Promise<T> {
  return db.transaction().execute(async (tx) => {
    await sql`SET LOCAL max_parallel_workers_per_gather = 0`.execute(tx);
    return read(tx);
  });
}

export interface DatabaseHandle {
  readonly db: Db;
  readonly pool: pg.Pool;
  close(): Promise<void>;
}

export interface DatabaseOptions {
  readonly url: string;
  readonly poolSize?: number;
  /**
   * Idle time after which a pooled connection is closed (default 10 minutes).
   * A connection opened again pays for its backend and, per statement, a
   * prepare and five custom plans: with 30 s, a burst after half a minute's
   * lull ran its first second at a p99 of 130-230 ms against 27-34 ms warm.
   */
  readonly idleTimeoutMs?: number;
  readonly applicationName?: string;
  readonly onError?: (err: Error) => void;
  /**
   * Distinct parameterised SQL texts sent as named (prepared) statements, per
   * process; 0 sends every statement unnamed (see statement-cache.ts).
   */
  readonly statementCacheSize?: number;
}

/**
 * Enough for every statement shape a service runs, with room to spare (the
 * config's COUNTERSIGN_DATABASE_STATEMENT_CACHE default is the same number).
 */
export const DEFAULT_STATEMENT_CACHE_SIZE = 200;

/** COUNTERSIGN_DATABASE_IDLE_TIMEOUT's default: longer than the lulls of bursty approval traffic. */
export const DEFAULT_IDLE_TIMEOUT_MS = 600_000;

export function createDatabase(opts: DatabaseOptions): DatabaseHandle {
  const pool = new pg.Pool({
    connectionString: opts.url,
    max: opts.poolSize ?? 10,
    application_name: opts.applicationName ?? 'countersign',
    // Fail a request quickly when the database is gone instead of queueing forever.
    connectionTimeoutMillis: 5_000,
    idleTimeoutMillis: opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
  });
  // An idle client losing its connection (pg_terminate_backend, a restart) must not crash the process.
  pool.on('error', (err) => opts.onError?.(err));
  // Nor may a checked-out one: the pool listens for errors only on idle clients, so a connection that dies
  // between two statements of a transaction (or under the audit verifier's held client) would emit 'error'
  // with no listener and take the process down. The statement in flight, or the next, fails on its own and
  // the pool discards the dead client when it is released.
  pool.on('connect', (client) => {
    client.on('error', () => {});
  });
  const cacheSize = opts.statementCacheSize ?? DEFAULT_STATEMENT_CACHE_SIZE;
  const dialect = new PostgresDialect({
    pool: cacheSize > 0 ? new NamingPool(pool, new StatementNames(cacheSize)) : pool,
  });
  const db = new Kysely<Database>({ dialect });
  return {
    db,
    pool,
    close: () => db.destroy(),
  };
}

/** Postgres SQLSTATE of a driver error, if any. */
export const pgCode = (err: unknown): string | undefined =>
  typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string' ? err.code : undefined;

export const pgConstraint = (err: unknown): string | undefined =>
  typeof err === 'object' && err !== null && 'constraint' in err && typeof err.constraint === 'string'
    ? err.constraint
    : undefined;

export const UNIQUE_VIOLATION = '23505';
