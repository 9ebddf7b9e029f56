import { randomBytes } from 'node:crypto';
import { databaseUrl, ensureRoles, migrateToLatest, OWNER_ROLE } from '@countersign/db';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { resolveTestInfra } from './infra.ts';

/**
 * Starts PostgreSQL and Redis once per test run (env URLs, testcontainers, or
 * local binaries), creates the roles, and migrates a template database that
 * every test file copies (a copy is ~100x faster than migrating again).
 */
export interface ProvidedInfra {
  superuserUrl: string;
  redisUrl: string;
  templateDatabase: string;
  ownerPassword: string;
  appPassword: string;
  source: string;
}

declare module 'vitest' {
  export interface ProvidedContext {
    infra: ProvidedInfra;
  }
}

export default async function setup(project: TestProject) {
  const infra = await resolveTestInfra({ log: () => {} });
  const ownerPassword = 'owner-test';
  const appPassword = 'app-test';
  const templateDatabase = `countersign_template_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: infra.databaseUrl });
  await admin.connect();
  try {
    await ensureRoles(admin, ownerPassword, appPassword);
    await admin.query(`CREATE DATABASE ${templateDatabase} OWNER ${OWNER_ROLE}`);
  } finally {
    await admin.end();
  }
  await migrateToLatest(databaseUrl(infra.databaseUrl, OWNER_ROLE, ownerPassword, templateDatabase));
  project.provide('infra', {
    superuserUrl: infra.databaseUrl,
    redisUrl: infra.redisUrl,
    templateDatabase,
    ownerPassword,
    appPassword,
    source: infra.source,
  });
  return async () => {
    await infra.stop();
  };
}
