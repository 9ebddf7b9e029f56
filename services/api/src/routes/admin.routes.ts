import { type Db, identity, type ProfileFields, profiles } from '@countersign/db';
import { actorOf, DomainError, notFound, parseDuration, ROLES, requireRole } from '@countersign/domain';
import { createApiKey, createPrincipal, profileView, revokeApiKey, saveProfile } from '@countersign/workflow';
import { type Static, Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { who } from '../auth.ts';
import {
  DnsName,
  Duration,
  errorResponses,
  IdParams,
  Nullable,
  PageQuery,
  PrincipalSchema,
  ProfileSchema,
  pageOfSchema,
  Strict,
  Uuid,
} from '../schemas.ts';

/** Org configuration: profiles, principals and API keys (SPEC §3, admin). */
const ProfileBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 200 }),
    environment: Type.String({ pattern: '^[a-z0-9][a-z0-9_-]{0,62}$' }),
    requires_approval: Type.Boolean(),
    approvals_required: Type.Optional(Type.Integer({ minimum: 1, maximum: 10 })),
    approvers: Type.Optional(Type.Array(Uuid, { maxItems: 100, uniqueItems: true })),
    allowed_domains: Type.Array(DnsName, { minItems: 1, maxItems: 200 }),
    issuer: Type.Optional(Type.Literal('local')),
    validity_days: Type.Optional(Type.Integer({ minimum: 1, maximum: 825 })),
    approval_timeout: Type.Optional(Nullable(Duration)),
    escalation_after: Type.Optional(Nullable(Duration)),
    renew_before_days: Type.Optional(Type.Integer({ minimum: 0, maximum: 365 })),
    escalation_contacts: Type.Optional(Type.Array(Type.String({ format: 'email', maxLength: 320 }), { maxItems: 20 })),
  },
  Strict,
);
type ProfileBody = Static<typeof ProfileBody>;

// Ten years: far past any sane approval window, and well inside the integer columns that store seconds.
const MAX_DURATION_MS = 3650 * 86_400_000;

const seconds = (field: string, v: string | null | undefined): number | null => {
  if (v === undefined || v === null) return null;
  const ms = parseDuration(v);
  if (ms === null || ms < 1000) throw new DomainError('validation_failed', `${field} must be at least 1s`);
  if (ms > MAX_DURATION_MS) throw new DomainError('validation_failed', `${field} must be at most 3650d`);
  return Math.round(ms / 1000);
};

function profileFields(b: ProfileBody): ProfileFields {
  const domains = b.allowed_domains.map((d) => d.toLowerCase());
  for (const d of domains) {
    if (!/^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(d)) {
      throw new DomainError('validation_failed', `allowed_domains entry "${d}" is not a DNS name or *.wildcard`);
    }
  }
  return {
    name: b.name,
    environment: b.environment,
    requires_approval: b.requires_approval,
    approvals_required: b.approvals_required ?? 1,
    allowed_domains: domains,
    issuer: b.issuer ?? 'local',
    validity_days: b.validity_days ?? 90,
    approval_timeout_seconds: seconds('approval_timeout', b.approval_timeout),
    escalation_after_seconds: seconds('escalation_after', b.escalation_after),
    renew_before_days: b.renew_before_days ?? 30,
    escalation_contacts: b.escalation_contacts ?? [],
  };
}

const principalView = (p: {
  id: string;
  name: string;
  email: string | null;
  role: string;
  kind: string;
  created_at: Date;
}) => ({ id: p.id, name: p.name, email: p.email, role: p.role, kind: p.kind, created_at: p.created_at.toISOString() });

