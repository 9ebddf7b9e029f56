import type { Db } from '@countersign/db';
import { DomainError } from '@countersign/domain';
import { type Authenticated, authenticateApiKey } from '@countersign/workflow';
import type { FastifyRequest } from 'fastify';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Authenticated | null;
  }
}

/** Resolves the caller from `Authorization: Bearer <key>`; routes call `who(req)` to require one. */
export function authenticator(db: Db) {
  return async (req: FastifyRequest): Promise<void> => {
    const header = req.headers.authorization;
    if (header === undefined) return;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    if (!m?.[1]) throw new DomainError('unauthenticated', 'use Authorization: Bearer <api key>');
    req.principal = await authenticateApiKey(db, m[1]);
  };
}

export function who(req: FastifyRequest): Authenticated {
  if (!req.principal) {
    throw new DomainError('unauthenticated', 'a valid API key is required (Authorization: Bearer <key>)');
  }
  return req.principal;
}
