import type { Principal, Role } from './actors.ts';
import { DomainError } from './errors.ts';

/**
 * Authorization rules of SPEC §2 in one place, as pure functions, so the HTTP
 * layer, the intake queue and the tests all ask the same questions.
 */
const REQUESTING_ROLES: readonly Role[] = ['admin', 'operator', 'requester'];
const QUEUE_READERS: readonly Role[] = ['admin', 'operator', 'auditor'];

export const canRequest = (p: Principal): boolean => REQUESTING_ROLES.includes(p.role);

/** Requesters only see what they asked for; everyone else reads the whole org. */
export const readsOnlyOwn = (p: Principal): boolean => p.role === 'requester';

export const canReadQueue = (p: Principal): boolean => QUEUE_READERS.includes(p.role) || p.role === 'requester';

export const canReadAudit = (p: Principal): boolean => p.role === 'admin' || p.role === 'auditor';

export const isAdmin = (p: Principal): boolean => p.role === 'admin';

export function requireRole(p: Principal, roles: readonly Role[], action: string): void {
  if (!roles.includes(p.role)) {
    throw new DomainError('forbidden', `role ${p.role} may not ${action}`);
  }
}

export interface DecisionContext {
  readonly requestedBy: string;
  /** Principal ids listed as approvers on the request's profile. */
  readonly profileApprovers: readonly string[];
}

/**
 * May this principal cast a decision (approve or reject)? Two-person integrity
 * is checked first and on the principal, so a second key of the requester is
 * refused with the same answer.
 */
export function assertMayDecide(p: Principal, ctx: DecisionContext): void {
  if (p.id === ctx.requestedBy) {
    throw new DomainError(
      'two_person_integrity',
      'two-person integrity: the requester of a certificate cannot decide its own approval request',
    );
  }
  if (p.role === 'admin') return;
  if (p.role === 'operator' && ctx.profileApprovers.includes(p.id)) return;
  throw new DomainError('forbidden', 'not an eligible approver for this profile');
}

/** M-of-N: the request is approved once this many distinct approvers voted. */
export const quorumReached = (votes: number, required: number): boolean => votes >= required;
