import { type Approval, type ApprovalDiff, expiryText, type Job, votesSummary } from '@countersign/client';
import { useState } from 'react';
import { canDecide, type Directory, isEnrollment, principalName, profileName, useDirectory } from '../directory.ts';
import { href } from '../router.ts';
import { absolute, EnvBadge, Loading, PageHeading, ProblemAlert, StateBadge, Time, useAsync } from '../ui.tsx';

/** One request: who, what, why, the votes, what a renewal changes, and the decision. */
export function ApprovalPage({ id }: { id: string }) {
  const d = useDirectory();
  const view = useAsync(async () => {
    const [approval, diff] = await Promise.all([d.client.getApproval(id), d.client.getApprovalDiff(id)]);
    const job = await d.client.getJob(approval.job_id);
    return { approval, diff, job };
  }, id);

  if (!view.data) {
    return (
      <>
        <PageHeading>Approval request</PageHeading>
        <ProblemAlert error={view.error} title="Could not load this request" />
        {!view.error && <Loading what="the request" />}
        <p>
          <a href={href.queue()}>Back to the queue</a>
        </p>
      </>
    );
  }
  const { approval: a, diff, job } = view.data;
  const cn = diff.proposed.common_name;
  return (
    <>
      <p className="crumbs">
        <a href={href.queue()}>Approval queue</a> / <code>{a.id.slice(0, 8)}</code>
      </p>
      <PageHeading>
        {diff.kind === 'renewal' ? 'Renewal' : 'New certificate'} for {cn} <StateBadge state={a.state} />
      </PageHeading>
      <ProblemAlert error={view.error} title="Could not refresh this request" />
      <div className="detail-grid">
        <section aria-labelledby="h-summary" className="card">
          <h2 id="h-summary">Request</h2>
          <Summary d={d} a={a} job={job} />
        </section>
        <section aria-labelledby="h-diff" className="card">
          <h2 id="h-diff">{diff.kind === 'renewal' ? 'What this renewal changes' : 'What will be issued'}</h2>
          <DiffView diff={diff} />
        </section>
      </div>
      <Decision d={d} a={a} onDecided={view.reload} />
    </>
  );
}

function Summary({ d, a, job }: { d: Directory; a: Approval; job: Job }) {
  const now = new Date();
  return (
    <dl className="facts">
      <dt>Request id</dt>
      <dd>
        <code>{a.id}</code>
      </dd>
      <dt>Requested by</dt>
      <dd>
        {principalName(d, a.requested_by)} <span className="muted">({a.requester_type})</span>
      </dd>
      <dt>Profile</dt>
      <dd>
        {profileName(d, a.profile_id)} <EnvBadge env={a.environment} />
      </dd>
      <dt>Domains</dt>
      <dd>
        <ul className="plain">
          {a.domains.map((n) => (
            <li key={n}>
              <code>{n}</code>
            </li>
          ))}
        </ul>
      </dd>
      <dt>Justification</dt>
      <dd className="justification">{a.justification}</dd>
      <dt>Requested</dt>
      <dd>
        {absolute(a.requested_at)} (<Time iso={a.requested_at} now={now} />)
      </dd>
      <dt>Expires</dt>
      <dd>
        {absolute(a.expires_at)}
        {a.state === 'pending' ? ` (${expiryText(a, now)})` : ''}
      </dd>
      <dt>Votes</dt>
      <dd>
        {votesSummary(a)} approvals
        {a.votes.length > 0 && (
          <ul className="plain votes">
            {a.votes.map((v) => (
              <li key={v.voter_id}>
                {principalName(d, v.voter_id)}, {absolute(v.voted_at)}
                {v.note ? `: “${v.note}”` : ''}
              </li>
            ))}
          </ul>
        )}
      </dd>
      {a.decided_at && (
        <>
          <dt>Decision</dt>
          <dd>
            <StateBadge state={a.state} /> by {principalName(d, a.decided_by)} at {absolute(a.decided_at)}
            {a.decision_note ? `: “${a.decision_note}”` : ''}
          </dd>
        </>
      )}
      <dt>Job</dt>
      <dd>
        <StateBadge state={job.status} kind="job" />
        {job.error ? ` ${job.error}` : ''}
      </dd>
      <dt>Certificate</dt>
      <dd>
        <a href={href.certificate(a.certificate_id)}>
          {job.status === 'completed' ? 'View the issued certificate' : 'View the certificate'}
        </a>
      </dd>
    </dl>
  );
}

