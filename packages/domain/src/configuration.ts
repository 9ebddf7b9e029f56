import type { Role } from './actors.ts';

/**
 * Which configuration changes could weaken the gate (SPEC §1.6). Once an org
 * is two-person ready (two enabled admins, neither created by the other),
 * each such change is a configuration request that another admin approves;
 * everything else applies at once. The database classifies the same changes
 * in its gate triggers (migration 0016), so a service that skipped this
 * function would still be refused.
 */
export const CONFIGURATION_KINDS = [
  'principal_create',
  'principal_update',
  'profile_create',
  'profile_update',
  'api_key_create',
  'client_certificate_create',
  'intake_key_create',
] as const;
export type ConfigurationKind = (typeof CONFIGURATION_KINDS)[number];

export const CONFIGURATION_STATES = ['pending', 'approved', 'rejected', 'expired', 'cancelled'] as const;
export type ConfigurationState = (typeof CONFIGURATION_STATES)[number];

/** Roles that can decide (admins everything, operators the profiles that list them). */
export const DECIDING_ROLES: readonly Role[] = ['admin', 'operator'];
const decides = (role: string): boolean => (DECIDING_ROLES as readonly string[]).includes(role);

/** The fields of a profile that the gate depends on. */
export interface GateFields {
  readonly environment: string;
  readonly requires_approval: boolean;
  readonly approvals_required: number;
  readonly allowed_domains: readonly string[];
  readonly validity_days: number;
  readonly allow_bypass: boolean;
  readonly issuer: string;
  readonly approvers: readonly string[];
}

/**
 * How a profile change weakens the gate, one line per weakening (empty: it
 * only tightens or leaves the gate as it was). A new profile always counts:
 * it opens names to issuance that no profile covered.
 */
export function profileWeakenings(before: GateFields | null, after: GateFields): string[] {
  if (before === null) {
    return [
      `a new profile for ${after.allowed_domains.join(', ')} (${after.environment}, ${
        after.requires_approval ? `${after.approvals_required} approval(s)` : 'no approval'
      }${after.allow_bypass ? ', bypass allowed' : ''})`,
    ];
  }
  const out: string[] = [];
  if (before.requires_approval && !after.requires_approval) out.push('requires_approval: true → false');
  if (after.approvals_required < before.approvals_required) {
    out.push(`approvals_required: ${before.approvals_required} → ${after.approvals_required}`);
  }
  if (!before.allow_bypass && after.allow_bypass) out.push('allow_bypass: false → true');
  if (after.validity_days > before.validity_days) {
    out.push(`validity_days: ${before.validity_days} → ${after.validity_days}`);
  }
  const wider = after.allowed_domains.filter((d) => !before.allowed_domains.includes(d));
  if (wider.length > 0) out.push(`allowed_domains adds ${wider.join(', ')}`);
  if (after.environment !== before.environment) out.push(`environment: ${before.environment} → ${after.environment}`);
  if (after.issuer !== before.issuer) out.push(`issuer: ${before.issuer} → ${after.issuer}`);
  const added = after.approvers.filter((a) => !before.approvers.includes(a));
  if (added.length > 0) out.push(`approvers add ${added.join(', ')}`);
  return out;
}

export interface PrincipalGateFields {
  readonly role: string;
  readonly disabled: boolean;
}

/**
 * How a principal change weakens the gate: a new or re-enabled principal that
 * can decide, a promotion to a deciding role, or an admin demoted or
 * disabled (one admin removing the other would leave it alone again).
 */
export function principalWeakenings(before: PrincipalGateFields | null, after: PrincipalGateFields): string[] {
  if (before === null) return decides(after.role) ? [`a new ${after.role}`] : [];
  const out: string[] = [];
  const couldDecide = decides(before.role) && !before.disabled;
  const canDecide = decides(after.role) && !after.disabled;
  if (canDecide && (!couldDecide || (after.role === 'admin' && before.role !== 'admin'))) {
    out.push(
      before.disabled && !after.disabled ? `re-enabled as ${after.role}` : `role: ${before.role} → ${after.role}`,
    );
  }
  if (before.role === 'admin' && !before.disabled && (after.role !== 'admin' || after.disabled)) {
    out.push(after.disabled ? 'an admin disabled' : `an admin demoted to ${after.role}`);
  }
  return out;
}
