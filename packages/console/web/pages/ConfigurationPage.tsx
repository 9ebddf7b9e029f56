import { CONFIG_KIND_TEXT, type ConfigRequest, expiryText } from '@countersign/client';
import { useEffect, useState } from 'react';
import { actorName, type Directory, useDirectory } from '../directory.ts';
import { href, navigate } from '../router.ts';
import { Loading, PageHeading, ProblemAlert, StateBadge, Time, useAsync } from '../ui.tsx';

type State = ConfigRequest['state'] | 'all';
const STATES: State[] = ['pending', 'approved', 'rejected', 'expired', 'cancelled', 'all'];
const PAGE_SIZE = 25;

/**
 * Configuration requests, newest first: the changes that could weaken the
 * gate, waiting for a second admin (pending) or decided. Admins decide on a
 * request's page; auditors read.
 */
export function ConfigurationPage({ query }: { query: URLSearchParams }) {
  const d = useDirectory();
  const raw = query.get('state') ?? 'pending';
  const state: State = (STATES as string[]).includes(raw) ? (raw as State) : 'pending';
  const [cursors, setCursors] = useState<(string | undefined)[]>([undefined]);
  const cursor = cursors[cursors.length - 1];

  // biome-ignore lint/correctness/useExhaustiveDependencies: reset on filter change only
  useEffect(() => {
    setCursors([undefined]);
  }, [state]);

  const page = useAsync(
    () =>
      d.client.listConfigRequests({
        limit: PAGE_SIZE,
        ...(state !== 'all' ? { state } : {}),
        ...(cursor ? { cursor } : {}),
      }),
    `${state}|${cursor ?? ''}`,
  );
  const items = page.data?.items ?? [];
  const now = new Date();
  return (
    <>
      <PageHeading>Configuration requests</PageHeading>
      <p className="muted">
        Once the org is two-person ready, every change that could weaken the gate (new admins and operators, approvers,
        weaker profiles, keys or client certificates made for someone else) waits here for a second admin.{' '}
        {d.me.role === 'admin'
          ? 'Open a request to approve, reject or withdraw it.'
          : 'You can read them; admins decide them.'}
      </p>
      <form className="filters" aria-label="Filter configuration requests" onSubmit={(e) => e.preventDefault()}>
        <div className="field">
          <label htmlFor="f-config-state">State</label>
          <select
            id="f-config-state"
            value={state}
            onChange={(e) => navigate(href.configuration(e.target.value === 'pending' ? undefined : e.target.value))}
          >
            {STATES.map((s) => (
              <option key={s} value={s}>
                {s === 'all' ? 'All states' : s[0]?.toUpperCase() + s.slice(1)}
              </option>
            ))}
          </select>
        </div>
        <div className="field live">
          <button type="button" onClick={() => void page.reload()}>
            Refresh now
          </button>
        </div>
      </form>
      <ProblemAlert error={page.error} title="Could not load the configuration requests" />
      {!page.data && !page.error && <Loading what="the configuration requests" />}
      {page.data && items.length === 0 && (
        <p className="empty">No {state === 'all' ? '' : `${state} `}configuration requests.</p>
      )}
      {items.length > 0 && (
        <table className="queue config">
          <caption className="sr-only">{state === 'all' ? 'All' : state} configuration requests, newest first</caption>
          <thead>
            <tr>
              <th scope="col">Request</th>
              <th scope="col">Change</th>
              <th scope="col">Requested by</th>
              <th scope="col">Justification</th>
              <th scope="col">Requested</th>
              <th scope="col">Expires in</th>
              <th scope="col">Status</th>
            </tr>
          </thead>
          <tbody>
            {items.map((r) => (
              <Row key={r.id} d={d} r={r} now={now} />
            ))}
          </tbody>
        </table>
      )}
      <nav className="pager" aria-label="Configuration request pages">
        <button type="button" disabled={cursors.length <= 1} onClick={() => setCursors((c) => c.slice(0, -1))}>
          ← Newer
        </button>
        <span>Page {cursors.length}</span>
        <button
          type="button"
          disabled={!page.data?.next_cursor}
          onClick={() => {
            const next = page.data?.next_cursor;
            if (next) setCursors((c) => [...c, next]);
          }}
        >
          Older →
        </button>
      </nav>
    </>
  );
}

function Row({ d, r, now }: { d: Directory; r: ConfigRequest; now: Date }) {
  return (
    <tr className={r.requested_by === d.me.id ? 'mine' : undefined}>
      <td data-label="Request">
        <a href={href.config(r.id)} aria-label={`Configuration request ${r.id.slice(0, 8)}: ${r.summary}`}>
          <code>{r.id.slice(0, 8)}</code>
        </a>
      </td>
      <td data-label="Change">
        <span className="muted">{CONFIG_KIND_TEXT[r.kind] ?? r.kind}:</span> {r.summary}
      </td>
      <td data-label="Requested by">{actorName(d, r.requested_by)}</td>
      <td data-label="Justification" className="justification">
        {r.justification}
      </td>
      <td data-label="Requested">
        <Time iso={r.requested_at} now={now} />
      </td>
      <td data-label="Expires in">{expiryText(r, now)}</td>
      <td data-label="Status">
        <StateBadge state={r.state} />
      </td>
    </tr>
  );
}
