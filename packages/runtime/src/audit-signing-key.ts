import { type AuditSigningKey, AuditSigningKeyError, openAuditSigningKey } from '@countersign/db';
import type { ServiceRuntime } from './index.ts';

/**
 * The audit checkpoint signing key of a service that signs or verifies
 * checkpoints (api, reaper), checked against the database before the service
 * does anything with it (openAuditSigningKey): a key the newest checkpoints do
 * not name stops the process with one line naming
 * COUNTERSIGN_AUDIT_SIGNING_KEY_FILE and exit code 78, like bad configuration;
 * a rotation the operator asked for goes on with a WARN (and its audit records).
 */
export async function openSigningKeyOrExit(rt: ServiceRuntime, waitForDatabaseMs = 30_000): Promise<AuditSigningKey> {
  const { config, log, database, name } = rt;
  const file = config.auditSigningKeyFile;
  const rotateFrom = config.auditSigningKeyRotateFrom;
  const deadline = Date.now() + waitForDatabaseMs;
  try {
    let opened: Awaited<ReturnType<typeof openAuditSigningKey>>;
    for (;;) {
      try {
        opened = await openAuditSigningKey(database, { file, create: config.auditSigningKeyCreate, rotateFrom });
        break;
      } catch (err) {
        // The database may still be starting (compose, a failover): the key is checked against it, so wait a while.
        if (err instanceof AuditSigningKeyError || Date.now() > deadline) throw err;
        log.warn(
          { err: err instanceof Error ? err.message : String(err) },
          'cannot check the audit signing key yet; retrying',
        );
        await new Promise((r) => setTimeout(r, 2_000));
      }
    }
    const { key, created, rotation } = opened;
    if (created) {
      log.warn(
        { file, key_id: key.keyId },
        'generated a new audit checkpoint signing key (no checkpoint exists yet); give its public key (.pub) to your auditors',
      );
    }
    if (rotation) {
      log.warn(
        { file, from_key_id: rotation.fromKeyId, to_key_id: rotation.toKeyId, orgs: rotation.orgs },
        `audit signing key rotated from ${rotation.fromKeyId} to ${rotation.toKeyId} as COUNTERSIGN_AUDIT_SIGNING_KEY_ROTATE_FROM asks: checkpoints signed by the old key are no longer verified; give the new public key (.pub) to your auditors`,
      );
      for (const f of rotation.failures) {
        log.error(
          { org_id: f.org_id, err: f.error },
          `audit chain of org ${f.org_id} did not verify, so the new signing key signed no checkpoint for it`,
        );
      }
    } else if (rotateFrom !== null && rotateFrom !== key.keyId) {
      log.warn(
        { rotate_from: rotateFrom, key_id: key.keyId },
        'COUNTERSIGN_AUDIT_SIGNING_KEY_ROTATE_FROM names a key no newest checkpoint was signed by: nothing to rotate; remove the setting',
      );
    }
    return key;
  } catch (err) {
    if (err instanceof AuditSigningKeyError) {
      log.fatal({ variable: err.variable, err: err.message }, `refusing to start: ${err.message}`);
      process.stderr.write(`countersign-${name}: ${err.message}\n`);
      process.exit(78);
    }
    const message = err instanceof Error ? err.message : String(err);
    log.fatal({ err: message }, 'refusing to start: cannot check the audit signing key against the database');
    process.stderr.write(`countersign-${name}: cannot check the audit signing key against the database: ${message}\n`);
    process.exit(1);
  }
}
