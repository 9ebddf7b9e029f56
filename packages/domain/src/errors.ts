/**
 * Every failure a client can see has a stable code. The HTTP status is derived
 * from the code in exactly one table so that routes never pick statuses ad hoc.
 */
export const ERROR_STATUS = {
  unauthenticated: 401,
  forbidden: 403,
  two_person_integrity: 403,
  /** A vote or decision made with a credential someone else created for the principal. */
  enrollment_credential: 403,
  not_found: 404,
  validation_failed: 400,
  invalid_csr: 400,
  domain_not_allowed: 422,
  already_decided: 409,
  already_voted: 409,
  renewal_in_progress: 409,
  idempotency_conflict: 409,
  conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  rate_limited: 429,
  /** A principal already has COUNTERSIGN_MAX_OPEN_REQUESTS requests open; it may submit again once some are decided. */
  too_many_open_requests: 429,
  internal: 500,
  unavailable: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export class DomainError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'DomainError';
    this.code = code;
    this.details = details;
  }

  get status(): number {
    return ERROR_STATUS[this.code];
  }
}

export const isDomainError = (e: unknown): e is DomainError => e instanceof DomainError;

export const notFound = (what: string): DomainError => new DomainError('not_found', `${what} not found`);
