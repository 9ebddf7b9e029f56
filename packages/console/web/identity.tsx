import type { CreatedApiKey } from '@countersign/client';
import { useEffect, useRef, useState } from 'react';
import { actorName, isEnrollment, seesConfiguration, useDirectory } from './directory.ts';
import { href } from './router.ts';
import { ProblemAlert, useAsync } from './ui.tsx';

/**
 * Who this tab is to the gate (SPEC §1.6): a key someone else made for the
 * principal (an enrollment key) reads and requests but never decides, so the
 * console offers to mint the principal's own key with it; and an org with one
 * admin (or admins who created one another) is told that one person can still
 * change its configuration alone.
 */

export interface FreshKey {
  readonly created: CreatedApiKey;
  /** The enrollment key it was minted with, now spent; null for a client certificate. */
  readonly enrollmentKeyId: string | null;
}

export function EnrollmentBanner({ onMinted }: { onMinted: (fresh: FreshKey) => void }) {
  const d = useDirectory();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  if (!isEnrollment(d)) return null;
  const mint = async () => {
    setBusy(true);
    setError(null);
    try {
      const created = await d.client.mintOwnApiKey({ name: 'web console' });
      onMinted({ created, enrollmentKeyId: d.me.credential.kind === 'api_key' ? d.me.credential.id : null });
    } catch (e) {
      setError(e);
      setBusy(false);
    }
  };
  return (
    <section className="banner banner-warn" aria-labelledby="h-enrollment">
      <h2 id="h-enrollment">You signed in with an enrollment key</h2>
      <p>
        {actorName(d, d.me.credential.created_by)} made this key for you. It can read and request certificates, but it
        can never approve or reject: only a key you mint for yourself decides, so that nobody else has ever held it.
      </p>
      <p>It mints your own key once. The new key is shown only once, and this tab then signs in with it.</p>
      <button type="button" className="primary" disabled={busy} onClick={() => void mint()}>
        {busy ? 'Minting…' : 'Mint my own key'}
      </button>
      <ProblemAlert error={error} title="Could not mint your own key" />
    </section>
  );
}

/** The key just minted: shown this once, with a copy button, until the person says it is stored. */
export function FreshKeyPanel({ fresh, onDone }: { fresh: FreshKey; onDone: () => void }) {
  const d = useDirectory();
  const [copied, setCopied] = useState('');
  const [revoked, setRevoked] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const input = useRef<HTMLInputElement>(null);
  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    heading.current?.focus();
  }, []);

  const copy = async () => {
    try {
      await navigator.clipboard.writeText(fresh.created.key);
      setCopied('Copied to the clipboard.');
    } catch {
      input.current?.select();
      setCopied('This browser did not allow copying: the key is selected, press Ctrl+C (⌘C on a Mac).');
    }
  };
  const revoke = async () => {
    if (!fresh.enrollmentKeyId) return;
    setError(null);
    try {
      await d.client.revokeApiKey(fresh.enrollmentKeyId);
      setRevoked(true);
    } catch (e) {
      setError(e);
    }
  };
  return (
    <section className="banner banner-ok" aria-labelledby="h-fresh-key">
      <h2 id="h-fresh-key" ref={heading} tabIndex={-1}>
        Your own key
      </h2>
      <p>
        <strong>Shown only now.</strong> Store it in your password manager before you leave this page: Countersign keeps
        only a hash of it and cannot show it again. This tab now signs in with it, and it can approve and reject.
      </p>
      <label htmlFor="fresh-key">Your new API key</label>
      <div className="key-row">
        <input
          id="fresh-key"
          ref={input}
          type="text"
          readOnly
          autoComplete="off"
          spellCheck={false}
          value={fresh.created.key}
          onFocus={(e) => e.currentTarget.select()}
        />
        <button type="button" onClick={() => void copy()}>
          Copy
        </button>
      </div>
      <output className="block muted">{copied}</output>
      {fresh.enrollmentKeyId &&
        (revoked ? (
          <p>Your enrollment key is revoked.</p>
        ) : (
          <p>
            Your enrollment key is now spent: it cannot mint another key, but it still reads and requests as you until
            it is revoked.{' '}
            <button type="button" onClick={() => void revoke()}>
              Revoke the enrollment key
            </button>
          </p>
        ))}
      <ProblemAlert error={error} title="Could not revoke the enrollment key" />
      <button type="button" className="primary" onClick={onDone}>
        I have stored it
      </button>
    </section>
  );
}

/** For admins and auditors: the org's configuration is still one person's to change. */
export function ReadinessBanner({ refreshKey }: { refreshKey: string }) {
  const d = useDirectory();
  const shown = seesConfiguration(d);
  const org = useAsync(
    () => (shown ? d.client.getOrg() : Promise.resolve(null)),
    `${shown ? 'org' : 'none'}|${refreshKey}`,
  );
  // An older api without GET /api/v1/org (org.error) says nothing rather than something wrong.
  if (!shown || !org.data || org.data.two_person_ready) return null;
  return (
    <section className="banner banner-warn" aria-labelledby="h-readiness">
      <h2 id="h-readiness">This org is not two-person ready</h2>
      <p>{org.data.warning ?? 'One admin can change this org’s configuration alone.'}</p>
      <p className="muted">
        {org.data.enabled_admins} enabled admin{org.data.enabled_admins === 1 ? '' : 's'}. Once two admins exist that
        did not create one another, every change that could weaken the gate waits for the second one on the{' '}
        <a href={href.configuration()}>Configuration</a> page.
      </p>
    </section>
  );
}
