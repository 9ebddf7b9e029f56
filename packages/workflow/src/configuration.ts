import { randomUUID } from 'node:crypto';
import {
  addOutboxEvents,
  appendAudit,
  appendAuditMany,
  type ConfigRequestRow,
  configRequests,
  type Db,
  decodeCursor,
  type Executor,
  identity,
  type ProfileFields,
  type ProfileWithApprovers,
  profiles,
} from '@countersign/db';
import {
  type Actor,
  actorOf,
  assertOwnCredential,
  type Caller,
  type ConfigurationKind,
  type ConfigurationState,
  DomainError,
  type GateFields,
  isAdmin,
  notFound,
  type Principal,
  principalWeakenings,
  profileWeakenings,
  type Role,
  SYSTEM_ACTORS,
} from '@countersign/domain';
import {
  applyCreatePrincipal,
  applyEnrollmentKey,
  applySaveProfile,
  applyUpdatePrincipal,
  type IssuedKey,
  type KeyOptions,
  type PrincipalChange,
  type PrincipalInput,
} from './administration.ts';
import { generateApiKey } from './api-keys.ts';
import { applyBindClientCertificateFor, type BindingMatch } from './client-certificates.ts';
import {
  applyRegisterIntakeKeyFor,
  type IntakeKeyInput,
  type IntakeKeyView,
  type IntakePublicKey,
  parseIntakePublicKey,
} from './intake-keys.ts';
import type { WorkflowSettings } from './requests.ts';

/**
 * The gate guards its own configuration (SPEC §1.6). Every change that could
 * weaken the gate goes through `configure`: while the org is not yet
 * two-person ready (or the change only tightens) it applies at once, as
 * before; once the org has two independent admins it becomes a
 * configuration request that another admin approves (votes, expiry, audit and
 * mail as for certificates), and only then is applied, in the approving
 * transaction, by the same apply function. The database refuses the write
 * otherwise (migration 0016).
 */

/** What each kind of change stores: exactly what is applied, and what the database's gate compares. */
interface PrincipalCreateChange {
  name: string;
  email: string | null;
  role: Role;
  kind: 'user' | 'service';
}
interface PrincipalUpdateChange {
  role: Role;
  disabled: boolean;
  email?: string | null;
}
interface ProfileChange extends ProfileFields {
  approvers: string[];
}
interface ApiKeyChange {
  principal_id: string;
  secret_hash: string;
  name: string | null;
  expires_at: string | null;
}
interface BindingChange {
  principal_id: string;
  match_kind: BindingMatch['kind'];
  match_value: string;
  name: string | null;
}
interface IntakeKeyChange {
  principal_id: string;
  alg: IntakePublicKey['alg'];
  /** SubjectPublicKeyInfo, hex: the database's gate compares it with the row. */
  public_key: string;
  thumbprint: string;
  name: string | null;
}
interface Changes {
  principal_create: PrincipalCreateChange;
  principal_update: PrincipalUpdateChange;
  profile_create: ProfileChange;
  profile_update: ProfileChange;
  api_key_create: ApiKeyChange;
  client_certificate_create: BindingChange;
  intake_key_create: IntakeKeyChange;
}

interface Proposal<K extends ConfigurationKind> {
  readonly kind: K;
  /** The row created or changed; ids of new rows are chosen here so the request can name them. */
  readonly targetId: string;
  readonly change: Changes[K];
  /** Why it weakens the gate; empty: it does not, and applies at once whatever the org. */
  readonly weakenings: readonly string[];
  /** The change in a few words, for the approver. */
  readonly describe: string;
}

export type Configured<T> =
  | { readonly status: 'applied'; readonly result: T }
  | { readonly status: 'pending'; readonly request: ConfigRequestRow };

