import { ApiError } from '@countersign/client';
import { useCallback, useEffect, useState } from 'react';
import { type Directory, DirectoryContext, loadDirectory, seesConfiguration } from './directory.ts';
import { EnrollmentBanner, type FreshKey, FreshKeyPanel, ReadinessBanner } from './identity.tsx';
import { ApprovalPage } from './pages/ApprovalPage.tsx';
import { AuditPage } from './pages/AuditPage.tsx';
import { CertificatePage } from './pages/CertificatePage.tsx';
import { CertificatesPage } from './pages/CertificatesPage.tsx';
import { ConfigRequestPage } from './pages/ConfigRequestPage.tsx';
import { ConfigurationPage } from './pages/ConfigurationPage.tsx';
import { QueuePage } from './pages/QueuePage.tsx';
import { SignIn } from './pages/SignIn.tsx';
import { href, type Route, useRoute } from './router.ts';
import { clientFor, forgetKey, storedKey, storeKey } from './session.ts';
import { Loading, ProblemAlert } from './ui.tsx';

export function App() {
  const [key, setKey] = useState<string | null>(() => storedKey());
  const [dir, setDir] = useState<Directory | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState<string | null>(null);
  // The own key just minted with an enrollment key: shown once, until dismissed.
  const [fresh, setFresh] = useState<FreshKey | null>(null);
  const route = useRoute();

  const signOut = useCallback((why?: string) => {
    forgetKey();
    setKey(null);
    setDir(null);
    setFresh(null);
    setNotice(why ?? 'You are signed out.');
  }, []);

  // The tab's session moves to the own key at once: the enrollment key is not kept anywhere.
  const switchToOwnKey = useCallback((f: FreshKey) => {
    storeKey(f.created.key);
    setFresh(f);
    setDir(null);
    setKey(f.created.key);
  }, []);

  useEffect(() => {
    if (!key) return;
    let live = true;
    setError(null);
    loadDirectory(clientFor(key)).then(
      (d) => live && setDir(d),
      (e: unknown) => {
        if (!live) return;
        if (e instanceof ApiError && e.status === 401)
          signOut('Your API key was not accepted (revoked or expired). Sign in again.');
        else setError(e);
      },
    );
    return () => {
      live = false;
    };
  }, [key, signOut]);

  if (!key) {
    return (
      <SignIn
        notice={notice}
        onSignedIn={(k) => {
          storeKey(k);
          setNotice(null);
          setKey(k);
        }}
      />
    );
  }
  if (!dir) {
    return (
      <main id="main">
        {error ? <ProblemAlert error={error} title="Could not load your session" /> : <Loading what="your session" />}
        {error != null && (
          <button type="button" onClick={() => signOut()}>
            Sign out
          </button>
        )}
      </main>
    );
  }
  return (
    <DirectoryContext.Provider value={dir}>
      <button type="button" className="skip" onClick={() => document.getElementById('main')?.focus()}>
        Skip to content
      </button>
      <header className="top">
        <a className="brand" href={href.queue()}>
          Countersign
        </a>
        <nav aria-label="Main">
          <ul>
            <li>
              <a
                href={href.queue()}
                aria-current={route.page === 'queue' || route.page === 'approval' ? 'page' : undefined}
              >
                Approvals
              </a>
            </li>
            <li>
              <a
                href={href.certificates()}
                aria-current={route.page === 'certificates' || route.page === 'certificate' ? 'page' : undefined}
              >
                Certificates
              </a>
            </li>
            <li>
              <a href={href.audit()} aria-current={route.page === 'audit' ? 'page' : undefined}>
                Audit
              </a>
            </li>
            {seesConfiguration(dir) && (
              <li>
                <a
                  href={href.configuration()}
                  aria-current={route.page === 'configuration' || route.page === 'config' ? 'page' : undefined}
                >
                  Configuration
                </a>
              </li>
            )}
          </ul>
        </nav>
        <div className="who">
          <span>
            Signed in as <strong>{dir.me.name}</strong> <span className="role">({dir.me.role})</span>
          </span>
          <button type="button" onClick={() => signOut()}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        {fresh && <FreshKeyPanel fresh={fresh} onDone={() => setFresh(null)} />}
        <EnrollmentBanner onMinted={switchToOwnKey} />
        <ReadinessBanner refreshKey={route.page} />
        <Page route={route} />
      </main>
    </DirectoryContext.Provider>
  );
}

function Page({ route }: { route: Route }) {
  switch (route.page) {
    case 'approval':
      return <ApprovalPage key={route.id} id={route.id} />;
    case 'certificates':
      return <CertificatesPage />;
    case 'certificate':
      return <CertificatePage key={route.id} id={route.id} />;
    case 'audit':
      return <AuditPage />;
    case 'configuration':
      return <ConfigurationPage query={route.query} />;
    case 'config':
      return <ConfigRequestPage key={route.id} id={route.id} />;
    default:
      return <QueuePage query={route.query} />;
  }
}
