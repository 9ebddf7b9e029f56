import { generateSigningKey } from '@countersign/db';
import { createLogger } from '@countersign/observability';
import { createTestDatabase, type SeededOrg, seedOrg, type TestDatabase } from '@countersign/testing';
import type { DecisionResult } from '@countersign/workflow';
import type { FastifyInstance, InjectOptions, RouteOptions } from 'fastify';
import { type ApiDeps, buildApi } from '../app.ts';
import { memoryRateLimiter } from '../rate-limit.ts';

/** Builds the real api against a fresh database and a seeded org, and calls it in-process. */
export interface ApiHarness {
  readonly app: FastifyInstance;
  readonly tdb: TestDatabase;
  readonly org: SeededOrg;
  readonly decisions: DecisionResult[];
  /** Every route buildApi registered, as Fastify announced it. */
  readonly routes: readonly RouteOptions[];
  call(
    key: string | null,
    opts: InjectOptions,
  ): Promise<{ status: number; body: any; headers: Record<string, unknown> }>;
  close(): Promise<void>;
}

/** One checkpoint signing key per test process (generated in memory, never written). */
export const AUDIT_TEST_KEY = generateSigningKey();

export const TEST_SETTINGS = { approvalTimeoutMs: 168 * 3_600_000, escalationAfterMs: 24 * 3_600_000 };

/** What a test may change about the api it gets; everything else is as main.ts builds it. */
export type ApiHarnessOptions = Pick<ApiDeps, 'limits' | 'rateLimiter' | 'bodyLimit'>;

export async function startApiHarness(options: ApiHarnessOptions = {}): Promise<ApiHarness> {
  const tdb = await createTestDatabase();
  const org = await seedOrg(tdb.handle.db);
  const decisions: DecisionResult[] = [];
  const routes: RouteOptions[] = [];
  const app = await buildApi({
    // Counters in this process, through the same port main.ts fills with the Redis limiter.
    rateLimiter: memoryRateLimiter(),
    ...options,
    onRoute: (route) => {
      routes.push(route);
    },
    db: tdb.handle.db,
    log: createLogger('api-test', 'silent'),
    settings: TEST_SETTINGS,
    onDecision: (r) => decisions.push(r),
    readiness: async () => ({ ready: true, checks: {} }),
    audit: { database: tdb.handle, signingKey: AUDIT_TEST_KEY },
  });
  await app.ready();
  return {
    app,
    tdb,
    org,
    decisions,
    routes,
    call: async (key, opts) => {
      const res = await app.inject({
        ...opts,
        headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...(opts.headers ?? {}) },
      });
      const type = String(res.headers['content-type'] ?? '');
      return {
        status: res.statusCode,
        body: type.includes('json') ? res.json() : res.body,
        headers: res.headers as Record<string, unknown>,
      };
    },
    close: async () => {
      await app.close();
      await tdb.drop();
    },
  };
}
