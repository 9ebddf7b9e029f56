import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadOrCreateLocalCa, localConnector } from '@countersign/ca';
import { generateSigningKey } from '@countersign/db';
import { createLogger } from '@countersign/observability';
import { createTestDatabase, csrFor, type SeededOrg, seedOrg, type TestDatabase } from '@countersign/testing';
import type { FastifyInstance } from 'fastify';
import { buildApi } from '../../../../services/api/src/app.ts';
import { issueJobHandler } from '../../../../services/issuer/src/issue-job.handler.ts';
import { CountersignClient } from '../client.ts';
import type { RequestResult } from '../types.ts';

/**
 * Test-only: the real api listening on 127.0.0.1 over a fresh test database
 * with a seeded org, and the real issuer handler over a throwaway local CA,
 * so the client, the CLI binary and the browser all talk HTTP to the same
 * code that runs in production. Never imported by src.
 */
export interface LiveApi {
  readonly url: string;
  readonly app: FastifyInstance;
  readonly tdb: TestDatabase;
  readonly org: SeededOrg;
  client(key: string | null): CountersignClient;
  /** Runs the issuer on a released job, as the issuance queue consumer would. */
  issue(jobId: string): Promise<{ status: string }>;
  /** A gated request by `who` (default: the seeded requester) for `cn` and extra names. */
  requestGated(cn: string, sans?: string[], whoKey?: string): Promise<RequestResult>;
  close(): Promise<void>;
}

const SETTINGS = { approvalTimeoutMs: 168 * 3_600_000, escalationAfterMs: 24 * 3_600_000 };

export async function startLiveApi(): Promise<LiveApi> {
  const tdb = await createTestDatabase();
  const org = await seedOrg(tdb.handle.db);
  const caDir = await mkdtemp(join(tmpdir(), 'cs-live-ca-'));
  const ca = await loadOrCreateLocalCa({ dir: caDir });
  const log = createLogger('live-api-test', 'silent');
  const issueJob = issueJobHandler(tdb.handle.db, new Map([['local', localConnector(ca)]]), log);
  const app = await buildApi({
    db: tdb.handle.db,
    log,
    settings: SETTINGS,
    onDecision: () => {},
    readiness: async () => ({ ready: true, checks: {} }),
    // The audit routes are served, so the client, CLI and console exercise the real ones.
    audit: { database: tdb.handle, signingKey: generateSigningKey() },
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  if (!address || typeof address === 'string') throw new Error('api did not bind a TCP port');
  const url = `http://127.0.0.1:${address.port}`;
  const client = (key: string | null) => new CountersignClient({ baseUrl: url, apiKey: key });
  return {
    url,
    app,
    tdb,
    org,
    client,
    issue: (jobId) => issueJob(jobId),
    requestGated: async (cn, sans = [], whoKey = org.requester.key) => {
      const { csrPem } = await csrFor(cn, sans);
      return client(whoKey).requestCertificate({
        profile_id: org.gated.id,
        common_name: cn,
        sans,
        csr: csrPem,
        justification: `deploy ${cn} for the checkout service (change CHG-1042)`,
      });
    },
    close: async () => {
      await app.close();
      await tdb.drop();
      await rm(caDir, { recursive: true, force: true });
    },
  };
}
