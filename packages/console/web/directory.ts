import { ApiError, type CountersignClient, type Me, type Principal, type Profile } from '@countersign/client';
import { createContext, useContext } from 'react';

/** Who is signed in, and the names behind the ids the API answers with. */
export interface Directory {
  /** With the credential this tab signed in with: only an own credential may decide. */
  me: Me;
  principals: Map<string, Principal>;
  profiles: Map<string, Profile>;
  client: CountersignClient;
}

async function all<T>(
  client: CountersignClient,
  list: (q?: { limit: number; cursor?: string }) => Promise<{ items: T[]; next_cursor: string | null }>,
): Promise<T[]> {
  const out: T[] = [];
  for await (const items of client.pages(list, { limit: 500 }, 20)) out.push(...items);
  return out;
}

export async function loadDirectory(client: CountersignClient): Promise<Directory> {
  const me = await client.me();
  const [profiles, principals] = await Promise.all([
    all(client, (q) => client.listProfiles(q ?? {})),
    // Requesters may not list principals; they still see their own name.
    all(client, (q) => client.listPrincipals(q ?? {})).catch((e: unknown) => {
      if (e instanceof ApiError && e.status === 403) return [] as Principal[];
      throw e;
    }),
  ]);
  const byId = new Map(principals.map((p) => [p.id, p]));
  byId.set(me.id, me);
  return { me, client, principals: byId, profiles: new Map(profiles.map((p) => [p.id, p])) };
}

export const DirectoryContext = createContext<Directory | null>(null);

export function useDirectory(): Directory {
  const d = useContext(DirectoryContext);
  if (!d) throw new Error('useDirectory outside a signed-in session');
  return d;
}

export function principalName(d: Directory, id: string | null): string {
  if (!id) return '—';
  const p = d.principals.get(id);
  if (!p) return id;
  return p.id === d.me.id ? `${p.name} (you)` : p.name;
}

export const profileName = (d: Directory, id: string): string => d.profiles.get(id)?.name ?? id;

export const canDecide = (d: Directory): boolean => d.me.role === 'admin' || d.me.role === 'operator';

/** Signed in with a credential someone else made for this principal: it reads and requests, never decides. */
export const isEnrollment = (d: Directory): boolean => d.me.credential?.own === false;

/** Admins change the configuration; auditors read it. */
export const seesConfiguration = (d: Directory): boolean => d.me.role === 'admin' || d.me.role === 'auditor';

/** A principal's name, or a system actor's id as it is ("system-bootstrap": the installation). */
export function actorName(d: Directory, id: string | null): string {
  if (id === 'system-bootstrap') return 'the installation (bootstrap)';
  if (id?.startsWith('system-')) return id;
  return principalName(d, id);
}
