import { createLogger } from '@countersign/observability';
import { createTestDatabase, type SeededOrg, seedOrg, type TestDatabase } from '@countersign/testing';
import type { DecisionResult } from '@countersign/workflow';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { buildApi } from '../app.ts';

/** Builds the real api against a fresh database and a seeded org, and calls it in-process. */
export interface ApiHarness {
  readonly app: FastifyInstance;
  readonly tdb: TestDatabase;
  readonly org: SeededOrg;
  readonly decisions: DecisionResult[];
  call(
    key: string | null,
    opts: InjectOptions,
  ): Promise<{ status: number; body: any; headers: Record<string, unknown> }>;
  close(): Promise<void>;
}

export const TEST_SETTINGS = { approvalTimeoutMs: 168 * 3_600_000, escalationAfterMs: 24 * 3_600_000 };

export async function startApiHarness(): Promise<ApiHarness> {
  const tdb = await createTestDatabase();
  const org = await seedOrg(tdb.handle.db);
  const decisions: DecisionResult[] = [];
  const app = await buildApi({
    db: tdb.handle.db,
    log: createLogger('api-test', 'silent'),
    settings: TEST_SETTINGS,
    onDecision: (r) => decisions.push(r),
    readiness: async () => ({ ready: true, checks: {} }),
  });
  await app.ready();
  return {
    app,
    tdb,
    org,
    decisions,
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