/** Applies a stored change: the one path for both a direct change and an approved request. */
async function applyChange(
  tx: Executor,
  orgId: string,
  actor: Actor,
  kind: ConfigurationKind,
  targetId: string,
  change: unknown,
  configRequestId?: string,
): Promise<unknown> {
  const context = { id: targetId, configRequestId };
  switch (kind) {
    case 'principal_create':
      return applyCreatePrincipal(tx, orgId, actor, change as PrincipalCreateChange, context);
    case 'principal_update':
      return applyUpdatePrincipal(tx, orgId, actor, targetId, change as PrincipalUpdateChange, context);
    case 'profile_create':
    case 'profile_update': {
      const { approvers, ...fields } = change as ProfileChange;
      return applySaveProfile(
        tx,
        orgId,
        actor,
        kind === 'profile_create' ? null : targetId,
        fields,
        approvers,
        context,
      );
    }
    case 'api_key_create': {
      const c = change as ApiKeyChange;
      return applyEnrollmentKey(
        tx,
        orgId,
        actor,
        c.principal_id,
        { id: targetId, secretHash: Buffer.from(c.secret_hash, 'hex') },
        { name: c.name, expiresAt: c.expires_at ? new Date(c.expires_at) : null },
        context,
      );
    }
    case 'client_certificate_create': {
      const c = change as BindingChange;
      return applyBindClientCertificateFor(
        tx,
        orgId,
        actor,
        c.principal_id,
        { kind: c.match_kind, value: c.match_value },
        c.name,
        context,
      );
    }
    case 'intake_key_create': {
      const c = change as IntakeKeyChange;
      const key: IntakePublicKey = { alg: c.alg, spki: Buffer.from(c.public_key, 'hex'), thumbprint: c.thumbprint };
      return applyRegisterIntakeKeyFor(tx, orgId, actor, c.principal_id, key, c.name, context);
    }
  }
}

function requireAdmin(p: Principal, action: string): void {
  if (!isAdmin(p)) throw new DomainError('forbidden', `role ${p.role} may not ${action}`);
}

/**
 * Applies the proposal at once when it does not weaken the gate or the org is
 * not yet two-person ready; otherwise records it as a configuration request.
 */
async function configure<K extends ConfigurationKind, T>(
  db: Db,
  settings: WorkflowSettings,
  admin: Caller,
  proposal: Proposal<K>,
  justification: string | undefined,
): Promise<Configured<T>> {
  requireAdmin(admin, 'change the configuration');
  return db.transaction().execute(async (tx) => {
    const gated = proposal.weakenings.length > 0 && (await identity.twoPersonReady(tx, admin.orgId));
    if (!gated) {
      const result = (await applyChange(
        tx,
        admin.orgId,
        actorOf(admin),
        proposal.kind,
        proposal.targetId,
        proposal.change,
      )) as T;
      return { status: 'applied', result };
    }
    const request = await configRequests.insertConfigRequest(tx, {
      id: randomUUID(),
      orgId: admin.orgId,
      kind: proposal.kind,
      targetId: proposal.targetId,
      change: proposal.change as unknown as Record<string, unknown>,
      summary: `${proposal.describe}: ${proposal.weakenings.join('; ')}`,
      justification: justification?.trim() || '(none)',
      requestedBy: admin.id,
      expiresAt: new Date(Date.now() + settings.approvalTimeoutMs),
    });
    await appendAudit(tx, {
      orgId: admin.orgId,
      actor: actorOf(admin),
      action: 'config_request_submitted',
      resourceType: 'config_request',
      resourceId: request.id,
      details: {
        kind: request.kind,
        target_id: request.target_id,
        summary: request.summary,
        justification: request.justification,
        expires_at: request.expires_at.toISOString(),
      },
    });
    await addOutboxEvents(tx, admin.orgId, [{ topic: 'config.submitted', payload: { config_request_id: request.id } }]);
    return { status: 'pending', request };
  });
}

const gateFields = (p: ProfileFields & { approvers: readonly string[] }): GateFields => ({
  environment: p.environment,
  requires_approval: p.requires_approval,
  approvals_required: p.approvals_required,
  allowed_domains: p.allowed_domains,
  validity_days: p.validity_days,
  allow_bypass: p.allow_bypass,
  issuer: p.issuer,
  approvers: p.approvers,
});

