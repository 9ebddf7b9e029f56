import { useEffect, useState } from 'react';

/**
 * Hash routes (#/queue, #/approvals/ID, ...): links work when served as plain
 * static files under /ui, with no server-side fallback route.
 */
export type Route =
  | { page: 'queue'; query: URLSearchParams }
  | { page: 'approval'; id: string }
  | { page: 'certificates'; query: URLSearchParams }
  | { page: 'certificate'; id: string }
  | { page: 'audit' }
  | { page: 'configuration'; query: URLSearchParams }
  | { page: 'config'; id: string };

export function parseRoute(hash: string): Route {
  const [path = '', qs = ''] = hash.replace(/^#/, '').split('?');
  const parts = path.split('/').filter(Boolean);
  const query = new URLSearchParams(qs);
  if (parts[0] === 'approvals' && parts[1]) return { page: 'approval', id: parts[1] };
  if (parts[0] === 'certificates' && parts[1]) return { page: 'certificate', id: parts[1] };
  if (parts[0] === 'certificates') return { page: 'certificates', query };
  if (parts[0] === 'audit') return { page: 'audit' };
  if (parts[0] === 'configuration' && parts[1]) return { page: 'config', id: parts[1] };
  if (parts[0] === 'configuration') return { page: 'configuration', query };
  return { page: 'queue', query };
}

export function useRoute(): Route {
  const [hash, setHash] = useState(() => window.location.hash);
  useEffect(() => {
    const on = () => setHash(window.location.hash);
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  return parseRoute(hash);
}

export const href = {
  queue: (q: Record<string, string | undefined> = {}) => {
    const qs = new URLSearchParams(Object.entries(q).filter((e): e is [string, string] => !!e[1])).toString();
    return `#/queue${qs ? `?${qs}` : ''}`;
  },
  approval: (id: string) => `#/approvals/${id}`,
  certificates: () => '#/certificates',
  certificate: (id: string) => `#/certificates/${id}`,
  audit: () => '#/audit',
  configuration: (state?: string) => `#/configuration${state ? `?state=${encodeURIComponent(state)}` : ''}`,
  config: (id: string) => `#/configuration/${id}`,
};

export function navigate(to: string): void {
  window.location.hash = to.replace(/^#/, '');
}
