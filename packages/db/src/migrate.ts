import { type Migration, type MigrationProvider, Migrator } from 'kysely';
import { createDatabase } from './database.ts';
import * as core from './migrations/0001-core.ts';
import * as notifications from './migrations/0002-notifications.ts';
import * as auditCheckpoints from './migrations/0003-audit-checkpoints.ts';
import * as clientCertificates from './migrations/0004-client-certificates.ts';
import * as auditAppendBatch from './migrations/0005-audit-append-batch.ts';
import * as auditAppendAtCommit from './migrations/0006-audit-append-at-commit.ts';
import * as notificationReconcile from './migrations/0007-notification-reconcile.ts';
import * as notificationUnanswered from './migrations/0008-notification-unanswered.ts';
import * as reconcileWindow from './migrations/0009-reconcile-window.ts';
import * as auditDetailsVerbatim from './migrations/0010-audit-details-verbatim.ts';
import * as pendingQueueIndex from './migrations/0011-pending-queue-index.ts';
import * as auditBatchStaging from './migrations/0012-audit-batch-staging.ts';
import * as outboxNotifyNewestId from './migrations/0013-outbox-notify-newest-id.ts';
import * as outboxDeadLetters from './migrations/0014-outbox-dead-letters.ts';
import * as gateGuardsItself from './migrations/0015-the-gate-guards-itself.ts';
import * as configurationRequests from './migrations/0016-configuration-requests.ts';
import * as intakeKeys from './migrations/0018-intake-keys.ts';
import * as listIndexes from './migrations/0019-list-indexes.ts';

/** Migrations are listed here, in order; a static list works the same under tsx, vitest and a bundle. */
const MIGRATIONS: Record<string, Migration> = {
  '0001-core': core,
  '0002-notifications': notifications,
  '0003-audit-checkpoints': auditCheckpoints,
  '0004-client-certificates': clientCertificates,
  '0005-audit-append-batch': auditAppendBatch,
  '0006-audit-append-at-commit': auditAppendAtCommit,
  '0007-notification-reconcile': notificationReconcile,
  '0008-notification-unanswered': notificationUnanswered,
  '0009-reconcile-window': reconcileWindow,
  '0010-audit-details-verbatim': auditDetailsVerbatim,
  '0011-pending-queue-index': pendingQueueIndex,
  '0012-audit-batch-staging': auditBatchStaging,
  '0013-outbox-notify-newest-id': outboxNotifyNewestId,
  '0014-outbox-dead-letters': outboxDeadLetters,
  '0015-the-gate-guards-itself': gateGuardsItself,
  '0016-configuration-requests': configurationRequests,
  '0018-intake-keys': intakeKeys,
  '0019-list-indexes': listIndexes,
};

const provider: MigrationProvider = { getMigrations: async () => MIGRATIONS };

/** Runs pending migrations. Must connect as the owner role, never the services' role. */
export async function migrateToLatest(ownerUrl: string): Promise<string[]> {
  const { db, close } = createDatabase({
    url: ownerUrl,
    poolSize: 1,
    applicationName: 'countersign-migrate',
    // Each migration's SQL runs once: nothing to gain from keeping statements prepared on the owner's session.
    statementCacheSize: 0,
  });
  try {
    const migrator = new Migrator({ db, provider });
    const { error, results } = await migrator.migrateToLatest();
    if (error) throw error instanceof Error ? error : new Error(String(error));
    return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
  } finally {
    await close();
  }
}
