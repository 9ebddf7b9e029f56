import { CONFIG_KIND_TEXT, CONFIG_REQUEST_CHECKS, type ConfigRequest, expiryText } from '@countersign/client';
import { Fragment, type ReactNode, useState } from 'react';
import { actorName, type Directory, isEnrollment, principalName, useDirectory } from '../directory.ts';
import { href } from '../router.ts';
import { absolute, Loading, PageHeading, ProblemAlert, StateBadge, Time, useAsync } from '../ui.tsx';

/** One configuration request: the change exactly as it will be applied, who asked and why, and the decision. */
export function ConfigRequestPage({ id }: { id: string }) {
  const d = useDirectory();
  const view = useAsync(() => d.client.getConfigRequest(id), id);
  const crumbs = (
    <p className="crumbs">
      <a href={href.configuration()}>Configuration requests</a> / <code>{id.slice(0, 8)}</code>
    </p>
  );
  if (!view.data) {
    return (
      <>
        {crumbs}
        <PageHeading>Configuration request</PageHeading>
        <ProblemAlert error={view.error} title="Could not load this configuration request" />
        {!view.error && <Loading what="the configuration request" />}
      </>
    );
  }
  const r = view.data;
  const now = new Date();
  return (
    <>
      {crumbs}
      <PageHeading>
        {CONFIG_KIND_TEXT[r.kind] ?? r.kind} <StateBadge state={r.state} />
      </PageHeading>
      <ProblemAlert error={view.error} title="Could not refresh this configuration request" />
      <div className="detail-grid">
        <section aria-labelledby="h-config-request" className="card">
          <h2 id="h-config-request">Request</h2>
          <dl className="facts">
            <dt>Change</dt>
            <dd>{r.summary}</dd>
            <dt>Requested by</dt>
            <dd>{actorName(d, r.requested_by)}</dd>
            <dt>Justification</dt>
            <dd className="justification">{r.justification}</dd>
            <dt>Requested</dt>
            <dd>
              {absolute(r.requested_at)} (<Time iso={r.requested_at} now={now} />)
            </dd>
            <dt>Expires</dt>
            <dd>
              {absolute(r.expires_at)}
              {r.state === 'pending' ? ` (${expiryText(r, now)})` : ''}
            </dd>
            {r.decided_at && (
              <>
                <dt>Decision</dt>
                <dd>
                  <StateBadge state={r.state} /> by {actorName(d, r.decided_by)} at {absolute(r.decided_at)}
                  {r.decision_note ? `: “${r.decision_note}”` : ''}
                </dd>
              </>
            )}
            <dt>Request id</dt>
            <dd>
              <code>{r.id}</code>
            </dd>
          </dl>
        </section>
        <section aria-labelledby="h-config-change" className="card">
          <h2 id="h-config-change">The change, as it will be applied</h2>
          <ChangeView d={d} change={r.change} />
          {r.state === 'pending' && (
            <>
              <h3>Before you approve</h3>
              <p>{CONFIG_REQUEST_CHECKS[r.kind] ?? 'Read the change above with the admin who asked for it.'}</p>
            </>
          )}
        </section>
      </div>
      <ConfigDecision d={d} r={r} onDecided={view.reload} />
    </>
  );
}

/** Ids the approver must recognise are shown with the name behind them. */
function value(d: Directory, key: string, v: unknown): ReactNode {
  if (v === null || v === undefined || v === '') return <span className="muted">—</span>;
  if (Array.isArray(v)) {
    if (v.length === 0) return <span className="muted">none</span>;
    return (
      <ul className="plain">
        {v.map((x) => (
          <li key={String(x)}>{value(d, key, x)}</li>
        ))}
      </ul>
    );
  }
  if (typeof v === 'object') return <code className="wrap">{JSON.stringify(v)}</code>;
  const text = String(v);
  if ((key === 'approvers' || key === 'principal_id') && d.principals.has(text)) {
    return (
      <>
        {principalName(d, text)} <code className="muted">{text}</code>
      </>
    );
  }
  return <code className="wrap">{text}</code>;
}

function ChangeView({ d, change }: { d: Directory; change: unknown }) {
  if (!change || typeof change !== 'object' || Array.isArray(change)) {
    return <code className="wrap">{JSON.stringify(change)}</code>;
  }
  return (
    <dl className="facts change">
      {Object.entries(change as Record<string, unknown>).map(([k, v]) => (
        <Fragment key={k}>
          <dt>{k}</dt>
          <dd>{value(d, k, v)}</dd>
        </Fragment>
      ))}
    </dl>
  );
}

