import type { ChainReport } from '@countersign/db';
import { describe, expect, it } from 'vitest';
import { AUDIT_VERIFY_CACHE_MS, verifyThrottle } from './audit-verify-throttle.ts';

const report = (checked: number): ChainReport => ({
  ok: true,
  checked,
  head: { seq: String(checked), hash: '0'.repeat(64) },
  first_bad_seq: null,
  reason: null,
  checkpoint: null,
});

/** A verification that finishes when the test says so, counting how often it ran. */
function gatedVerifier() {
  const calls: { orgId: string; mode: string; finish: (r: ChainReport) => void; fail: (e: Error) => void }[] = [];
  const run = (orgId: string, mode: 'full' | 'tail') =>
    new Promise<ChainReport>((resolve, reject) => {
      calls.push({ orgId, mode, finish: resolve, fail: reject });
    });
  return { calls, run };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('verifyThrottle', () => {
  it('runs one verification for concurrent callers of one org, who share its result', async () => {
    const v = gatedVerifier();
    let now = 1_000_000;
    const verify = verifyThrottle(v.run, { now: () => now });
    const answers = Promise.all(Array.from({ length: 20 }, () => verify('org-a', 'full')));
    await tick();
    expect(v.calls).toHaveLength(1);
    now += 500;
    v.calls[0]?.finish(report(7));
    const all = await answers;
    expect(new Set(all.map((a) => a.report))).toEqual(new Set([all[0]?.report]));
    expect(all.every((a) => a.verifiedAt.getTime() === 1_000_000)).toBe(true);
    expect(all.filter((a) => !a.cached)).toHaveLength(1);
  });

  it(`serves a result for ${AUDIT_VERIFY_CACHE_MS / 1000} s from when its verification started, then verifies again`, async () => {
    const v = gatedVerifier();
    let now = 0;
    const verify = verifyThrottle(v.run, { now: () => now });
    const first = verify('org-a', 'full');
    await tick();
    v.calls[0]?.finish(report(1));
    expect((await first).cached).toBe(false);

    now = AUDIT_VERIFY_CACHE_MS - 1;
    const again = await verify('org-a', 'full');
    expect(again).toMatchObject({ cached: true, verifiedAt: new Date(0) });
    expect(v.calls).toHaveLength(1);

    now = AUDIT_VERIFY_CACHE_MS;
    const later = verify('org-a', 'full');
    await tick();
    expect(v.calls).toHaveLength(2);
    v.calls[1]?.finish(report(2));
    expect(await later).toMatchObject({ cached: false, verifiedAt: new Date(AUDIT_VERIFY_CACHE_MS) });
  });

  it('never runs two verifications of one org at once, whatever the modes; other orgs are not held up', async () => {
    const v = gatedVerifier();
    const verify = verifyThrottle(v.run, { now: () => 0 });
    const full = verify('org-a', 'full');
    const tail = verify('org-a', 'tail');
    const other = verify('org-b', 'full');
    await tick();
    expect(v.calls.map((c) => `${c.orgId}:${c.mode}`)).toEqual(['org-a:full', 'org-b:full']);
    v.calls[0]?.finish(report(1));
    await full;
    await tick();
    expect(v.calls.map((c) => `${c.orgId}:${c.mode}`)).toEqual(['org-a:full', 'org-b:full', 'org-a:tail']);
    v.calls[2]?.finish(report(3));
    expect((await tail).report.checked).toBe(3);
    v.calls[1]?.finish(report(2));
    expect((await other).report.checked).toBe(2);
  });

  it('caches no failure to run: every waiting caller gets the error, the next call runs again', async () => {
    const v = gatedVerifier();
    const verify = verifyThrottle(v.run, { now: () => 0 });
    const a = verify('org-a', 'full');
    const b = verify('org-a', 'full');
    await tick();
    v.calls[0]?.fail(new Error('database gone'));
    await expect(a).rejects.toThrow('database gone');
    await expect(b).rejects.toThrow('database gone');
    const c = verify('org-a', 'full');
    await tick();
    expect(v.calls).toHaveLength(2);
    v.calls[1]?.finish(report(1));
    expect((await c).cached).toBe(false);
  });

  it('caches a broken chain like a whole one (the answer names the first bad record either way)', async () => {
    const v = gatedVerifier();
    const verify = verifyThrottle(v.run, { now: () => 0 });
    const first = verify('org-a', 'full');
    await tick();
    v.calls[0]?.finish({ ...report(5), ok: false, first_bad_seq: '3', reason: 'hash mismatch' });
    expect((await first).report.ok).toBe(false);
    expect(await verify('org-a', 'full')).toMatchObject({ cached: true, report: { first_bad_seq: '3' } });
    expect(v.calls).toHaveLength(1);
  });
});
