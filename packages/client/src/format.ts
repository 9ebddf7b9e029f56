import type { Approval, ConfigRequest } from './types.ts';

/**
 * Wording shared by the CLI and the web console, so an approver reads the
 * same "expires in 6d 23h" in both. Pure functions; no I/O.
 */
const UNITS: [string, number][] = [
  ['d', 86_400_000],
  ['h', 3_600_000],
  ['m', 60_000],
  ['s', 1_000],
];

/** "45s", "12m", "3h 20m", "6d 23h": the two largest units, rounded down. */
export function humanDuration(ms: number): string {
  const abs = Math.max(0, Math.floor(Math.abs(ms)));
  if (abs < 1_000) return '0s';
  const parts: string[] = [];
  let rest = abs;
  for (const [unit, size] of UNITS) {
    if (parts.length === 2) break;
    const n = Math.floor(rest / size);
    if (n > 0 || parts.length > 0) {
      if (n > 0) parts.push(`${n}${unit}`);
      rest -= n * size;
      if (parts.length > 0 && n === 0) break;
    }
  }
  return parts.join(' ');
}

/** "in 6d 23h" or "3h 20m ago". */
export function relativeTime(iso: string, now: Date = new Date()): string {
  const delta = new Date(iso).getTime() - now.getTime();
  return delta >= 0 ? `in ${humanDuration(delta)}` : `${humanDuration(-delta)} ago`;
}

/** Votes cast of the votes required, e.g. "1/2". */
export const votesSummary = (a: Pick<Approval, 'votes' | 'approvals_required'>): string =>
  `${a.votes.length}/${a.approvals_required}`;

/** When a pending request expires; decided requests show how they ended instead. */
export function expiryText(a: Pick<Approval, 'state' | 'expires_at'>, now: Date = new Date()): string {
  if (a.state !== 'pending') return '—';
  const delta = new Date(a.expires_at).getTime() - now.getTime();
  return delta > 0 ? `in ${humanDuration(delta)}` : 'overdue';
}

/** Lists names compactly: "a, b, c +2 more". */
export function namesText(names: readonly string[], max = 3): string {
  if (names.length <= max) return names.join(', ');
  return `${names.slice(0, max).join(', ')} +${names.length - max} more`;
}

export const shortId = (id: string): string => id.slice(0, 8);

/** A configuration request's kind in words. */
export const CONFIG_KIND_TEXT: Record<ConfigRequest['kind'], string> = {
  principal_create: 'New principal',
  principal_update: 'Principal change',
  profile_create: 'New profile',
  profile_update: 'Profile change',
  api_key_create: 'API key for someone else',
  client_certificate_create: 'Client certificate for someone else',
};

/**
 * What the approving admin should check before a configuration change is
 * applied, by kind: the same advice in the CLI (`config show`) and the console.
 */
export const CONFIG_REQUEST_CHECKS: Record<ConfigRequest['kind'], string> = {
  principal_create:
    'Is this person (or service) known to you, and does it need this role? An admin or operator created here can decide requests.',
  principal_update:
    'Why does the role change, or the principal come back? Demoting or disabling an admin can leave the org with one admin.',
  profile_create:
    'Environment, approvals_required, approvers and allowed_domains: a profile without approval issues without anyone deciding.',
  profile_update:
    'Compare with the profile as it is today: fewer approvals, more approvers or domains, bypass or a longer validity weaken the gate.',
  api_key_create:
    'The requesting admin saw this enrollment key when asking: until its principal enrolls, that admin holds a key that reads and requests as the principal. Approve only if the principal expects it and will enroll at once.',
  client_certificate_create:
    'Who holds the private key of this certificate? It authenticates as the principal; check the fingerprint or SAN with its owner.',
};
