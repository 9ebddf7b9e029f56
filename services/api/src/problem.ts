import { DomainError, ERROR_STATUS, type ErrorCode } from '@countersign/domain';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';

/**
 * Every error leaves as RFC 9457 problem+json with a stable `code` and the
 * request id. Status comes from the one code table in the domain; a 500 never
 * shows its internals.
 */
export interface Problem {
  type: string;
  title: string;
  status: number;
  code: ErrorCode;
  detail: string;
  instance: string;
  request_id: string;
  errors?: { path: string; message: string }[];
}

const TITLES: Partial<Record<ErrorCode, string>> = {
  unauthenticated: 'Unauthenticated',
  forbidden: 'Forbidden',
  two_person_integrity: 'Two-person integrity',
  enrollment_credential: 'Enrollment credential',
  not_found: 'Not found',
  validation_failed: 'Validation failed',
  domain_not_allowed: 'Domain not allowed',
  already_decided: 'Already decided',
  already_voted: 'Already voted',
  renewal_in_progress: 'Renewal in progress',
  idempotency_conflict: 'Idempotency conflict',
  rate_limited: 'Rate limited',
  too_many_open_requests: 'Too many open requests',
};

export function problemOf(code: ErrorCode, detail: string, req: FastifyRequest, errors?: Problem['errors']): Problem {
  return {
    type: `urn:countersign:problem:${code}`,
    title: TITLES[code] ?? code.replaceAll('_', ' '),
    status: ERROR_STATUS[code],
    code,
    detail,
    instance: req.url.split('?')[0] ?? req.url,
    request_id: String(req.id),
    ...(errors ? { errors } : {}),
  };
}

export function sendProblem(reply: FastifyReply, problem: Problem): FastifyReply {
  return reply.code(problem.status).type('application/problem+json').send(problem);
}

/** Maps framework and domain errors to problems. */
export function toProblem(err: FastifyError | Error, req: FastifyRequest): Problem {
  if (err instanceof DomainError) return problemOf(err.code, err.message, req);
  const fe = err as FastifyError;
  if (fe.validation) {
    const errors = fe.validation.map((v) => ({
      path: `${fe.validationContext ?? 'body'}${v.instancePath || ''}`,
      message:
        v.keyword === 'additionalProperties' &&
        typeof v.params === 'object' &&
        v.params !== null &&
        'additionalProperty' in v.params
          ? `unknown property "${String(v.params.additionalProperty)}"`
          : (v.message ?? 'is invalid'),
    }));
    return problemOf('validation_failed', errors.map((e) => `${e.path}: ${e.message}`).join('; '), req, errors);
  }
  switch (fe.code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return problemOf('unsupported_media_type', 'send the body as application/json', req);
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return problemOf('payload_too_large', 'the request body is too large', req);
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return problemOf('validation_failed', 'the request body is empty or malformed', req);
  }
  if (fe.statusCode === 400 || err instanceof SyntaxError) {
    return problemOf('validation_failed', `malformed request: ${err.message}`, req);
  }
  if (fe.statusCode === 404) return problemOf('not_found', 'no such route', req);
  if (fe.statusCode === 429) return problemOf('rate_limited', err.message, req);
  return problemOf('internal', 'internal error; quote the request id when reporting it', req);
}
