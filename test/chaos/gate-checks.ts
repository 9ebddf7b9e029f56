import { X509Certificate } from 'node:crypto';
import type pg from 'pg';

/**
 * The checks of SPEC §1.6 (no single person; what was approved is what is
 * issued), read from the database as superuser after a run and judged here
 * by code of their own: who created whom is walked in TypeScript from
 * `created_by`, credentials are looked up row by row, the names are parsed
 * from the signed leaf. Nothing is taken from the services' answers, nor from
 * the database's own guard functions (`principals_related`,
 * `credential_is_own`): a checker that asked the guard would share its bugs.
 *
 * Loading (`loadGateRows`) and judging (`gateViolations`) are apart so that
 * the judgement can be fed rows the database refuses to hold (a vote without
 * a credential, a configuration request approved by its requester).
 */

/** Microseconds since the epoch: the database's precision, so "live when used" is decided exactly. */
type Micros = number;

export interface GatePrincipal {
  readonly id: string;
  readonly org_id: string;
  readonly name: string;
  readonly role: string;
  /** A principal id or a system actor (`system-bootstrap`, ...). */
  readonly created_by: string;
}

export interface GateCredential {
  readonly kind: 'api_key' | 'client_certificate';
  readonly id: string;
  readonly principal_id: string;
  readonly created_by: string;
  readonly created_us: Micros;
  readonly revoked_us: Micros | null;
  readonly expires_us: Micros | null;
}

export interface GateVote {
  readonly approval_id: string;
  readonly voter_id: string;
  /** The request's requester (from approval_requests, not the vote's copy). */
  readonly requested_by: string;
  readonly voted_us: Micros;
  readonly credential_kind: string | null;
  readonly credential_id: string | null;
}

/** An approval request that is no longer pending. */
export interface GateDecision {
  readonly id: string;
  readonly state: string;
  readonly requested_by: string;
  readonly decided_by: string | null;
  readonly decided_by_type: string | null;
  readonly decided_us: Micros | null;
  readonly decided_credential_kind: string | null;
  readonly decided_credential_id: string | null;
}

export interface GateVersion {
  readonly id: string;
  readonly job_id: string;
  /** The names recorded with the version. */
  readonly sans: readonly string[];
  readonly leaf_pem: string;
  /** What the approvers were shown (the request's domains), or the job's names when it was not gated; null: nothing to compare with. */
  readonly approved_names: readonly string[] | null;
}

export interface GateConfigRequest {
  readonly id: string;
  readonly org_id: string;
  readonly kind: string;
  readonly state: string;
  readonly requested_by: string;
  readonly decided_by: string | null;
  readonly decided_by_type: string | null;
  readonly decided_us: Micros | null;
  readonly decided_credential_kind: string | null;
  readonly decided_credential_id: string | null;
}

export interface GateRows {
  readonly principals: readonly GatePrincipal[];
  readonly credentials: readonly GateCredential[];
  readonly votes: readonly GateVote[];
  readonly decisions: readonly GateDecision[];
  readonly versions: readonly GateVersion[];
  readonly configRequests: readonly GateConfigRequest[];
}

export interface GateFigures {
  /** Votes whose credential was looked up. */
  votes: number;
  /** Requests decided by a user or service whose credential was looked up. */
  decisions: number;
  /** Certificate versions whose recorded and signed names were compared with the approved ones. */
  certificateNames: number;
  /** Approved configuration requests whose decider was checked. */
  configRequests: number;
}

export const GATE_CATEGORIES = {
  voteCredential: "votes without the voter's own credential, live when cast",
  related: 'votes or decisions by a principal related by creation to the requester',
  decisionCredential: "decided requests without the decider's own credential, live when decided",
  names: 'certificates whose names are not the approved names',
  config:
    "configuration requests approved by their requester, a non-admin, a principal related by creation or without the approver's own credential",
} as const;
export type GateCategory = keyof typeof GATE_CATEGORIES;

