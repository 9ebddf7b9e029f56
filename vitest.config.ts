import { defineConfig } from 'vitest/config';

/**
 * Projects, run in this order (sequence.groupOrder) so the heavy ones do not
 * compete for the two cores: unit tests and infra checks (no I/O), integration
 * tests (real PostgreSQL and Redis started once per run by the global setup),
 * and end-to-end tests (the five services as real processes).
 */
const GLOBAL_SETUP = './packages/testing/src/global-setup.ts';

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          sequence: { groupOrder: 0 },
          include: ['packages/*/src/**/*.test.ts', 'services/*/src/**/*.test.ts'],
          exclude: ['**/*.int.test.ts', '**/node_modules/**'],
        },
      },
      {
        test: {
          name: 'integration',
          sequence: { groupOrder: 1 },
          include: ['packages/*/src/**/*.int.test.ts', 'services/*/src/**/*.int.test.ts'],
          globalSetup: [GLOBAL_SETUP],
          testTimeout: 60_000,
          hookTimeout: 60_000,
          pool: 'forks',
          maxWorkers: 2,
        },
      },
      {
        // Deployment artefacts (compose, Kubernetes, Prometheus rules, Grafana): parsed and cross-checked, no I/O.
        test: {
          name: 'infra',
          sequence: { groupOrder: 0 },
          include: ['test/infra/**/*.test.ts'],
          testTimeout: 60_000,
        },
      },
      {
        test: {
          name: 'e2e',
          sequence: { groupOrder: 2 },
          include: ['test/e2e/**/*.e2e.test.ts'],
          globalSetup: [GLOBAL_SETUP],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
