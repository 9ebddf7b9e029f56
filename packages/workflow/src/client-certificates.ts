import {
  appendAudit,
  clientCertificates,
  type Db,
  type Executor,
  identity,
  pgCode,
  UNIQUE_VIOLATION,
} from '@countersign/db';
import { type Actor, actorOf, type Caller, DomainError, notFound } from '@countersign/domain';
import type { ApplyContext } from './administration.ts';

/**
 * Client-certificate bindings for mTLS (SPEC §2): which verified certificate
 * authenticates as which service principal, by fingerprint or by one SAN.
 * A binding an admin makes for a principal is an enrollment credential; one
 * the principal registers for itself (with a credential it holds) is its own
 * and may decide (SPEC §1.6).
 */
export interface BindingMatch {
  readonly kind: clientCertificates.MatchKind;
  readonly value: string;
}

async function insertBinding(
  tx: Executor,
  orgId: string,
  actor: Actor,
  principalId: string,
  match: BindingMatch,
  name: string | null,
  enrolledVia: { kind: 'api_key' | 'client_certificate'; id: string } | null,
  context?: ApplyContext,
) {
  const owner = await identity.findPrincipal(tx, orgId, principalId);
  if (!owner) throw notFound('principal');
  if (owner.kind !== 'service') {
    throw new DomainError(
      'validation_failed',
      `principal ${owner.name} is a ${owner.kind}; client certificates are registered for service principals`,
    );
  }
  const inserted = await clientCertificates
    .insertBinding(tx, {
      orgId,
      principalId,
      matchKind: match.kind,
      matchValue: match.value,
      name,
      createdBy: actor.id,
      enrolledVia,
      id: context?.id,
    })
    .catch((err: unknown) => {
      if (pgCode(err) === UNIQUE_VIOLATION) {
        throw new DomainError('conflict', `${match.kind} ${match.value} is already bound to a principal`);
      }
      throw err;
    });
  await appendAudit(tx, {
    orgId,
    actor,
    action: 'client_certificate_registered',
    resourceType: 'client_certificate',
    resourceId: inserted.id,
    details: {
      principal_id: principalId,
      match_kind: match.kind,
      match_value: match.value,
      name: inserted.name,
      purpose: enrolledVia ? 'own' : 'enrollment',
      created_by: actor.id,
      ...(context?.configRequestId ? { config_request_id: context.configRequestId } : {}),
    },
  });
  return inserted;
}

/** An admin binds a certificate to another principal: an enrollment credential (it never decides). */
export async function applyBindClientCertificateFor(
  tx: Executor,
  orgId: string,
  actor: Actor,
  principalId: string,
  match: BindingMatch,
  name: string | null,
  context?: ApplyContext,
) {
  if (principalId === actor.id) throw new Error('a binding for oneself is registered with bindOwnClientCertificate');
  return insertBinding(tx, orgId, actor, principalId, match, name, null, context);
}

/**
 * A service principal registers its own certificate with a credential it
 * holds. With an enrollment credential this is that credential's one use,
 * as minting an own key is.
 */
export async function bindOwnClientCertificate(db: Db, caller: Caller, match: BindingMatch, name: string | null) {
  return db.transaction().execute(async (tx) => {
    if (!caller.credential.own && !(await identity.markEnrollmentUsed(tx, caller.credential, caller.id))) {
      throw new DomainError(
        'conflict',
        'this enrollment credential was already used to make an own credential; ask an admin for a new one, and report it if that was not you',
      );
    }
    return insertBinding(tx, caller.orgId, actorOf(caller), caller.id, match, name, {
      kind: caller.credential.kind,
      id: caller.credential.id,
    });
  });
}

export async function deleteClientCertificate(db: Db, admin: Caller, bindingId: string) {
  await db.transaction().execute(async (tx) => {
    const row = await clientCertificates.deleteBinding(tx, admin.orgId, bindingId);
    if (!row) throw notFound('client certificate');
    await appendAudit(tx, {
      orgId: admin.orgId,
      actor: actorOf(admin),
      action: 'client_certificate_deleted',
      resourceType: 'client_certificate',
      resourceId: row.id,
      details: { principal_id: row.principal_id, match_kind: row.match_kind, match_value: row.match_value },
    });
  });
}
