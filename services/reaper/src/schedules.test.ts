import { describe, expect, it } from 'vitest';
import { isRetired, localSchedules, scheduleSpecs } from './schedules.ts';

const settings = {
  expireEveryMs: 30_000,
  reconcileEveryMs: 20_000,
  renewalScanEveryMs: 3_600_000,
  auditVerifyEveryMs: 3_600_000,
  idempotencyPruneEveryMs: 3_600_000,
  auditCheckpointEveryMs: 3_600_000,
  gaugeRefreshMs: 15_000,
};

describe('schedules', () => {
  const specs = scheduleSpecs(settings);

  it('declares one versioned scheduler per maintenance task', () => {
    expect(specs.map((s) => s.id)).toEqual([
      'expire-approvals-v1',
      'reconcile-released-v1',
      'reconcile-notifications-v1',
      'renewal-scan-v1',
      'verify-audit-v1',
      'checkpoint-audit-v1',
      'prune-idempotency-v1',
      'expire-config-requests-v1',
    ]);
    expect(new Set(specs.map((s) => s.task)).size).toBe(specs.length);
  });

  it('retires only older versions of declared tasks', () => {
    expect(isRetired('expire-approvals-v0', specs)).toBe(true);
    expect(isRetired('expire-approvals-v1', specs)).toBe(false);
    // A newer reaper's schedules survive an older reaper during a rolling deploy.
    expect(isRetired('expire-approvals-v2', specs)).toBe(false);
    expect(isRetired('some-future-task-v1', specs)).toBe(false);
    expect(isRetired('unversioned', specs)).toBe(false);
  });

  it('checks for lost schedulers at least as often as the most frequent task, and at most every 30s', () => {
    expect(localSchedules(settings, specs).schedulerCheckMs).toBe(20_000);
    expect(
      localSchedules({ ...settings, expireEveryMs: 1_000 }, scheduleSpecs({ ...settings, expireEveryMs: 1_000 }))
        .schedulerCheckMs,
    ).toBe(1_000);
    expect(
      localSchedules(
        { ...settings, reconcileEveryMs: 120_000, expireEveryMs: 60_000 },
        scheduleSpecs({ ...settings, reconcileEveryMs: 120_000, expireEveryMs: 60_000 }),
      ).schedulerCheckMs,
    ).toBe(30_000);
  });
});
