import { type Approval, type ApprovalState, expiryText, namesText, votesSummary } from '@countersign/client';
import { useEffect, useRef, useState } from 'react';
import { type Directory, principalName, profileName, useDirectory } from '../directory.ts';
import { href, navigate } from '../router.ts';
import { EnvBadge, Loading, PageHeading, ProblemAlert, StateBadge, Time, useAsync } from '../ui.tsx';

const STATES: (ApprovalState | 'all')[] = ['pending', 'approved', 'rejected', 'expired', 'voided', 'all'];
const PAGE_SIZE = 25;
const REFRESH_MS = 10_000;

/**
 * The approval queue, newest first (the API's order), paged by cursor and
 * refreshed every 10 s while the tab is visible. New requests are announced
 * to screen readers; live refresh can be paused (WCAG 2.2.2).
 */
export function QueuePage({ query }: { query: URLSearchParams }) {
  const d = useDirectory();
  const state = (query.get('state') ?? 'pending') as ApprovalState | 'all';
  const profile = query.get('profile') ?? '';
  const [cursors, setCursors] = useState<(string | undefined)[]>([undefined]);
  const cursor = cursors[cursors.length - 1];
  const [live, setLive] = useState(true);
  const [updatedAt, setUpdatedAt] = useState<Date | null>(null);
  const [announce, setAnnounce] = useState('');
  const seen = useRef<Set<string> | null>(null);

  // A new filter starts again from the first page.
  // biome-ignore lint/correctness/useExhaustiveDependencies: reset on filter change only
  useEffect(() => {
    setCursors([undefined]);
    seen.current = null;
  }, [state, profile]);

  const page = useAsync(
    async () => {
      const r = await d.client.listApprovals({
        limit: PAGE_SIZE,
        ...(state !== 'all' ? { state } : {}),
        ...(profile ? { profile_id: profile } : {}),
        ...(cursor ? { cursor } : {}),
      });
      setUpdatedAt(new Date());
      const ids = new Set(r.items.map((a) => a.id));
      if (seen.current) {
        const fresh = [...ids].filter((id) => !seen.current?.has(id)).length;
        if (fresh > 0) setAnnounce(`${fresh} new request${fresh === 1 ? '' : 's'} in the queue.`);
      }
      seen.current = ids;
      return r;
    },
    `${state}|${profile}|${cursor ?? ''}`,
  );

  useEffect(() => {
    if (!live) return;
    const t = setInterval(() => {
      if (document.visibilityState === 'visible') void page.reload();
    }, REFRESH_MS);
    return () => clearInterval(t);
  }, [live, page.reload]);

  const setFilter = (k: 'state' | 'profile', v: string) => {
    const next = { state, profile, [k]: v };
    navigate(
      href.queue({ state: next.state === 'pending' ? undefined : next.state, profile: next.profile || undefined }),
    );
  };

  const now = new Date();
  const items = page.data?.items ?? [];
  return (
    <>
      <PageHeading>Approval queue</PageHeading>
      <form className="filters" aria-label="Filter the queue" onSubmit={(e) => e.preventDefault()}>
        <div className="field">
          <label htmlFor="f-state">State</label>
          <select id="f-state" value={state} onChange={(e) => setFilter('state', e.target.value)}>
            {STATES.map((s) => (
              <option key={s} value={s}>
                {s === 'all' ? 'All states' : s[0]?.toUpperCase() + s.slice(1)}
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor="f-profile">Profile</label>
          <select id="f-profile" value={profile} onChange={(e) => setFilter('profile', e.target.value)}>
            <option value="">All profiles</option>
            {[...d.profiles.values()].map((p) => (
              <option key={p.id} value={p.id}>
                {p.name} ({p.environment})
              </option>
            ))}
          </select>
        </div>
        <div className="field live">
          <label>
            <input type="checkbox" checked={live} onChange={(e) => setLive(e.target.checked)} /> Live refresh (every{' '}
            {REFRESH_MS / 1000} s)
          </label>
          <span className="muted" aria-live="off">
            {updatedAt ? `Updated ${updatedAt.toLocaleTimeString()}` : ''}
          </span>
          <button type="button" onClick={() => void page.reload()}>
            Refresh now
          </button>
        </div>
      </form>
      <output className="sr-only block">{announce}</output>
      <ProblemAlert error={page.error} title="Could not load the queue" />
      {!page.data && !page.error && <Loading what="the queue" />}
      {page.data && items.length === 0 && (
        <p className="empty">
          No {state === 'all' ? '' : `${state} `}requests{profile ? ' for this profile' : ''}.
        </p>
      )}
      {items.length > 0 && (
        <table className="queue">
          <caption className="sr-only">{state === 'all' ? 'All' : state} approval requests, newest first</caption>
          <thead>
            <tr>
              <th scope="col">Request</th>
              <th scope="col">Requester</th>
              <th scope="col">Domains</th>
              <th scope="col">Profile</th>
              <th scope="col">Environment</th>
              <th scope="col">Justification</th>
              <th scope="col">Requested</th>
              <th scope="col">Expires in</th>
              <th scope="col">Votes</th>
              <th scope="col">Status</th>
            </tr>
          </thead>
          <tbody>
            {items.map((a) => (
              <Row key={a.id} d={d} a={a} now={now} />
            ))}
          </tbody>
        </table>
      )}
      <nav className="pager" aria-label="Queue pages">
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

function Row({ d, a, now }: { d: Directory; a: Approval; now: Date }) {
  const mine = a.requested_by === d.me.id;
  return (
    <tr className={mine ? 'mine' : undefined}>
      <td data-label="Request">
        <a href={href.approval(a.id)} aria-label={`Request ${a.id.slice(0, 8)} for ${a.domains[0] ?? ''}`}>
          <code>{a.id.slice(0, 8)}</code>
        </a>
      </td>
      <td data-label="Requester">{principalName(d, a.requested_by)}</td>
      <td data-label="Domains" title={a.domains.join(', ')}>
        {namesText(a.domains, 2)}
      </td>
      <td data-label="Profile">{profileName(d, a.profile_id)}</td>
      <td data-label="Environment">
        <EnvBadge env={a.environment} />
      </td>
      <td data-label="Justification" className="justification">
        {a.justification}
      </td>
      <td data-label="Requested">
        <Time iso={a.requested_at} now={now} />
      </td>
      <td data-label="Expires in">{expiryText(a, now)}</td>
      <td data-label="Votes">{votesSummary(a)}</td>
      <td data-label="Status">
        <StateBadge state={a.state} />
      </td>
    </tr>
  );
}