type Query = <T extends pg.QueryResultRow>(text: string, values?: unknown[]) => Promise<T[]>;

const us = (column: string) => `(extract(epoch FROM ${column}) * 1000000)::bigint::text`;
const micros = (v: string | null): Micros | null => (v === null ? null : Number(v));

export async function loadGateRows(q: Query): Promise<GateRows> {
  const principals = await q<GatePrincipal>('SELECT id::text, org_id::text, name, role, created_by FROM principals');
  type Timed<T, K extends string> = Omit<T, K> & Record<K, string | null>;
  const credentials = await q<Timed<GateCredential, 'created_us' | 'revoked_us' | 'expires_us'>>(
    `SELECT 'api_key' AS kind, id::text, principal_id::text, created_by,
            ${us('created_at')} AS created_us, ${us('revoked_at')} AS revoked_us, ${us('expires_at')} AS expires_us
       FROM api_keys
     UNION ALL
     SELECT 'client_certificate', id::text, principal_id::text, created_by, ${us('created_at')}, NULL, NULL
       FROM client_certificates`,
  );
  const votes = await q<Timed<GateVote, 'voted_us'>>(
    `SELECT v.approval_id::text, v.voter_id::text, a.requested_by, ${us('v.voted_at')} AS voted_us,
            v.credential_kind, v.credential_id::text
       FROM approval_votes v JOIN approval_requests a ON a.id = v.approval_id`,
  );
  const decisions = await q<Timed<GateDecision, 'decided_us'>>(
    `SELECT id::text, state, requested_by, decided_by, decided_by_type, ${us('decided_at')} AS decided_us,
            decided_credential_kind, decided_credential_id::text
       FROM approval_requests WHERE state <> 'pending'`,
  );
  const versions = await q<GateVersion>(
    `SELECT v.id::text, v.job_id::text, v.sans, v.leaf_pem,
            CASE WHEN j.requires_approval THEN a.domains ELSE j.sans END AS approved_names
       FROM certificate_versions v
       JOIN jobs j ON j.id = v.job_id
       LEFT JOIN approval_requests a ON a.job_id = j.id`,
  );
  const configRequests = await q<Timed<GateConfigRequest, 'decided_us'>>(
    `SELECT id::text, org_id::text, kind, state, requested_by, decided_by, decided_by_type,
            ${us('decided_at')} AS decided_us, decided_credential_kind, decided_credential_id::text
       FROM config_requests WHERE state = 'approved'`,
  );
  return {
    principals,
    credentials: credentials.map((c) => ({
      ...c,
      created_us: micros(c.created_us) ?? 0,
      revoked_us: micros(c.revoked_us),
      expires_us: micros(c.expires_us),
    })),
    votes: votes.map((v) => ({ ...v, voted_us: micros(v.voted_us) ?? 0 })),
    decisions: decisions.map((d) => ({ ...d, decided_us: micros(d.decided_us) })),
    versions,
    configRequests: configRequests.map((c) => ({ ...c, decided_us: micros(c.decided_us) })),
  };
}

/**
 * Related by creation (SPEC §1.6): one of the two created the other, directly
 * or through principals it created. The same principal is not "related" here:
 * the requester deciding its own request is a check of its own.
 */
export function creationRelation(principals: readonly Pick<GatePrincipal, 'id' | 'created_by'>[]) {
  const creatorOf = new Map(principals.map((p) => [p.id, p.created_by]));
  const chains = new Map<string, Set<string>>();
  const creators = (id: string): Set<string> => {
    let chain = chains.get(id);
    if (chain) return chain;
    chain = new Set<string>();
    // Creators exist before what they create, so a chain cannot loop; the bound is a backstop against bad rows.
    for (let cur = creatorOf.get(id); cur !== undefined && chain.size < 64; cur = creatorOf.get(cur)) {
      if (chain.has(cur)) break;
      chain.add(cur);
    }
    chains.set(id, chain);
    return chain;
  };
  return (a: string, b: string): boolean => a !== b && (creators(a).has(b) || creators(b).has(a));
}

