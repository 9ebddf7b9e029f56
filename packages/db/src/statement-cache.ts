import type { PostgresCursor, PostgresPool, PostgresPoolClient, PostgresQueryResult } from 'kysely';
import type pg from 'pg';

/**
 * Named (prepared) statements for the SQL Kysely sends.
 *
 * PostgreSQL parses and plans an unnamed statement every time it runs. For
 * the short statements that make up this service's traffic the planning is
 * most of the work: measured on one connection here, the api-key lookup took
 * 180 us of backend CPU unnamed and 60 us named, the pending-list page 170
 * against 60 us (an INSERT, dominated by its commit, 200 against 150-180 us).
 * Naming a statement lets the backend keep its plan; after five runs it
 * settles on the generic plan when that costs no more than the custom ones
 * (plan_cache_mode = auto), which is where the saving comes from.
 *
 * Each distinct SQL text with parameters gets a name, per process, up to
 * `capacity` texts: a statement stays prepared on a connection for the
 * connection's life, so the number of texts bounds the backend memory they
 * hold. Texts past the capacity run unnamed, as before; lists of ids are
 * one array parameter (any-of.ts), so their length does not make new texts.
 * Statements without parameters (BEGIN, COMMIT) keep the simple protocol.
 *
 * A migration that adds or drops a column of a table read with `SELECT *` or
 * `RETURNING *` invalidates the prepared statement's result type, and
 * PostgreSQL refuses to run it ("cached plan must not change result type").
 * That text then loses its name in this process for good; outside a
 * transaction the statement is run again at once, unnamed; inside one the
 * transaction has already failed, and its caller's retry (a queue job's, an
 * idempotent client's) runs the statement unnamed.
 *
 * Turn it off (capacity 0) behind a connection pooler in transaction mode
 * that does not track prepared statements (PgBouncer before 1.21, or without
 * max_prepared_statements).
 */
export class StatementNames {
  readonly #names = new Map<string, string>();
  readonly #refused = new Set<string>();
  #issued = 0;

  constructor(readonly capacity: number) {}

  /** The name for this text, or undefined to run it unnamed. */
  nameFor(text: string): string | undefined {
    const known = this.#names.get(text);
    if (known !== undefined || this.#issued >= this.capacity || this.#refused.has(text)) return known;
    // Never reused, even for a refused text: a connection that prepared a name keeps it.
    const name = `countersign_${++this.#issued}`;
    this.#names.set(text, name);
    return name;
  }

  /** This text runs unnamed from now on. */
  refuse(text: string): void {
    this.#names.delete(text);
    this.#refused.add(text);
  }

  /** Texts named so far, for tests and the capacity's documentation. */
  get size(): number {
    return this.#names.size;
  }
}

/** SQLSTATE 0A000 with this message: a prepared statement whose result columns changed under it. */
const RESULT_TYPE_CHANGED = 'cached plan must not change result type';

const isResultTypeChange = (err: unknown): boolean =>
  err instanceof Error && (err as { code?: unknown }).code === '0A000' && err.message.includes(RESULT_TYPE_CHANGED);

/** A pool client that sends Kysely's parameterised statements by name. */
class NamingClient implements PostgresPoolClient {
  constructor(
    private readonly client: pg.PoolClient,
    private readonly names: StatementNames,
  ) {}

  query<R>(sql: string, parameters: ReadonlyArray<unknown>): Promise<PostgresQueryResult<R>>;
  query<R>(cursor: PostgresCursor<R>): PostgresCursor<R>;
  query<R>(
    sqlOrCursor: string | PostgresCursor<R>,
    parameters?: ReadonlyArray<unknown>,
  ): Promise<PostgresQueryResult<R>> | PostgresCursor<R> {
    // Cursors (streamed reads) pass through as they are.
    if (typeof sqlOrCursor !== 'string') return this.client.query(sqlOrCursor as never) as unknown as PostgresCursor<R>;
    const values = parameters as unknown[];
    const name = values.length > 0 ? this.names.nameFor(sqlOrCursor) : undefined;
    if (name === undefined) return this.client.query(sqlOrCursor, values) as unknown as Promise<PostgresQueryResult<R>>;
    return this.runNamed<R>(name, sqlOrCursor, values);
  }

  private async runNamed<R>(name: string, text: string, values: unknown[]): Promise<PostgresQueryResult<R>> {
    try {
      return (await this.client.query({ name, text, values })) as unknown as PostgresQueryResult<R>;
    } catch (err) {
      if (!isResultTypeChange(err)) throw err;
      this.names.refuse(text);
      // Idle ('I'): the failed statement was alone, so running it again changes nothing twice.
      if (this.client.getTransactionStatus() !== 'I') throw err;
      return (await this.client.query(text, values)) as unknown as PostgresQueryResult<R>;
    }
  }

  release(): void {
    this.client.release();
  }
}

/**
 * The pool Kysely's PostgresDialect draws from, naming statements as above.
 * One wrapper per pg client, so Kysely (which keys its connections by the
 * client object) keeps one connection per client, as it does unwrapped.
 */
export class NamingPool implements PostgresPool {
  readonly #wrapped = new WeakMap<pg.PoolClient, NamingClient>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly names: StatementNames,
  ) {}

  async connect(): Promise<PostgresPoolClient> {
    const client = await this.pool.connect();
    let wrapped = this.#wrapped.get(client);
    if (!wrapped) {
      wrapped = new NamingClient(client, this.names);
      this.#wrapped.set(client, wrapped);
    }
    return wrapped;
  }

  end(): Promise<void> {
    return this.pool.end();
  }
}