const fp = (hex: string) => `${hex.slice(0, 16).replace(/(..)(?!$)/g, '$1:')}…`;

export function DiffView({ diff }: { diff: ApprovalDiff }) {
  const rows = [
    ...diff.names_added.map((n) => ({ n, change: 'added' as const })),
    ...diff.names_removed.map((n) => ({ n, change: 'removed' as const })),
    ...diff.names_kept.map((n) => ({ n, change: 'unchanged' as const })),
  ];
  const cur = diff.current;
  return (
    <div className="diff">
      {!cur && (
        <p className="muted">
          {diff.kind === 'renewal'
            ? 'The certificate it renews was never issued, so there is nothing to compare.'
            : 'A new certificate: there is no previous version to compare with.'}
        </p>
      )}
      {cur && (
        <p className="muted">
          Compared with the current certificate, serial <code>{cur.serial}</code>, valid until {absolute(cur.not_after)}
          .
        </p>
      )}
      <table className="names">
        <caption>Names</caption>
        <thead>
          <tr>
            <th scope="col">Change</th>
            <th scope="col">DNS name</th>
          </tr>
        </thead>
        <tbody>
          {rows.map(({ n, change }) => (
            <tr key={`${change}-${n}`} className={`name-${change}`}>
              <td>
                <span className={`change change-${change}`}>
                  <span aria-hidden="true">{change === 'added' ? '+ ' : change === 'removed' ? '− ' : '= '}</span>
                  {change === 'unchanged' ? 'unchanged' : change}
                </span>
              </td>
              <td>
                <code>{n}</code>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {diff.common_name_changed && cur && (
        <p className="warn">
          Common name changes from <code>{cur.common_name}</code> to <code>{diff.proposed.common_name}</code>.
        </p>
      )}
      <dl className="facts">
        <dt>Key</dt>
        <dd>
          {diff.key_change === 'reused' && (
            <>
              <strong>Reused</strong>: the same {diff.proposed.key.algorithm} key as the current certificate (
              <code>{fp(diff.proposed.key.spki_sha256)}</code>).
            </>
          )}
          {diff.key_change === 'changed' && cur && (
            <>
              <strong>Changed</strong>: {cur.key.algorithm} <code>{fp(cur.key.spki_sha256)}</code> →{' '}
              {diff.proposed.key.algorithm} <code>{fp(diff.proposed.key.spki_sha256)}</code>
            </>
          )}
          {diff.key_change === 'new' && (
            <>
              New {diff.proposed.key.algorithm} key <code>{fp(diff.proposed.key.spki_sha256)}</code>
            </>
          )}
        </dd>
        <dt>Validity</dt>
        <dd>
          {cur ? (
            <>
              {diff.current_validity_days} days ({absolute(cur.not_before)} – {absolute(cur.not_after)}) →{' '}
              {diff.proposed.validity_days} days from issuance
            </>
          ) : (
            <>{diff.proposed.validity_days} days from issuance</>
          )}
        </dd>
      </dl>
    </div>
  );
}

/**
 * Approve and reject (a note is required to reject) for approvers; void for
 * admins. The server decides who may: its refusal (two-person integrity,
 * not an approver of this profile, already decided) is shown as it is.
 */
function Decision({ d, a, onDecided }: { d: Directory; a: Approval; onDecided: () => Promise<void> }) {
  const [note, setNote] = useState('');
  const [reason, setReason] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [done, setDone] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [noteMissing, setNoteMissing] = useState(false);
  const [reasonMissing, setReasonMissing] = useState(false);

  if (a.state !== 'pending') {
    return done ? <output className="alert alert-ok block">{done}</output> : null;
  }
  if (!canDecide(d)) {
    return (
      <section className="card" aria-labelledby="h-decide">
        <h2 id="h-decide">Decision</h2>
        <p>
          Your role ({d.me.role}) cannot decide requests. Approvers of the {a.environment} profile or an admin will.
        </p>
      </section>
    );
  }
  if (isEnrollment(d)) {
    return (
      <section className="card" aria-labelledby="h-decide">
        <h2 id="h-decide">Decision</h2>
        <p>
          You signed in with an enrollment key: it can read and request, but never approve or reject. Mint your own key
          (the banner at the top of the page), then decide.
        </p>
      </section>
    );
  }
  const mine = a.requested_by === d.me.id;
  const act = async (what: 'approve' | 'reject' | 'void') => {
    setError(null);
    setDone(null);
    if (what === 'reject' && !note.trim()) {
      setNoteMissing(true);
      document.getElementById('decision-note')?.focus();
      return;
    }
    if (what === 'void' && !reason.trim()) {
      setReasonMissing(true);
      document.getElementById('void-reason')?.focus();
      return;
    }
    setBusy(true);
    try {
      const r =
        what === 'approve'
          ? await d.client.approve(a.id, note.trim() ? { note: note.trim() } : {})
          : what === 'reject'
            ? await d.client.reject(a.id, { note: note.trim() })
            : await d.client.voidApproval(a.id, { reason: reason.trim() });
      setDone(
        r.state === 'approved'
          ? 'Approved. The job is released for issuance.'
          : r.state === 'pending'
            ? `Your approval is recorded (${votesSummary(r)}); more approvers are needed.`
            : r.state === 'rejected'
              ? 'Rejected. Nothing will be issued.'
              : `Request ${r.state}.`,
      );
      setNote('');
      await onDecided();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <section className="card decision" aria-labelledby="h-decide">
      <h2 id="h-decide">Decision</h2>
      {mine && (
        <p className="alert alert-info">
          You requested this certificate. Two-person integrity: another approver has to decide it.
        </p>
      )}
      <div className="field">
        <label htmlFor="decision-note">
          Note {noteMissing ? '(required to reject)' : '(required to reject, optional to approve)'}
        </label>
        <textarea
          id="decision-note"
          rows={3}
          maxLength={4000}
          value={note}
          aria-invalid={noteMissing || undefined}
          aria-describedby={noteMissing ? 'note-error' : undefined}
          onChange={(e) => {
            setNote(e.target.value);
            if (e.target.value.trim()) setNoteMissing(false);
          }}
        />
        {noteMissing && (
          <p id="note-error" className="field-error" role="alert">
            Write a note: the requester reads why the request was rejected.
          </p>
        )}
      </div>
      <div className="actions">
        <button type="button" className="primary" disabled={busy} onClick={() => void act('approve')}>
          Approve
        </button>
        <button type="button" className="danger" disabled={busy} onClick={() => void act('reject')}>
          Reject
        </button>
      </div>
      {d.me.role === 'admin' && (
        <details className="void">
          <summary>Void this request (admin)</summary>
          <div className="field">
            <label htmlFor="void-reason">Reason (required)</label>
            <input
              id="void-reason"
              type="text"
              maxLength={4000}
              value={reason}
              aria-invalid={reasonMissing || undefined}
              onChange={(e) => {
                setReason(e.target.value);
                if (e.target.value.trim()) setReasonMissing(false);
              }}
            />
            {reasonMissing && (
              <p className="field-error" role="alert">
                Give a reason for voiding.
              </p>
            )}
          </div>
          <button type="button" className="danger" disabled={busy} onClick={() => void act('void')}>
            Void request
          </button>
        </details>
      )}
      <ProblemAlert error={error} title="The server refused this decision" />
      {done && <output className="alert alert-ok block">{done}</output>}
    </section>
  );
}
