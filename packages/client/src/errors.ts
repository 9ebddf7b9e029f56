/**
 * The API answers every failure as RFC 9457 problem+json with a stable `code`
 * (SPEC §3). ApiError carries those fields so callers branch on `code`, never
 * on message text.
 */
export type KnownErrorCode =
  | 'unauthenticated'
  | 'forbidden'
  | 'two_person_integrity'
  | 'enrollment_credential'
  | 'not_found'
  | 'validation_failed'
  | 'invalid_csr'
  | 'domain_not_allowed'
  | 'already_decided'
  | 'already_voted'
  | 'renewal_in_progress'
  | 'idempotency_conflict'
  | 'conflict'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'rate_limited'
  | 'internal'
  | 'unavailable';

/** `unreachable` is the client's own: no HTTP answer came back. */
export type ErrorCode = KnownErrorCode | 'unreachable' | (string & {});

export interface FieldError {
  path: string;
  message: string;
}

export class ApiError extends Error {
  override readonly name = 'ApiError';
  readonly status: number;
  readonly code: ErrorCode;
  readonly title: string;
  readonly detail: string;
  readonly requestId: string | null;
  readonly errors: FieldError[];
  readonly method: string;
  readonly path: string;

  constructor(init: {
    status: number;
    code: ErrorCode;
    title?: string;
    detail: string;
    requestId?: string | null;
    errors?: FieldError[];
    method: string;
    path: string;
    cause?: unknown;
  }) {
    super(init.detail, init.cause === undefined ? undefined : { cause: init.cause });
    this.status = init.status;
    this.code = init.code;
    this.title = init.title ?? init.code;
    this.detail = init.detail;
    this.requestId = init.requestId ?? null;
    this.errors = init.errors ?? [];
    this.method = init.method;
    this.path = init.path;
  }

  /** True when the route itself does not exist on this server (an older api). */
  get routeMissing(): boolean {
    return this.status === 404 && this.detail.startsWith('no route ');
  }
}

export const isApiError = (e: unknown): e is ApiError => e instanceof ApiError;

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** Builds the error from an HTTP answer; a body that is not problem+json still yields a useful error. */
export function errorFromResponse(
  status: number,
  headers: { get(name: string): string | null },
  bodyText: string,
  method: string,
  path: string,
): ApiError {
  let body: Record<string, unknown> | null = null;
  try {
    const parsed: unknown = JSON.parse(bodyText);
    if (parsed && typeof parsed === 'object') body = parsed as Record<string, unknown>;
  } catch {
    body = null;
  }
  const errors = Array.isArray(body?.errors)
    ? body.errors.flatMap((e: unknown) => {
        if (!e || typeof e !== 'object') return [];
        const r = e as Record<string, unknown>;
        return [{ path: str(r.path) ?? '', message: str(r.message) ?? '' }];
      })
    : [];
  const fallbackDetail = bodyText.trim().slice(0, 200) || `HTTP ${status}`;
  return new ApiError({
    status,
    code: str(body?.code) ?? `http_${status}`,
    title: str(body?.title) ?? `HTTP ${status}`,
    detail: str(body?.detail) ?? fallbackDetail,
    requestId: str(body?.request_id) ?? headers.get('x-request-id'),
    errors,
    method,
    path,
  });
}