/**
 * Approve and reject (a note is required to reject) for admins, and withdraw
 * (a reason is required). The server decides who may: its refusal (the
 * requester, an admin related to it by creation, an enrollment key, already
 * decided) is shown as it is.
 */
function ConfigDecision({ d, r, onDecided }: { d: Directory; r: ConfigRequest; onDecided: () => Promise<void> }) {
  const [note, setNote] = useState('');
  const [reason, setReason] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [done, setDone] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [noteMissing, setNoteMissing] = useState(false);
  const [reasonMissing, setReasonMissing] = useState(false);

  if (r.state !== 'pending') {
    return done ? <output className="alert alert-ok block">{done}</output> : null;
  }
  if (d.me.role !== 'admin') {
    return (
      <section className="card" aria-labelledby="h-config-decide">
        <h2 id="h-config-decide">Decision</h2>
        <p>Your role ({d.me.role}) can read configuration requests; another admin decides them.</p>
      </section>
    );
  }
  const mine = r.requested_by === d.me.id;
  const act = async (what: 'approve' | 'reject' | 'cancel') => {
    setError(null);
    setDone(null);
    if (what === 'reject' && !note.trim()) {
      setNoteMissing(true);
      document.getElementById('config-note')?.focus();
      return;
    }
    if (what === 'cancel' && !reason.trim()) {
      setReasonMissing(true);
      document.getElementById('config-reason')?.focus();
      return;
    }
    setBusy(true);
    try {
      const after =
        what === 'approve'
          ? await d.client.approveConfigRequest(r.id, note.trim() || undefined)
          : what === 'reject'
            ? await d.client.rejectConfigRequest(r.id, note.trim())
            : await d.client.cancelConfigRequest(r.id, reason.trim());
      setDone(
        after.state === 'approved'
          ? 'Approved. The change is applied.'
          : after.state === 'rejected'
            ? 'Rejected. Nothing changes.'
            : after.state === 'cancelled'
              ? 'Withdrawn. Nothing changes.'
              : `Configuration request ${after.state}.`,
      );
      setNote('');
      setReason('');
      await onDecided();
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  return (
    <section className="card decision" aria-labelledby="h-config-decide">
      <h2 id="h-config-decide">Decision</h2>
      {mine && (
        <p className="alert alert-info">
          You asked for this change. Two-person integrity: another admin has to approve it; you can withdraw it.
        </p>
      )}
      {isEnrollment(d) ? (
        <p className="alert alert-info">
          You signed in with an enrollment key: it cannot approve or reject. Mint your own key (see the banner at the
          top of the page), then decide.
        </p>
      ) : (
        <>
          <div className="field">
            <label htmlFor="config-note">
              Note {noteMissing ? '(required to reject)' : '(required to reject, optional to approve)'}
            </label>
            <textarea
              id="config-note"
              rows={3}
              maxLength={4000}
              value={note}
              aria-invalid={noteMissing || undefined}
              aria-describedby={noteMissing ? 'config-note-error' : undefined}
              onChange={(e) => {
                setNote(e.target.value);
                if (e.target.value.trim()) setNoteMissing(false);
              }}
            />
            {noteMissing && (
              <p id="config-note-error" className="field-error" role="alert">
                Write a note: the admin who asked reads why the change was rejected.
              </p>
            )}
          </div>
          <div className="actions">
            <button type="button" className="primary" disabled={busy} onClick={() => void act('approve')}>
              Approve and apply
            </button>
            <button type="button" className="danger" disabled={busy} onClick={() => void act('reject')}>
              Reject
            </button>
          </div>
        </>
      )}
      <details className="void" open={mine || undefined}>
        <summary>Withdraw this request</summary>
        <div className="field">
          <label htmlFor="config-reason">Reason (required)</label>
          <input
            id="config-reason"
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
              Give a reason for withdrawing it.
            </p>
          )}
        </div>
        <button type="button" className="danger" disabled={busy} onClick={() => void act('cancel')}>
          Withdraw request
        </button>
      </details>
      <ProblemAlert error={error} title="The server refused this decision" />
      {done && <output className="alert alert-ok block">{done}</output>}
    </section>
  );
}