/** Node's X509Certificate subjectAltName: "DNS:a, DNS:b", values with special characters JSON-quoted. */
export function parseGeneralNames(text: string): { type: string; value: string }[] {
  const out: { type: string; value: string }[] = [];
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon < 0) throw new Error(`unparsable subjectAltName "${text}"`);
    const type = text.slice(i, colon).trim();
    let j = colon + 1;
    let value: string;
    if (text[j] === '"') {
      let k = j + 1;
      while (k < text.length && text[k] !== '"') k += text[k] === '\\' ? 2 : 1;
      value = JSON.parse(text.slice(j, k + 1)) as string;
      j = k + 1;
    } else {
      const end = text.indexOf(', ', j);
      value = text.slice(j, end < 0 ? text.length : end);
      j = end < 0 ? text.length : end;
    }
    out.push({ type, value });
    if (text.startsWith(', ', j)) j += 2;
    else if (j < text.length) throw new Error(`unparsable subjectAltName "${text}"`);
    i = j;
  }
  return out;
}

/** The names a leaf is good for: its DNS SANs, its other SANs (never approvable here) and its subject CN. */
export function leafNames(pem: string): { dns: string[]; other: string[]; commonName: string | null } {
  const x = new X509Certificate(pem);
  const general = x.subjectAltName ? parseGeneralNames(x.subjectAltName) : [];
  let commonName: string | null = null;
  for (const line of x.subject.split('\n')) {
    if (!line.startsWith('CN=')) continue;
    const raw = line.slice(3);
    commonName = raw.startsWith('"') ? (JSON.parse(raw) as string) : raw;
  }
  return {
    dns: general.filter((g) => g.type === 'DNS').map((g) => g.value),
    other: general.filter((g) => g.type !== 'DNS').map((g) => `${g.type}:${g.value}`),
    commonName,
  };
}

const nameSet = (names: readonly string[]) => [...new Set(names.map((n) => n.toLowerCase()))].sort();
const sameNames = (a: readonly string[], b: readonly string[]) => nameSet(a).join(' ') === nameSet(b).join(' ');