export function adminRoutes(app: FastifyInstance, db: Db): void {
  app.post(
    '/api/v1/profiles',
    {
      schema: {
        tags: ['profiles'],
        summary: 'Create a trust profile',
        body: ProfileBody,
        response: { 201: ProfileSchema, ...errorResponses },
      },
    },
    async (req, reply) => {
      const p = who(req);
      requireRole(p, ['admin'], 'manage profiles');
      const body = req.body as ProfileBody;
      const saved = await saveProfile(db, p, null, profileFields(body), body.approvers ?? []);
      return reply.code(201).send(profileView(saved));
    },
  );

  app.get(
    '/api/v1/profiles',
    {
      schema: {
        tags: ['profiles'],
        summary: 'List trust profiles',
        querystring: Type.Object(PageQuery, Strict),
        response: { 200: pageOfSchema(ProfileSchema), ...errorResponses },
      },
    },
    async (req) => {
      const p = who(req);
      const q = req.query as { limit?: number; cursor?: string };
      const offset = q.cursor ? decodeOffset(q.cursor) : 0;
      const limit = q.limit ?? 50;
      const all = await profiles.listProfiles(db, p.orgId);
      const items = all.slice(offset, offset + limit).map(profileView);
      const next = offset + limit < all.length ? encodeOffset(offset + limit) : null;
      return { items, next_cursor: next };
    },
  );

  app.get(
    '/api/v1/profiles/:id',
    {
      schema: {
        tags: ['profiles'],
        summary: 'Get a trust profile',
        params: IdParams,
        response: { 200: ProfileSchema, ...errorResponses },
      },
    },
    async (req) => {
      const p = who(req);
      const profile = await profiles.findProfile(db, p.orgId, (req.params as { id: string }).id);
      if (!profile) throw notFound('profile');
      return profileView(profile);
    },
  );

  app.put(
    '/api/v1/profiles/:id',
    {
      schema: {
        tags: ['profiles'],
        summary: 'Replace a trust profile',
        params: IdParams,
        body: ProfileBody,
        response: { 200: ProfileSchema, ...errorResponses },
      },
    },
    async (req) => {
      const p = who(req);
      requireRole(p, ['admin'], 'manage profiles');
      const body = req.body as ProfileBody;
      const saved = await saveProfile(
        db,
        p,
        (req.params as { id: string }).id,
        profileFields(body),
        body.approvers ?? [],
      );
      return profileView(saved);
    },
  );

  const PrincipalBody = Type.Object(
    {
      name: Type.String({ minLength: 1, maxLength: 200 }),
      email: Type.Optional(Nullable(Type.String({ format: 'email', maxLength: 320 }))),
      role: Type.Union(ROLES.map((r) => Type.Literal(r))),
      kind: Type.Optional(Type.Union([Type.Literal('user'), Type.Literal('service')])),
    },
    Strict,
  );

  app.post(
    '/api/v1/principals',
    {
      schema: {
        tags: ['principals'],
        summary: 'Create a principal',
        body: PrincipalBody,
        response: { 201: PrincipalSchema, ...errorResponses },
      },
    },
    async (req, reply) => {
      const p = who(req);
      requireRole(p, ['admin'], 'manage principals');
      const created = await createPrincipal(db, p, req.body as Static<typeof PrincipalBody>);
      return reply.code(201).send(principalView(created));
    },
  );

  app.get(
    '/api/v1/principals',
    {
      schema: {
        tags: ['principals'],
        summary: 'List principals',
        querystring: Type.Object(PageQuery, Strict),
        response: { 200: pageOfSchema(PrincipalSchema), ...errorResponses },
      },
    },
    async (req) => {
      const p = who(req);
      requireRole(p, ['admin', 'auditor', 'operator'], 'list principals');
      const q = req.query as { limit?: number; cursor?: string };
      const offset = q.cursor ? decodeOffset(q.cursor) : 0;
      const limit = q.limit ?? 50;
      const all = await identity.listPrincipals(db, p.orgId);
      return {
        items: all.slice(offset, offset + limit).map(principalView),
        next_cursor: offset + limit < all.length ? encodeOffset(offset + limit) : null,
      };
    },
  );

  app.get(
    '/api/v1/me',
    {
      schema: {
        tags: ['principals'],
        summary: 'The calling principal',
        response: { 200: PrincipalSchema, ...errorResponses },
      },
    },
    async (req) => {
      const p = who(req);
      const row = await identity.findPrincipal(db, p.orgId, p.id);
      if (!row) throw notFound('principal');
      return principalView(row);
    },
  );

  const KeyBody = Type.Object(
    {
      name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
      expires_at: Type.Optional(Type.String({ format: 'date-time' })),
    },
    Strict,
  );
  const KeySchema = Type.Object({
    id: Uuid,
    principal_id: Uuid,
    key: Type.String({ description: 'The API key. Shown only in this answer; store it now.' }),
    name: Nullable(Type.String()),
    expires_at: Nullable(Type.String()),
    created_at: Type.String(),
  });

  app.post(
    '/api/v1/principals/:id/api-keys',
    {
      schema: {
        tags: ['principals'],
        summary: 'Create an API key for a principal (shown once)',
        params: IdParams,
        body: Type.Optional(KeyBody),
        response: { 201: KeySchema, ...errorResponses },
      },
    },
    async (req, reply) => {
      const p = who(req);
      requireRole(p, ['admin'], 'manage API keys');
      const body = (req.body ?? {}) as Static<typeof KeyBody>;
      const expiresAt = body.expires_at ? new Date(body.expires_at) : null;
      if (expiresAt && expiresAt <= new Date())
        throw new DomainError('validation_failed', 'expires_at must be in the future');
      const key = await createApiKey(db, actorOf(p), p.orgId, (req.params as { id: string }).id, {
        name: body.name ?? null,
        expiresAt,
      });
      reply.header('cache-control', 'no-store');
      return reply.code(201).send(key);
    },
  );

  app.delete(
    '/api/v1/api-keys/:id',
    {
      schema: {
        tags: ['principals'],
        summary: 'Revoke an API key',
        params: IdParams,
        response: { 200: Type.Object({ id: Uuid, revoked: Type.Boolean() }), ...errorResponses },
      },
    },
    async (req) => {
      const p = who(req);
      requireRole(p, ['admin'], 'manage API keys');
      const row = await revokeApiKey(db, p, (req.params as { id: string }).id);
      return { id: row.id, revoked: true };
    },
  );
}

// Profiles and principals are few per org; an offset cursor over the sorted list is enough.
const encodeOffset = (n: number) => Buffer.from(`o:${n}`).toString('base64url');
function decodeOffset(c: string): number {
  const m = /^o:(\d{1,9})$/.exec(Buffer.from(c, 'base64url').toString('utf8'));
  if (!m?.[1]) throw new DomainError('validation_failed', 'cursor is not valid; use next_cursor from a previous page');
  return Number(m[1]);
}
