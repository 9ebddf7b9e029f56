import { type FormEvent, useState } from 'react';
import { clientFor } from '../session.ts';
import { PageHeading, ProblemAlert } from '../ui.tsx';

/** Sign in with an API key; it is checked against GET /api/v1/me before it is kept. */
export function SignIn({ onSignedIn, notice }: { onSignedIn: (key: string) => void; notice?: string | null }) {
  const [key, setKey] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const k = key.trim();
    if (!k) {
      setError(new Error('Enter your API key.'));
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await clientFor(k).me();
      onSignedIn(k);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <main id="main" className="signin">
      <PageHeading>Sign in to Countersign</PageHeading>
      {notice && <output className="alert alert-info block">{notice}</output>}
      <form onSubmit={submit} noValidate>
        <label htmlFor="api-key">API key</label>
        <input
          id="api-key"
          name="api-key"
          type="password"
          autoComplete="off"
          spellCheck={false}
          value={key}
          onChange={(e) => setKey(e.target.value)}
          aria-describedby="api-key-help"
          required
        />
        <p id="api-key-help" className="help">
          The key stays in this browser tab only (session storage) and is sent only to this server. Closing the tab
          signs you out.
        </p>
        <button type="submit" className="primary" disabled={busy}>
          {busy ? 'Checking…' : 'Sign in'}
        </button>
      </form>
      <ProblemAlert error={error} title="Could not sign in" />
    </main>
  );
}