export function configurePrincipal(
  db: Db,
  settings: WorkflowSettings,
  admin: Caller,
  input: PrincipalInput,
  justification?: string,
) {
  const change: PrincipalCreateChange = {
    name: input.name,
    email: input.email ?? null,
    role: input.role,
    kind: input.kind ?? 'user',
  };
  return configure<'principal_create', Awaited<ReturnType<typeof applyCreatePrincipal>>>(
    db,
    settings,
    admin,
    {
      kind: 'principal_create',
      targetId: randomUUID(),
      change,
      weakenings: principalWeakenings(null, { role: input.role, disabled: false }),
      describe: `create ${change.kind} principal ${change.name} (${change.role})`,
    },
    justification,
  );
}

export async function configurePrincipalUpdate(
  db: Db,
  settings: WorkflowSettings,
  admin: Caller,
  principalId: string,
  input: PrincipalChange,
  justification?: string,
) {
  const before = await identity.findPrincipal(db, admin.orgId, principalId);
  if (!before) throw notFound('principal');
  const change: PrincipalUpdateChange = {
    role: (input.role ?? before.role) as Role,
    disabled: input.disabled ?? before.disabled_at !== null,
    ...(input.email !== undefined ? { email: input.email } : {}),
  };
  return configure<'principal_update', Awaited<ReturnType<typeof applyUpdatePrincipal>>>(
    db,
    settings,
    admin,
    {
      kind: 'principal_update',
      targetId: principalId,
      change,
      weakenings: principalWeakenings({ role: before.role, disabled: before.disabled_at !== null }, change),
      describe: `change principal ${before.name}`,
    },
    justification,
  );
}

export async function configureProfile(
  db: Db,
  settings: WorkflowSettings,
  admin: Caller,
  id: string | null,
  fields: ProfileFields,
  approvers: readonly string[],
  justification?: string,
): Promise<Configured<ProfileWithApprovers>> {
  const before = id ? await profiles.findProfile(db, admin.orgId, id) : null;
  if (id && !before) throw notFound('profile');
  const change: ProfileChange = { ...fields, approvers: [...new Set(approvers)] };
  return configure(
    db,
    settings,
    admin,
    {
      kind: id ? 'profile_update' : 'profile_create',
      targetId: id ?? randomUUID(),
      change,
      weakenings: profileWeakenings(before ? gateFields(before) : null, gateFields(change)),
      describe: id ? `change profile ${before?.name}` : `create profile ${fields.name}`,
    },
    justification,
  );
}

/**
 * An enrollment key for another principal. The key is generated now and shown
 * once to the admin who asked; while its request waits it does not exist
 * (only its hash is in the request), and it comes to life when another admin
 * approves.
 */
export async function configureEnrollmentKey(
  db: Db,
  settings: WorkflowSettings,
  admin: Caller,
  principalId: string,
  opts: KeyOptions,
  justification?: string,
): Promise<{ key: IssuedKey; configured: Configured<unknown> }> {
  const owner = await identity.findPrincipal(db, admin.orgId, principalId);
  if (!owner) throw notFound('principal');
  const generated = generateApiKey();
  const change: ApiKeyChange = {
    principal_id: principalId,
    secret_hash: generated.secretHash.toString('hex'),
    name: opts.name ?? null,
    expires_at: opts.expiresAt?.toISOString() ?? null,
  };
  const configured = await configure(
    db,
    settings,
    admin,
    {
      kind: 'api_key_create',
      targetId: generated.id,
      change,
      weakenings: [`an enrollment key for ${owner.name}, which ${admin.name} will hold until ${owner.name} enrolls`],
      describe: `create an API key for ${owner.name} (${owner.role})`,
    },
    justification,
  );
  return {
    key: {
      id: generated.id,
      principal_id: principalId,
      key: generated.token,
      name: change.name,
      expires_at: change.expires_at,
      created_at: new Date().toISOString(),
      created_by: admin.id,
      purpose: 'enrollment',
    },
    configured,
  };
}

