import type { ColumnType, Generated, Kysely, Selectable } from 'kysely';
import type { Executor } from './database.ts';
import type { Database } from './schema.ts';

/**
 * Client-certificate bindings (migration 0004): which principal a verified
 * mTLS client certificate authenticates as, by certificate fingerprint or by
 * one of its subjectAltName entries.
 */
export const MATCH_KINDS = ['fingerprint', 'san'] as const;
export type MatchKind = (typeof MATCH_KINDS)[number];

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>;

export interface ClientCertificatesTable {
  id: Generated<string>;
  org_id: string;
  principal_id: string;
  match_kind: string;
  match_value: string;
  name: string | null;
  created_by: string;
  /** For a binding made by someone else (an enrollment credential): when it minted the principal's own key. */
  enrollment_used_at: ColumnType<Date | null, Date | string | null | undefined, Date | string | null>;
  /** For an own binding: the credential of the same principal it was registered with. */
  enrolled_via_kind: string | null;
  enrolled_via: string | null;
  created_at: Timestamp;
}
export type ClientCertificateRow = Selectable<ClientCertificatesTable>;

// The table type lives with its repository; schema.ts stays the core schema of 0001.
type Tables = Database & { client_certificates: ClientCertificatesTable };
function q(ex: Executor): Kysely<Tables> {
  const k: Kysely<Database> = ex;
  return k.withTables<{ client_certificates: ClientCertificatesTable }>();
}

export interface NewBinding {
  readonly orgId: string;
  readonly principalId: string;
  readonly matchKind: MatchKind;
  readonly matchValue: string;
  readonly name: string | null;
  readonly createdBy: string;
  /** For an own binding: the credential of the same principal it is registered with. */
  readonly enrolledVia: { kind: 'api_key' | 'client_certificate'; id: string } | null;
  /** Chosen up front when a configuration request names the binding before it exists. */
  readonly id?: string | undefined;
}

export async function insertBinding(ex: Executor, b: NewBinding): Promise<ClientCertificateRow> {
  return q(ex)
    .insertInto('client_certificates')
    .values({
      ...(b.id ? { id: b.id } : {}),
      org_id: b.orgId,
      principal_id: b.principalId,
      match_kind: b.matchKind,
      match_value: b.matchValue,
      name: b.name,
      created_by: b.createdBy,
      enrolled_via_kind: b.enrolledVia?.kind ?? null,
      enrolled_via: b.enrolledVia?.id ?? null,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

/** One page of an org's bindings, oldest first, after the (created_at, id) of the previous page. */
export async function listBindings(
  ex: Executor,
  opts: { orgId: string; principalId?: string; after?: { at: Date; id: string } | null; limit: number },
): Promise<ClientCertificateRow[]> {
  let query = q(ex).selectFrom('client_certificates').selectAll().where('org_id', '=', opts.orgId);
  if (opts.principalId !== undefined) query = query.where('principal_id', '=', opts.principalId);
  const after = opts.after;
  if (after) {
    query = query.where((eb) =>
      eb.or([eb('created_at', '>', after.at), eb.and([eb('created_at', '=', after.at), eb('id', '>', after.id)])]),
    );
  }
  return query
    .orderBy('created_at')
    .orderBy('id')
    .limit(opts.limit + 1)
    .execute();
}

export async function deleteBinding(
  ex: Executor,
  orgId: string,
  id: string,
): Promise<ClientCertificateRow | undefined> {
  return q(ex)
    .deleteFrom('client_certificates')
    .where('org_id', '=', orgId)
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirst();
}

/**
 * Everything authentication needs for a presented certificate, in one indexed
 * lookup: the bindings matching its fingerprint or any of its SANs, with
 * their principal. More than one distinct principal means an ambiguous
 * certificate, which the caller refuses.
 */
export async function findPrincipalsForCertificate(
  ex: Executor,
  fingerprint: string,
  sans: readonly string[],
): Promise<
  {
    binding_id: string;
    principal_id: string;
    org_id: string;
    role: string;
    kind: string;
    name: string;
    disabled_at: Date | null;
    created_by: string;
  }[]
> {
  return q(ex)
    .selectFrom('client_certificates as c')
    .innerJoin('principals as p', 'p.id', 'c.principal_id')
    .select([
      'c.id as binding_id',
      'p.id as principal_id',
      'p.org_id',
      'p.role',
      'p.kind',
      'p.name',
      'p.disabled_at',
      'c.created_by',
    ])
    .where((eb) =>
      eb.or([
        eb.and([eb('c.match_kind', '=', 'fingerprint'), eb('c.match_value', '=', fingerprint)]),
        ...(sans.length > 0 ? [eb.and([eb('c.match_kind', '=', 'san'), eb('c.match_value', 'in', [...sans])])] : []),
      ]),
    )
    .limit(10)
    .execute();
}
