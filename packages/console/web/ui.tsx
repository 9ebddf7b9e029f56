import { ApiError, relativeTime } from '@countersign/client';
import { type ReactNode, useCallback, useEffect, useRef, useState } from 'react';

/** Small shared pieces: headings that take focus, plain error boxes, times, badges. */

/** The page's h1 takes focus on navigation so screen readers announce the new page. */
export function PageHeading({ children }: { children: ReactNode }) {
  const ref = useRef<HTMLHeadingElement>(null);
  useEffect(() => {
    ref.current?.focus();
  }, []);
  return (
    <h1 ref={ref} tabIndex={-1}>
      {children}
    </h1>
  );
}

/** Shows the server's problem detail as it is: a person can read it, support can quote the request id. */
export function ProblemAlert({ error, title }: { error: unknown; title?: string }) {
  if (!error) return null;
  if (error instanceof ApiError) {
    return (
      <div className="alert alert-error" role="alert">
        <p className="alert-title">{title ?? error.title}</p>
        <p>{error.detail}</p>
        {error.errors.length > 0 && (
          <ul>
            {error.errors.map((e) => (
              <li key={`${e.path}${e.message}`}>
                {e.path}: {e.message}
              </li>
            ))}
          </ul>
        )}
        <p className="alert-meta">
          {error.code}
          {error.status ? ` · HTTP ${error.status}` : ''}
          {error.requestId ? ` · request id ${error.requestId}` : ''}
        </p>
      </div>
    );
  }
  return (
    <div className="alert alert-error" role="alert">
      <p className="alert-title">{title ?? 'Something went wrong'}</p>
      <p>{error instanceof Error ? error.message : String(error)}</p>
    </div>
  );
}

export function Time({ iso, now }: { iso: string | null; now?: Date }) {
  if (!iso) return <>—</>;
  const d = new Date(iso);
  return (
    <time dateTime={iso} title={d.toUTCString()}>
      {relativeTime(iso, now)}
    </time>
  );
}

export const absolute = (iso: string | null): string =>
  iso
    ? new Date(iso)
        .toISOString()
        .replace('T', ' ')
        .replace(/\.\d+Z$/, ' UTC')
    : '—';

const STATE_TEXT: Record<string, string> = {
  pending: 'Pending',
  approved: 'Approved',
  rejected: 'Rejected',
  expired: 'Expired',
  voided: 'Voided',
  awaiting_approval: 'Awaiting approval',
  running: 'Signing',
  completed: 'Issued',
  failed: 'Failed',
  cancelled: 'Cancelled',
};

/** Status in words and colour, never colour alone. */
export function StateBadge({ state, kind = 'approval' }: { state: string; kind?: 'approval' | 'job' }) {
  const text = kind === 'job' && state === 'pending' ? 'Queued for signing' : (STATE_TEXT[state] ?? state);
  return <span className={`badge badge-${state}`}>{text}</span>;
}

export function EnvBadge({ env }: { env: string }) {
  return <span className={`env env-${env === 'production' ? 'production' : 'other'}`}>{env}</span>;
}

export interface AsyncState<T> {
  data: T | null;
  error: unknown;
  loading: boolean;
  reload: () => Promise<void>;
}

/**
 * Loads data and keeps the last good answer while reloading, so a live
 * refresh never blanks the page. `key` names what is loaded: a new key loads
 * again; an answer that arrives after a newer request started is dropped.
 */
export function useAsync<T>(load: () => Promise<T>, key: string): AsyncState<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(true);
  const seq = useRef(0);
  const loadRef = useRef(load);
  loadRef.current = load;
  const run = useCallback(async (_key: string) => {
    const mine = ++seq.current;
    setLoading(true);
    try {
      const value = await loadRef.current();
      if (mine === seq.current) {
        setData(value);
        setError(null);
      }
    } catch (e) {
      if (mine === seq.current) setError(e);
    } finally {
      if (mine === seq.current) setLoading(false);
    }
  }, []);
  useEffect(() => {
    void run(key);
  }, [key, run]);
  const reload = useCallback(() => run(key), [key, run]);
  return { data, error, loading, reload };
}

export function Loading({ what }: { what: string }) {
  return <output className="muted block">Loading {what}…</output>;
}
