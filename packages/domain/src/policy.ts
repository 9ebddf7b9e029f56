import type { Caller, Principal, Role } from './actors.ts';
import { DomainError } from './errors.ts';

/**
 * Authorization rules of SPEC §2 and §1.6 in one place, as pure functions, so
 * the HTTP layer, the intake queue and the tests all ask the same questions.
 * The database enforces the decision rules again (migration 0015).
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

/**
 * Environments whose profiles may allow the approval bypass. Every other name
 * counts as production, so a new or misspelt environment fails safe. The
 * database's is_bypass_environment() holds the same list (a test compares).
 */
export const BYPASS_ENVIRONMENTS = [
  'development',
  'dev',
  'test',
  'testing',
  'ci',
  'sandbox',
  'local',
  'qa',
  'staging',
] as const;
export const isBypassEnvironment = (environment: string): boolean =>
  (BYPASS_ENVIRONMENTS as readonly string[]).includes(environment);

export interface DecisionContext {
  readonly requestedBy: string;
  /** Principal ids listed as approvers on the request's profile. */
  readonly profileApprovers: readonly string[];
  /** The decider created the requester or was created by it, directly or through principals one created. */
  readonly relatedToRequester: boolean;
}

export const TWO_PERSON_MESSAGE =
  'two-person integrity: the requester of a certificate cannot decide its own approval request';

/**
 * The credential rule of SPEC §1.6: a vote or decision is made only with a
 * credential the principal created for itself. An enrollment credential (an
 * admin minted it, a bootstrap printed it) proves only that someone handed it
 * over, so the person who made it could be the one using it.
 */
export function assertOwnCredential(c: Caller, action: string): void {
  if (c.credential.own) return;
  throw new DomainError(
    'enrollment_credential',
    `this ${c.credential.kind.replace('_', ' ')} was created for ${c.name} by ${c.credential.createdBy}: an enrollment credential can read, request and mint ${c.name}'s own key (POST /api/v1/me/api-keys, or 'countersign enroll'), never ${action}`,
  );
}

/**
 * May this caller cast a decision (approve or reject)? Two-person integrity is
 * checked first and on the principal, so a second key of the requester is
 * refused with the same answer; then provenance (a principal created by the
 * requester, or that created it, is not a second person); then the role; then
 * the credential.
 */
export function assertMayDecide(c: Caller, ctx: DecisionContext): void {
  if (c.id === ctx.requestedBy) throw new DomainError('two_person_integrity', TWO_PERSON_MESSAGE);
  if (ctx.relatedToRequester) {
    throw new DomainError(
      'two_person_integrity',
      'two-person integrity: one of you created the other (directly or through principals it created), so you do not count as a second person on this request',
    );
  }
  if (c.role !== 'admin' && !(c.role === 'operator' && ctx.profileApprovers.includes(c.id))) {
    throw new DomainError('forbidden', 'not an eligible approver for this profile');
  }
  assertOwnCredential(c, 'vote or decide');
}

/** M-of-N: the request is approved once this many distinct approvers voted. */
export const quorumReached = (votes: number, required: number): boolean => votes >= required;