export async function configureClientCertificate(
  db: Db,
  settings: WorkflowSettings,
  admin: Caller,
  principalId: string,
  match: BindingMatch,
  name: string | null,
  justification?: string,
) {
  const owner = await identity.findPrincipal(db, admin.orgId, principalId);
  if (!owner) throw notFound('principal');
  return configure<'client_certificate_create', Awaited<ReturnType<typeof applyBindClientCertificateFor>>>(
    db,
    settings,
    admin,
    {
      kind: 'client_certificate_create',
      targetId: randomUUID(),
      change: { principal_id: principalId, match_kind: match.kind, match_value: match.value, name },
      weakenings: [`a client certificate (${match.kind} ${match.value}) for ${owner.name}, made by ${admin.name}`],
      describe: `bind a client certificate to ${owner.name}`,
    },
    justification,
  );
}

/** An intake key an admin registers for a service principal: a credential for someone else. */
export async function configureIntakeKey(
  db: Db,
  settings: WorkflowSettings,
  admin: Caller,
  principalId: string,
  input: IntakeKeyInput,
  justification?: string,
) {
  const key = parseIntakePublicKey(input.public_key);
  const owner = await identity.findPrincipal(db, admin.orgId, principalId);
  if (!owner) throw notFound('principal');
  return configure<'intake_key_create', IntakeKeyView>(
    db,
    settings,
    admin,
    {
      kind: 'intake_key_create',
      targetId: randomUUID(),
      change: {
        principal_id: principalId,
        alg: key.alg,
        public_key: key.spki.toString('hex'),
        thumbprint: key.thumbprint,
        name: input.name ?? null,
      },
      weakenings: [
        `an intake signing key (${key.alg} ${key.thumbprint}) for ${owner.name}, registered by ${admin.name}`,
      ],
      describe: `register an intake key for ${owner.name}`,
    },
    justification,
  );
}

// ---------------------------------------------------------------------------------------------
// Deciding on a configuration request.

export interface ConfigDecision {
  readonly request: ConfigRequestRow;
  /** The applied change's result when approved. */
  readonly applied: unknown;
}

const alreadyDecided = (r: ConfigRequestRow) =>
  new DomainError('already_decided', `configuration request is already ${r.state}`, { state: r.state });

async function lockForDecision(tx: Executor, p: Principal, id: string) {
  const r = await configRequests.lockConfigRequest(tx, p.orgId, id);
  if (!r) throw notFound('configuration request');
  return r;
}

/** Another admin, its own credential, not related by creation to the requester (SPEC §1.6); pending, in time. */
async function assertMayDecideConfig(tx: Executor, c: Caller, r: ConfigRequestRow): Promise<void> {
  requireAdmin(c, 'decide configuration requests');
  if (c.id === r.requested_by) {
    throw new DomainError(
      'two_person_integrity',
      'two-person integrity: the admin who asked for a configuration change cannot decide it; another admin must',
    );
  }
  if (await identity.relatedByCreation(tx, c.id, r.requested_by)) {
    throw new DomainError(
      'two_person_integrity',
      'two-person integrity: one of you created the other (directly or through principals it created), so you do not count as a second admin here',
    );
  }
  assertOwnCredential(c, 'decide');
  if (r.state !== 'pending') throw alreadyDecided(r);
  if (r.expires_at.getTime() <= Date.now()) {
    throw new DomainError('already_decided', `configuration request expired at ${r.expires_at.toISOString()}`, {
      state: 'expired',
    });
  }
}

async function finishConfig(
  tx: Executor,
  r: ConfigRequestRow,
  state: Exclude<ConfigurationState, 'pending'>,
  actor: Actor,
  caller: Caller | null,
  note: string | null,
): Promise<ConfigRequestRow> {
  const decided = await configRequests.markConfigDecided(tx, {
    id: r.id,
    state,
    decidedBy: actor.id,
    decidedByType: actor.type,
    note,
    credential: caller && state !== 'cancelled' ? { kind: caller.credential.kind, id: caller.credential.id } : null,
  });
  if (!decided) throw alreadyDecided(r);
  await appendAuditMany(tx, [
    {
      orgId: r.org_id,
      actor,
      action: `config_request_${state}`,
      resourceType: 'config_request',
      resourceId: r.id,
      details: { state, kind: r.kind, target_id: r.target_id, note },
    },
  ]);
  await addOutboxEvents(tx, r.org_id, [
    { topic: 'config.decided', payload: { config_request_id: r.id, outcome: state } },
  ]);
  return decided;
}

