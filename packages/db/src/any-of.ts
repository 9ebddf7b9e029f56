import { type RawBuilder, sql } from 'kysely';

/**
 * `= ANY($1)` with the whole list as one array parameter, for a list of ids
 * of any length: `IN ($1, $2, ...)` would be a different SQL text for every
 * length, and each text takes a named statement of its own (statement-cache.ts),
 * crowding out the fixed-shape statements the cache is for.
 */
export const anyOf = <T extends string>(values: readonly T[]): RawBuilder<T> => sql<T>`any(${[...values]})`;
