import { useState } from 'react';
import { principalName, profileName, useDirectory } from '../directory.ts';
import { href } from '../router.ts';
import { absolute, Loading, PageHeading, ProblemAlert, StateBadge, useAsync } from '../ui.tsx';

/** A certificate with every version, its requests, and a download of the current PEM chain. */
export function CertificatePage({ id }: { id: string }) {
  const d = useDirectory();
  const view = useAsync(async () => {
    const [cert, approvals, jobs] = await Promise.all([
      d.client.getCertificate(id),
      d.client.listApprovals({ certificate_id: id, limit: 50 }),
      d.client.listJobs({ certificate_id: id, limit: 50 }),
    ]);
    return { cert, approvals: approvals.items, jobs: jobs.items };
  }, id);
  const [downloadError, setDownloadError] = useState<unknown>(null);
  const [downloading, setDownloading] = useState(false);

  if (!view.data) {
    return (
      <>
        <PageHeading>Certificate</PageHeading>
        <ProblemAlert error={view.error} title="Could not load this certificate" />
        {!view.error && <Loading what="the certificate" />}
      </>
    );
  }
  const { cert, approvals, jobs } = view.data;
  const versions = cert.versions ?? [];

  // The PEM route needs the Authorization header, so it is fetched and handed to the browser as a file.
  const download = async () => {
    setDownloadError(null);
    setDownloading(true);
    try {
      const pem = await d.client.getCertificatePem(cert.id);
      const url = URL.createObjectURL(new Blob([pem], { type: 'application/pem-certificate-chain' }));
      const a = document.createElement('a');
      a.href = url;
      a.download = `${cert.common_name.replace(/[^a-zA-Z0-9.-]/g, '_')}.pem`;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (e) {
      setDownloadError(e);
    } finally {
      setDownloading(false);
    }
  };

  return (
    <>
      <p className="crumbs">
        <a href={href.certificates()}>Certificates</a> / {cert.common_name}
      </p>
      <PageHeading>{cert.common_name}</PageHeading>
      <section className="card" aria-labelledby="h-cert">
        <h2 id="h-cert">Certificate</h2>
        <dl className="facts">
          <dt>Names</dt>
          <dd>{cert.sans.join(', ')}</dd>
          <dt>Profile</dt>
          <dd>{profileName(d, cert.profile_id)}</dd>
          <dt>Owner</dt>
          <dd>{principalName(d, cert.owner_id)}</dd>
          <dt>Valid until</dt>
          <dd>{cert.not_after ? absolute(cert.not_after) : 'not issued yet'}</dd>
        </dl>
        <button type="button" className="primary" disabled={!cert.current_version || downloading} onClick={download}>
          {downloading ? 'Preparing…' : 'Download PEM chain'}
        </button>
        {!cert.current_version && <p className="help">Available once a version has been issued.</p>}
        <ProblemAlert error={downloadError} title="Could not download the chain" />
      </section>

      <section aria-labelledby="h-versions">
        <h2 id="h-versions">Versions</h2>
        {versions.length === 0 ? (
          <p className="empty">No version issued yet.</p>
        ) : (
          <table className="queue">
            <caption className="sr-only">Issued versions, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Serial</th>
                <th scope="col">SHA-256 fingerprint</th>
                <th scope="col">Not before</th>
                <th scope="col">Not after</th>
                <th scope="col">Issuer</th>
                <th scope="col">Current</th>
              </tr>
            </thead>
            <tbody>
              {versions.map((v) => (
                <tr key={v.id}>
                  <td data-label="Serial">
                    <code>{v.serial}</code>
                  </td>
                  <td data-label="Fingerprint" className="wrap">
                    <code>{v.fingerprint_sha256}</code>
                  </td>
                  <td data-label="Not before">{absolute(v.not_before)}</td>
                  <td data-label="Not after">{absolute(v.not_after)}</td>
                  <td data-label="Issuer">{v.issuer}</td>
                  <td data-label="Current">{v.id === cert.current_version?.id ? 'current' : ''}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>

      <section aria-labelledby="h-requests">
        <h2 id="h-requests">Requests and jobs</h2>
        {jobs.length === 0 ? (
          <p className="empty">No jobs.</p>
        ) : (
          <table className="queue">
            <caption className="sr-only">Jobs of this certificate, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Kind</th>
                <th scope="col">Job status</th>
                <th scope="col">Requested</th>
                <th scope="col">Approval</th>
              </tr>
            </thead>
            <tbody>
              {jobs.map((j) => {
                const a = approvals.find((x) => x.job_id === j.id);
                return (
                  <tr key={j.id}>
                    <td data-label="Kind">{j.kind}</td>
                    <td data-label="Job status">
                      <StateBadge state={j.status} kind="job" />
                      {j.error ? ` ${j.error}` : ''}
                    </td>
                    <td data-label="Requested">{absolute(j.created_at)}</td>
                    <td data-label="Approval">
                      {a ? (
                        <a href={href.approval(a.id)}>
                          <StateBadge state={a.state} /> <span className="sr-only">request {a.id.slice(0, 8)}</span>
                        </a>
                      ) : (
                        'not required'
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        )}
      </section>
    </>
  );
}
