import type { AuditVerifyMode } from '@countersign/config';
import { type AuditDatabase, type Keyring, verifyAllChains } from '@countersign/db';
import type { Logger } from '@countersign/observability';

/**
 * The api's start-up check of the audit ledger (SPEC §1.6,
 * COUNTERSIGN_AUDIT_VERIFY_ON_START): until every org's chain has verified,
 * the api is not ready; a broken chain keeps it unready and is reported in
 * one log line that names the org and the first bad record.
 */
export interface ChainStatus {
  ok: boolean;
  detail?: string;
}

export interface AuditStartupCheck {
  /** The readiness check (`audit_chain`). */
  status(): Promise<ChainStatus>;
  /** Runs the verification once; never throws (a failure to run is a failure). */
  run(): Promise<ChainStatus>;
}

export function auditStartupCheck(opts: {
  database: AuditDatabase;
  mode: AuditVerifyMode;
  keyring?: Keyring;
  log: Logger;
  /** Sets countersign_audit_chain_ok. */
  onResult?: (ok: boolean) => void;
}): AuditStartupCheck {
  let current: ChainStatus =
    opts.mode === 'off' ? { ok: true, detail: 'verification disabled' } : { ok: false, detail: 'verification pending' };
  const run = async (): Promise<ChainStatus> => {
    if (opts.mode === 'off') return current;
    const started = Date.now();
    try {
      const report = await verifyAllChains(opts.database, {
        mode: opts.mode,
        ...(opts.keyring ? { keyring: opts.keyring } : {}),
      });
      const bad = report.failures[0];
      if (bad) {
        current = { ok: false, detail: `org ${bad.org_id} record ${bad.first_bad_seq ?? '-'}: ${bad.reason}` };
        opts.log.error(
          {
            org_id: bad.org_id,
            first_bad_seq: bad.first_bad_seq,
            reason: bad.reason,
            broken_orgs: report.failures.length,
          },
          `audit chain broken at org ${bad.org_id} record ${bad.first_bad_seq ?? '-'}: ${bad.reason}; refusing readiness`,
        );
      } else {
        current = { ok: true };
        opts.log.info({ checked: report.checked, ms: Date.now() - started, mode: opts.mode }, 'audit chain verified');
      }
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      current = { ok: false, detail: `audit chain verification failed to run: ${message}` };
      opts.log.error({ err: message }, `audit chain verification failed to run: ${message}; refusing readiness`);
    }
    opts.onResult?.(current.ok);
    return current;
  };
  return { status: async () => current, run };
}
