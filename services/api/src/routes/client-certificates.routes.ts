import { X509Certificate } from 'node:crypto';
import { clientCertificates, type Db, decodeCursor, pageOf } from '@countersign/db';
import { DomainError, requireRole } from '@countersign/domain';
import {
  bindOwnClientCertificate,
  configureClientCertificate,
  deleteClientCertificate,
  type WorkflowSettings,
} from '@countersign/workflow';
import { type Static, Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { describeCertificate, normaliseFingerprint, normaliseSan, who } from '../auth.ts';
import { errorResponses, IdParams, Nullable, PageQuery, Pem, pageOfSchema, Strict, Uuid } from '../schemas.ts';
import { Justification, PendingConfigurationSchema, sendConfigured } from './configuration.routes.ts';

/**
 * Client-certificate bindings for mTLS (SPEC §2): an admin registers which
 * certificate a service principal presents, by SHA-256 fingerprint (pins one
 * certificate), by one SAN (`DNS:` or `URI:`, survives re-issuance by the
 * client CA), or by uploading the certificate (its fingerprint is bound).
 * Each registration and deletion is audited in its transaction.
 */
const BindingSchema = Type.Object({
  id: Uuid,
  principal_id: Uuid,
  match_kind: Type.Union([Type.Literal('fingerprint'), Type.Literal('san')]),
  match_value: Type.String(),
  name: Nullable(Type.String()),
  created_by: Type.String(),
  created_at: Type.String({ format: 'date-time' }),
});

const RegisterBody = Type.Object(
  {
    fingerprint: Type.Optional(
      Type.String({
        minLength: 64,
        maxLength: 110,
        description: 'SHA-256 of the DER certificate, hex (colons allowed)',
      }),
    ),
    san: Type.Optional(Type.String({ minLength: 5, maxLength: 504, description: 'DNS:<name> or URI:<uri>' })),
    certificate: Type.Optional(Pem),
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    justification: Justification,
  },
  Strict,
);
type RegisterBody = Static<typeof RegisterBody>;

const ListQuery = Type.Object({ ...PageQuery, principal_id: Type.Optional(Uuid) }, Strict);

const view = (r: clientCertificates.ClientCertificateRow) => ({
  id: r.id,
  principal_id: r.principal_id,
  match_kind: r.match_kind as 'fingerprint' | 'san',
  match_value: r.match_value,
  name: r.name,
  created_by: r.created_by,
  created_at: r.created_at.toISOString(),
});

function matchOf(body: RegisterBody): { kind: 'fingerprint' | 'san'; value: string } {
  const given = [body.fingerprint, body.san, body.certificate].filter((v) => v !== undefined);
  if (given.length !== 1) {
    throw new DomainError('validation_failed', 'send exactly one of fingerprint, san or certificate');
  }
  if (body.fingerprint !== undefined) {
    const value = normaliseFingerprint(body.fingerprint);
    if (!value)
      throw new DomainError('validation_failed', 'fingerprint must be 64 hex digits (SHA-256), colons allowed');
    return { kind: 'fingerprint', value };
  }
  if (body.san !== undefined) {
    const value = normaliseSan(body.san);
    if (!value)
      throw new DomainError(
        'validation_failed',
        'san must be DNS:<name> or URI:<uri> without spaces, commas or quotes',
      );
    return { kind: 'san', value };
  }
  let der: Buffer;
  try {
    der = new X509Certificate(body.certificate ?? '').raw;
  } catch {
    throw new DomainError('validation_failed', 'certificate is not a PEM X.509 certificate');
  }
  return { kind: 'fingerprint', value: describeCertificate(der).fingerprint };
}

export function clientCertificateRoutes(app: FastifyInstance, db: Db, settings: WorkflowSettings): void {
  app.post(
    '/api/v1/principals/:id/client-certificates',
    {
      schema: {
        tags: ['principals'],
        summary:
          'Bind a client certificate (fingerprint, SAN or the certificate itself) to a service principal; for another principal it is an enrollment credential',
        params: IdParams,
        body: RegisterBody,
        response: { 201: BindingSchema, 202: PendingConfigurationSchema, ...errorResponses },
      },
    },
    async (req, reply) => {
      const p = who(req);
      const principalId = (req.params as { id: string }).id;
      const body = req.body as RegisterBody;
      if (principalId === p.id) {
        return reply.code(201).send(view(await bindOwnClientCertificate(db, p, matchOf(body), body.name ?? null)));
      }
      requireRole(p, ['admin'], 'manage client certificates');
      const c = await configureClientCertificate(
        db,
        settings,
        p,
        principalId,
        matchOf(body),
        body.name ?? null,
        body.justification,
      );
      return sendConfigured(reply, c, 201, view);
    },
  );

  app.post(
    '/api/v1/me/client-certificates',
    {
      schema: {
        tags: ['principals'],
        summary: 'Register your own client certificate (a service principal): a credential you may decide with',
        body: RegisterBody,
        response: { 201: BindingSchema, ...errorResponses },
      },
    },
    async (req, reply) => {
      const body = req.body as RegisterBody;
      const row = await bindOwnClientCertificate(db, who(req), matchOf(body), body.name ?? null);
      return reply.code(201).send(view(row));
    },
  );

  app.get(
    '/api/v1/client-certificates',
    {
      schema: {
        tags: ['principals'],
        summary: 'List client-certificate bindings, oldest first',
        querystring: ListQuery,
        response: { 200: pageOfSchema(BindingSchema), ...errorResponses },
      },
    },
    async (req) => {
      const p = who(req);
      requireRole(p, ['admin', 'auditor'], 'list client certificates');
      const q = req.query as Static<typeof ListQuery>;
      const limit = q.limit ?? 50;
      const rows = await clientCertificates.listBindings(db, {
        orgId: p.orgId,
        ...(q.principal_id ? { principalId: q.principal_id } : {}),
        after: decodeCursor(q.cursor),
        limit,
      });
      return pageOf(rows, limit, (r) => ({ at: r.created_at, id: r.id }), view);
    },
  );

  app.delete(
    '/api/v1/client-certificates/:id',
    {
      schema: {
        tags: ['principals'],
        summary: 'Delete a client-certificate binding; the certificate no longer authenticates',
        params: IdParams,
        response: { 200: Type.Object({ id: Uuid, deleted: Type.Boolean() }), ...errorResponses },
      },
    },
    async (req) => {
      const p = who(req);
      requireRole(p, ['admin'], 'manage client certificates');
      const id = (req.params as { id: string }).id;
      await deleteClientCertificate(db, p, id);
      return { id, deleted: true };
    },
  );
}