export function gateViolations(rows: GateRows): { found: Record<GateCategory, string[]>; figures: GateFigures } {
  const found: Record<GateCategory, string[]> = {
    voteCredential: [],
    related: [],
    decisionCredential: [],
    names: [],
    config: [],
  };
  const principalById = new Map(rows.principals.map((p) => [p.id, p]));
  const name = (id: string | null) => (id === null ? '(nobody)' : (principalById.get(id)?.name ?? id));
  const related = creationRelation(rows.principals);
  const credentialById = new Map(rows.credentials.map((c) => [`${c.kind}:${c.id}`, c]));
  const usedAt = (t: Micros) => new Date(Math.floor(t / 1000)).toISOString();

  /** Why this credential was not the holder's own, live credential at `at`; null when it was. */
  const notOwn = (kind: string | null, id: string | null, holder: string, at: Micros | null): string | null => {
    if (!kind || !id) return 'no credential recorded';
    const c = credentialById.get(`${kind}:${id}`);
    if (!c) return `${kind} ${id} does not exist`;
    if (c.principal_id !== holder) return `${kind} ${id} belongs to ${name(c.principal_id)}`;
    if (c.created_by !== holder) return `${kind} ${id} is an enrollment credential made by ${name(c.created_by)}`;
    if (at === null) return 'no time recorded';
    if (c.created_us > at) return `${kind} ${id} was created after ${usedAt(at)}`;
    if (c.revoked_us !== null && c.revoked_us <= at) return `${kind} ${id} was revoked before ${usedAt(at)}`;
    if (c.expires_us !== null && c.expires_us <= at) return `${kind} ${id} had expired by ${usedAt(at)}`;
    return null;
  };

  for (const v of rows.votes) {
    const why = notOwn(v.credential_kind, v.credential_id, v.voter_id, v.voted_us);
    if (why) found.voteCredential.push(`vote on ${v.approval_id} by ${name(v.voter_id)}: ${why}`);
    if (related(v.voter_id, v.requested_by)) {
      found.related.push(`vote on ${v.approval_id} by ${name(v.voter_id)}, requested by ${name(v.requested_by)}`);
    }
  }

  let decisions = 0;
  for (const d of rows.decisions) {
    if (!['approved', 'rejected', 'voided'].includes(d.state)) continue;
    if (d.decided_by && (d.state === 'approved' || d.state === 'rejected') && related(d.decided_by, d.requested_by)) {
      found.related.push(`${d.state} ${d.id} by ${name(d.decided_by)}, requested by ${name(d.requested_by)}`);
    }
    // System actors (the bypass) decide without a credential; anyone else decides with its own.
    if (d.decided_by_type === 'system') continue;
    decisions++;
    const why = d.decided_by
      ? notOwn(d.decided_credential_kind, d.decided_credential_id, d.decided_by, d.decided_us)
      : 'no decider recorded';
    if (why) found.decisionCredential.push(`${d.state} ${d.id} by ${name(d.decided_by)}: ${why}`);
  }

  for (const v of rows.versions) {
    if (v.approved_names === null) {
      found.names.push(`version ${v.id} (job ${v.job_id}): no approval request to compare its names with`);
      continue;
    }
    const approved = nameSet(v.approved_names);
    const problems: string[] = [];
    if (!sameNames(v.sans, approved)) problems.push(`recorded [${nameSet(v.sans).join(', ')}]`);
    try {
      const leaf = leafNames(v.leaf_pem);
      if (!sameNames(leaf.dns, approved)) problems.push(`signed [${nameSet(leaf.dns).join(', ')}]`);
      if (leaf.other.length) problems.push(`signed names of other kinds [${leaf.other.join(', ')}]`);
      if (leaf.commonName !== null && !approved.includes(leaf.commonName.toLowerCase())) {
        problems.push(`signed CN ${leaf.commonName}`);
      }
    } catch (err) {
      problems.push(`leaf unreadable (${(err as Error).message})`);
    }
    if (problems.length) {
      found.names.push(`version ${v.id} (job ${v.job_id}): ${problems.join(', ')}; approved [${approved.join(', ')}]`);
    }
  }

  for (const c of rows.configRequests) {
    if (c.state !== 'approved') continue;
    const problems: string[] = [];
    const decider = c.decided_by ? principalById.get(c.decided_by) : undefined;
    if (c.decided_by === c.requested_by) problems.push('by its requester');
    if (c.decided_by_type !== 'user' && c.decided_by_type !== 'service') {
      problems.push(`by a ${c.decided_by_type ?? 'missing'} actor`);
    }
    // The role now: the harness never demotes an admin, so it is the role the decider had when it approved.
    if (!decider || decider.org_id !== c.org_id || decider.role !== 'admin') {
      problems.push(`by a non-admin (${decider ? `${decider.role} of org ${decider.org_id}` : 'no such principal'})`);
    }
    if (c.decided_by && related(c.decided_by, c.requested_by)) problems.push('by a principal related by creation');
    const why = c.decided_by
      ? notOwn(c.decided_credential_kind, c.decided_credential_id, c.decided_by, c.decided_us)
      : 'no decider';
    if (why) problems.push(`without the approver's own credential (${why})`);
    if (problems.length) {
      found.config.push(
        `${c.kind} ${c.id} requested by ${name(c.requested_by)}, approved by ${name(c.decided_by)}: ${problems.join('; ')}`,
      );
    }
  }

  return {
    found,
    figures: {
      votes: rows.votes.length,
      decisions,
      certificateNames: rows.versions.length,
      configRequests: rows.configRequests.filter((c) => c.state === 'approved').length,
    },
  };
}
