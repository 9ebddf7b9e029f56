import type { Logger } from '@countersign/observability';

/**
 * Verifies every org's audit hash chain on a schedule (SPEC §1.6) and exports
 * the result as countersign_audit_chain_ok. A broken chain fails the
 * maintenance job, naming the org and the first bad record. The verifier is
 * injected: main.ts passes the ledger's verifyAllChains.
 */
export interface ChainsReport {
  readonly ok: boolean;
  readonly checked: number;
  readonly failures: readonly { org_id: string; first_bad_seq: string | null; reason: string | null }[];
}

export interface VerifyAuditDeps {
  readonly log: Logger;
  readonly verify: () => Promise<ChainsReport>;
  /** Publishes the result to every reaper's countersign_audit_chain_ok (the task runs on one). */
  readonly publish: (ok: boolean) => Promise<void>;
}

export function verifyAuditTask(deps: VerifyAuditDeps) {
  return async (): Promise<{ ok: boolean; checked: number }> => {
    const report = await deps.verify();
    await deps.publish(report.ok);
    const bad = report.failures[0];
    if (bad) {
      const message = `audit chain broken at org ${bad.org_id} record ${bad.first_bad_seq}: ${bad.reason}`;
      deps.log.error({ org_id: bad.org_id, first_bad_seq: bad.first_bad_seq, reason: bad.reason }, message);
      throw new Error(message);
    }
    return { ok: true, checked: report.checked };
  };
}
