import type { Db } from '@countersign/db';
import { requireRole } from '@countersign/domain';
import {
  configureIntakeKey,
  type IntakeKeyInput,
  listIntakeKeys,
  registerOwnIntakeKey,
  revokeIntakeKey,
  type WorkflowSettings,
} from '@countersign/workflow';
import { type Static, Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { who } from '../auth.ts';
import { errorResponses, IdParams, Nullable, PageQuery, pageOfSchema, Strict, Uuid } from '../schemas.ts';
import { Justification, PendingConfigurationSchema, sendConfigured } from './configuration.routes.ts';

/**
 * Intake signing keys (SPEC §4): the public keys with which service
 * principals sign their `renewal-requests` messages. An admin registers one
 * for a service principal of its org, or the service principal registers its
 * own; admins and auditors list them; an admin or the key's own principal
 * revokes one. Only public keys are accepted (a private key is refused).
 */
const IntakeKeySchema = Type.Object({
  id: Uuid,
  org_id: Uuid,
  principal_id: Uuid,
  alg: Type.Union([Type.Literal('ES256'), Type.Literal('EdDSA'), Type.Literal('RS256')]),
  public_key: Type.Record(Type.String(), Type.String(), {
    description: 'the public key as a JWK, with kid, alg and use',
  }),
  thumbprint: Type.String({ description: 'RFC 7638 JWK thumbprint (SHA-256, base64url)' }),
  name: Nullable(Type.String()),
  created_by: Type.String(),
  created_at: Type.String({ format: 'date-time' }),
  revoked_at: Nullable(Type.String({ format: 'date-time' })),
});

const RegisterBody = Type.Object(
  {
    public_key: Type.Union(
      [
        Type.String({ minLength: 1, maxLength: 8192, description: 'SPKI PEM (-----BEGIN PUBLIC KEY-----)' }),
        Type.Object(
          { kty: Type.String({ minLength: 1, maxLength: 10 }) },
          {
            additionalProperties: true,
            maxProperties: 16,
            description: 'a public JWK: EC P-256, OKP Ed25519 or RSA (>= 2048 bits); never private members',
          },
        ),
      ],
      { description: 'the public key only; a private key is refused' },
    ),
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    justification: Justification,
  },
  Strict,
);
type RegisterBody = Static<typeof RegisterBody>;

const ListQuery = Type.Object({ ...PageQuery, principal_id: Type.Optional(Uuid) }, Strict);

const input = (body: RegisterBody): IntakeKeyInput => ({ public_key: body.public_key, name: body.name });

export function intakeKeyRoutes(app: FastifyInstance, db: Db, settings: WorkflowSettings): void {
  app.post(
    '/api/v1/principals/:id/intake-keys',
    {
      schema: {
        tags: ['principals'],
        summary: 'Register an intake signing key (public key) for a service principal (admin)',
        params: IdParams,
        body: RegisterBody,
        response: { 201: IntakeKeySchema, 202: PendingConfigurationSchema, ...errorResponses },
      },
    },
    async (req, reply) => {
      const p = who(req);
      const principalId = (req.params as { id: string }).id;
      requireRole(p, ['admin'], 'register intake keys');
      const body = req.body as RegisterBody;
      const c = await configureIntakeKey(db, settings, p, principalId, input(body), body.justification);
      return sendConfigured(reply, c, 201, (k) => k);
    },
  );

  app.post(
    '/api/v1/me/intake-keys',
    {
      schema: {
        tags: ['principals'],
        summary: 'Register an intake signing key (public key) of the calling service principal',
        body: RegisterBody,
        response: { 201: IntakeKeySchema, ...errorResponses },
      },
    },
    async (req, reply) => {
      const key = await registerOwnIntakeKey(db, who(req), input(req.body as RegisterBody));
      return reply.code(201).send(key);
    },
  );

  app.get(
    '/api/v1/intake-keys',
    {
      schema: {
        tags: ['principals'],
        summary: 'List intake signing keys, oldest first (admin, auditor)',
        querystring: ListQuery,
        response: { 200: pageOfSchema(IntakeKeySchema), ...errorResponses },
      },
    },
    async (req) => {
      const q = req.query as Static<typeof ListQuery>;
      return listIntakeKeys(db, who(req), { principalId: q.principal_id, cursor: q.cursor, limit: q.limit });
    },
  );

  app.delete(
    '/api/v1/intake-keys/:id',
    {
      schema: {
        tags: ['principals'],
        summary: 'Revoke an intake signing key; messages signed with it are refused from now on',
        params: IdParams,
        response: { 200: IntakeKeySchema, ...errorResponses },
      },
    },
    async (req) => revokeIntakeKey(db, who(req), (req.params as { id: string }).id),
  );
}
