import type { ChainReport } from '@countersign/db';

/**
 * On-demand verification of an org's audit chain (GET /api/v1/audit/verify)
 * walks the whole chain, so it is shared and remembered rather than run per
 * call: at most one verification of an org runs at a time (callers that
 * arrive meanwhile wait for it and share its answer; a call for the other
 * mode waits, then runs its own), and an answer is served again for
 * AUDIT_VERIFY_CACHE_MS from when its verification started. A failure to run
 * (the database gone) is not remembered.
 *
 * Each api replica throttles on its own: with R replicas an org costs at most
 * R verifications at a time and R per window. That bound is enough (the
 * reaper's scheduled verification and the start-up check run regardless), and
 * keeps Redis out of an auditor's read.
 */
export const AUDIT_VERIFY_CACHE_MS = 30_000;

export type VerifyMode = 'full' | 'tail';

export interface VerifyAnswer {
  readonly report: ChainReport;
  /** When the verification started: the answer describes the chain as it was then. */
  readonly verifiedAt: Date;
  /** True when this call did not start the verification (it was remembered, or already running). */
  readonly cached: boolean;
}

interface Done {
  readonly report: ChainReport;
  readonly verifiedAt: Date;
}

interface OrgState {
  running: { mode: VerifyMode; result: Promise<Done> } | null;
  readonly done: Map<VerifyMode, Done>;
}

export function verifyThrottle(
  run: (orgId: string, mode: VerifyMode) => Promise<ChainReport>,
  opts: { now?: () => number; cacheMs?: number } = {},
): (orgId: string, mode: VerifyMode) => Promise<VerifyAnswer> {
  const now = opts.now ?? Date.now;
  const cacheMs = opts.cacheMs ?? AUDIT_VERIFY_CACHE_MS;
  const orgs = new Map<string, OrgState>();

  const fresh = (d: Done | undefined): d is Done => d !== undefined && now() - d.verifiedAt.getTime() < cacheMs;

  return async (orgId, mode) => {
    for (;;) {
      let state = orgs.get(orgId);
      if (state === undefined) {
        state = { running: null, done: new Map() };
        orgs.set(orgId, state);
      }
      const remembered = state.done.get(mode);
      if (fresh(remembered)) return { ...remembered, cached: true };
      const running = state.running;
      if (running !== null) {
        if (running.mode === mode) return { ...(await running.result), cached: true };
        // One verification of an org at a time: wait for the other mode's, then look again.
        await running.result.catch(() => undefined);
        continue;
      }
      const verifiedAt = new Date(now());
      const current: OrgState = state;
      const result = run(orgId, mode).then(
        (report) => {
          const done = { report, verifiedAt };
          current.done.set(mode, done);
          current.running = null;
          return done;
        },
        (err: unknown) => {
          current.running = null;
          throw err;
        },
      );
      current.running = { mode, result };
      // Forget orgs with nothing fresh left, so the map holds only recent callers.
      for (const [id, s] of orgs) {
        if (s.running === null && ![...s.done.values()].some(fresh)) orgs.delete(id);
      }
      return { ...(await result), cached: false };
    }
  };
}
