import { namesText } from '@countersign/client';
import { useState } from 'react';
import { principalName, profileName, useDirectory } from '../directory.ts';
import { href } from '../router.ts';
import { absolute, Loading, PageHeading, ProblemAlert, Time, useAsync } from '../ui.tsx';

/** Managed certificates, newest first; requesters see their own. */
export function CertificatesPage() {
  const d = useDirectory();
  const [cursors, setCursors] = useState<(string | undefined)[]>([undefined]);
  const cursor = cursors[cursors.length - 1];
  const page = useAsync(
    () => d.client.listCertificates({ limit: 25, ...(cursor ? { cursor } : {}) }),
    cursor ?? 'first',
  );
  const items = page.data?.items ?? [];
  return (
    <>
      <PageHeading>Certificates</PageHeading>
      <ProblemAlert error={page.error} title="Could not load certificates" />
      {!page.data && !page.error && <Loading what="certificates" />}
      {page.data && items.length === 0 && <p className="empty">No certificates yet.</p>}
      {items.length > 0 && (
        <table className="queue">
          <caption className="sr-only">Certificates, newest first</caption>
          <thead>
            <tr>
              <th scope="col">Common name</th>
              <th scope="col">Names</th>
              <th scope="col">Profile</th>
              <th scope="col">Owner</th>
              <th scope="col">Current serial</th>
              <th scope="col">Valid until</th>
            </tr>
          </thead>
          <tbody>
            {items.map((c) => (
              <tr key={c.id}>
                <td data-label="Common name">
                  <a href={href.certificate(c.id)}>{c.common_name}</a>
                </td>
                <td data-label="Names">{namesText(c.sans, 3)}</td>
                <td data-label="Profile">{profileName(d, c.profile_id)}</td>
                <td data-label="Owner">{principalName(d, c.owner_id)}</td>
                <td data-label="Current serial">
                  {c.current_version ? <code>{c.current_version.serial.slice(0, 16)}</code> : 'not issued yet'}
                </td>
                <td data-label="Valid until">
                  {c.not_after ? (
                    <span title={absolute(c.not_after)}>
                      <Time iso={c.not_after} />
                    </span>
                  ) : (
                    '—'
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <nav className="pager" aria-label="Certificate pages">
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
