export const ROLES = ['admin', 'operator', 'requester', 'auditor'] as const;
export type Role = (typeof ROLES)[number];

export const ACTOR_TYPES = ['user', 'service', 'system'] as const;
export type ActorType = (typeof ACTOR_TYPES)[number];

export const PRINCIPAL_KINDS = ['user', 'service'] as const;
export type PrincipalKind = (typeof PRINCIPAL_KINDS)[number];

/** Who did something. For principals `id` is the principal id; system actors have fixed names. */
export interface Actor {
  readonly id: string;
  readonly type: ActorType;
}

/** An authenticated principal acting inside its org. Identity is the principal, never the key. */
export interface Principal {
  readonly id: string;
  readonly orgId: string;
  readonly role: Role;
  readonly kind: PrincipalKind;
  readonly name: string;
}

/** How a principal proved who it is on one request. */
export const CREDENTIAL_KINDS = ['api_key', 'client_certificate'] as const;
export type CredentialKind = (typeof CREDENTIAL_KINDS)[number];

/**
 * The credential a request was made with. `own` when the principal created it
 * for itself; otherwise it is an enrollment credential (someone made it for
 * the principal), which may read, request and mint the principal's own
 * credential, never vote or decide (SPEC §1.6).
 */
export interface Credential {
  readonly kind: CredentialKind;
  readonly id: string;
  readonly own: boolean;
  /** Who created it: the principal itself, another principal's id, or a system actor. */
  readonly createdBy: string;
}

/** A principal together with the credential it presented: what every decision needs. */
export interface Caller extends Principal {
  readonly credential: Credential;
}

export const SYSTEM_ACTORS = {
  reaper: { id: 'system-reaper', type: 'system' },
  scheduler: { id: 'system-scheduler', type: 'system' },
  bypass: { id: 'system-bypass', type: 'system' },
  issuer: { id: 'system-issuer', type: 'system' },
  notifier: { id: 'system-notifier', type: 'system' },
  relay: { id: 'system-approval-relay', type: 'system' },
  bootstrap: { id: 'system-bootstrap', type: 'system' },
  /** Applies a configuration change once another admin approved it. */
  configuration: { id: 'system-configuration', type: 'system' },
} as const satisfies Record<string, Actor>;

export const actorOf = (p: Principal): Actor => ({ id: p.id, type: p.kind === 'service' ? 'service' : 'user' });
