import { ApiError, type AuditCheckpoint, type CountersignClient } from '@countersign/client';
import { useDirectory } from '../directory.ts';
import { absolute, Loading, PageHeading, ProblemAlert, useAsync } from '../ui.tsx';

type Availability<T> = { available: true; value: T } | { available: false; reason: string };

/** A route this server does not have, or a role that may not read the ledger, is a state to show, not an error. */
async function optional<T>(load: () => Promise<T>): Promise<Availability<T>> {
  try {
    return { available: true, value: await load() };
  } catch (e) {
    if (e instanceof ApiError && e.status === 404) {
      return { available: false, reason: `This server does not offer ${e.method} ${e.path} yet.` };
    }
    if (e instanceof ApiError && e.status === 403) {
      return { available: false, reason: 'Only admins and auditors can read the audit ledger.' };
    }
    throw e;
  }
}

async function latestCheckpoint(client: CountersignClient): Promise<AuditCheckpoint | null> {
  let best: AuditCheckpoint | null = null;
  for await (const items of client.pages(client.listAuditCheckpoints, { limit: 500 }, 20)) {
    for (const c of items) if (!best || BigInt(c.seq) > BigInt(best.seq)) best = c;
  }
  return best;
}

/** The audit chain's state (verified on demand by the server) and the latest signed checkpoint. */
export function AuditPage() {
  const d = useDirectory();
  const view = useAsync(async () => {
    const [verify, checkpoint] = await Promise.all([
      optional(() => d.client.verifyAudit()),
      optional(() => latestCheckpoint(d.client)),
    ]);
    return { verify, checkpoint };
  }, 'audit');

  return (
    <>
      <PageHeading>Audit ledger</PageHeading>
      <ProblemAlert error={view.error} title="Could not check the audit ledger" />
      {!view.data && !view.error && <Loading what="the audit status" />}
      {view.data && (
        <>
          <section className="card" aria-labelledby="h-chain">
            <h2 id="h-chain">Hash chain</h2>
            {!view.data.verify.available ? (
              <output className="alert alert-info block">
                Chain verification is not available. {view.data.verify.reason}
              </output>
            ) : view.data.verify.value.ok ? (
              <div className="alert alert-ok" aria-live="polite">
                <p className="alert-title">Chain intact</p>
                <p>
                  {view.data.verify.value.checked} records checked. Head: record {view.data.verify.value.head.seq}, hash{' '}
                  <code className="wrap">{view.data.verify.value.head.hash}</code>
                </p>
              </div>
            ) : (
              <div className="alert alert-error" role="alert">
                <p className="alert-title">Chain BROKEN at record {view.data.verify.value.first_bad_seq}</p>
                <p>{view.data.verify.value.reason ?? 'A record does not match its hash.'}</p>
                <p>{view.data.verify.value.checked} records checked.</p>
              </div>
            )}
            <button type="button" onClick={() => void view.reload()} disabled={view.loading}>
              {view.loading ? 'Verifying…' : 'Verify again'}
            </button>
          </section>
          <section className="card" aria-labelledby="h-checkpoint">
            <h2 id="h-checkpoint">Latest checkpoint</h2>
            {!view.data.checkpoint.available ? (
              <output className="alert alert-info block">
                Checkpoints are not available. {view.data.checkpoint.reason}
              </output>
            ) : view.data.checkpoint.value ? (
              <dl className="facts">
                <dt>Record</dt>
                <dd>{view.data.checkpoint.value.seq}</dd>
                <dt>Signed at</dt>
                <dd>{absolute(view.data.checkpoint.value.at)}</dd>
                <dt>Head hash</dt>
                <dd>
                  <code className="wrap">{view.data.checkpoint.value.head_hash}</code>
                </dd>
                <dt>Signing key</dt>
                <dd>
                  <code>{view.data.checkpoint.value.key_id}</code>
                </dd>
                <dt>Signature</dt>
                <dd>
                  <code className="wrap">{view.data.checkpoint.value.signature}</code>
                </dd>
              </dl>
            ) : (
              <p className="empty">No checkpoint has been signed yet.</p>
            )}
          </section>
        </>
      )}
    </>
  );
}