/** Approves and applies the change, as its requester's, in one transaction; a change that no longer applies is refused whole. */
export async function approveConfigRequest(
  db: Db,
  c: Caller,
  id: string,
  note: string | null,
): Promise<ConfigDecision> {
  return db.transaction().execute(async (tx) => {
    const r = await lockForDecision(tx, c, id);
    await assertMayDecideConfig(tx, c, r);
    const decided = await finishConfig(tx, r, 'approved', actorOf(c), c, note);
    const requester: Actor = { id: r.requested_by, type: 'user' };
    const applied = await applyChange(
      tx,
      r.org_id,
      requester,
      r.kind as ConfigurationKind,
      r.target_id,
      r.change,
      r.id,
    );
    return { request: decided, applied };
  });
}

export async function rejectConfigRequest(db: Db, c: Caller, id: string, note: string): Promise<ConfigDecision> {
  return db.transaction().execute(async (tx) => {
    const r = await lockForDecision(tx, c, id);
    await assertMayDecideConfig(tx, c, r);
    return { request: await finishConfig(tx, r, 'rejected', actorOf(c), c, note), applied: null };
  });
}

/** The requester withdraws its request, or any admin closes it; nothing is applied. */
export async function cancelConfigRequest(db: Db, c: Caller, id: string, reason: string): Promise<ConfigDecision> {
  return db.transaction().execute(async (tx) => {
    const r = await lockForDecision(tx, c, id);
    requireAdmin(c, 'cancel configuration requests');
    assertOwnCredential(c, 'cancel a configuration request');
    if (r.state !== 'pending') throw alreadyDecided(r);
    return { request: await finishConfig(tx, r, 'cancelled', actorOf(c), c, reason), applied: null };
  });
}

/** The reaper's run: pending requests past their deadline expire, as system-reaper, with their mail. */
export async function expireConfigRequests(db: Db, now: Date, limit: number): Promise<ConfigRequestRow[]> {
  return db.transaction().execute(async (tx) => {
    const expired = await configRequests.expireConfigRequests(tx, now, limit, SYSTEM_ACTORS.reaper);
    await appendAuditMany(
      tx,
      expired.map((r) => ({
        orgId: r.org_id,
        actor: SYSTEM_ACTORS.reaper,
        action: 'config_request_expired' as const,
        resourceType: 'config_request',
        resourceId: r.id,
        details: { state: 'expired', kind: r.kind, target_id: r.target_id, note: r.decision_note },
      })),
    );
    for (const r of expired) {
      await addOutboxEvents(tx, r.org_id, [
        { topic: 'config.decided', payload: { config_request_id: r.id, outcome: 'expired' } },
      ]);
    }
    return expired;
  });
}

export async function listConfigRequests(
  db: Db,
  p: Principal,
  q: { state?: ConfigurationState | undefined; cursor?: string | undefined; limit: number },
) {
  if (p.role !== 'admin' && p.role !== 'auditor') {
    throw new DomainError('forbidden', `role ${p.role} may not read configuration requests`);
  }
  return configRequests.listConfigRequests(db, {
    orgId: p.orgId,
    state: q.state,
    after: decodeCursor(q.cursor),
    limit: q.limit,
  });
}

export async function getConfigRequest(db: Db, p: Principal, id: string) {
  if (p.role !== 'admin' && p.role !== 'auditor') {
    throw new DomainError('forbidden', `role ${p.role} may not read configuration requests`);
  }
  const r = await configRequests.findConfigRequest(db, p.orgId, id);
  if (!r) throw notFound('configuration request');
  return r;
}

/** The org's two-person readiness, for the API, the console and the boot warning. */
export async function orgStatus(db: Db, p: Principal) {
  const all = await identity.orgReadiness(db);
  const mine = all.find((o) => o.org_id === p.orgId);
  if (!mine) throw notFound('org');
  return mine;
}
