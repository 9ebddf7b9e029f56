import { type Db, identity, type ProfileFields, profiles } from '@countersign/db';
import {
  BYPASS_ENVIRONMENTS,
  DomainError,
  isBypassEnvironment,
  notFound,
  parseDuration,
  ROLES,
  requireRole,
} from '@countersign/domain';
import {
  configureEnrollmentKey,
  configurePrincipal,
  configurePrincipalUpdate,
  configureProfile,
  mintOwnApiKey,
  profileView,
  revokeApiKey,
  type WorkflowSettings,
} from '@countersign/workflow';
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
import { Justification, PendingConfigurationSchema, sendConfigured } from './configuration.routes.ts';

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
    justification: Justification,
    allow_bypass: Type.Optional(
      Type.Boolean({
        description:
          'Let COUNTERSIGN_APPROVAL_BYPASS auto-approve requests of this profile; only for non-production environments (development, test, ci, staging, ...)',
      }),
    ),
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
    allow_bypass: bypassAllowed(b),
  };
}

function bypassAllowed(b: ProfileBody): boolean {
  if (b.allow_bypass === true && !isBypassEnvironment(b.environment)) {
    throw new DomainError(
      'validation_failed',
      `allow_bypass is only for non-production environments (${BYPASS_ENVIRONMENTS.join(', ')}); "${b.environment}" counts as production`,
    );
  }
  return b.allow_bypass ?? false;
}

const principalView = (p: {
  id: string;
  name: string;
  email: string | null;
  role: string;
  kind: string;
  created_by: string;
  disabled_at: Date | null;
  created_at: Date;
}) => ({
  id: p.id,
  name: p.name,
  email: p.email,
  role: p.role,
  kind: p.kind,
  created_by: p.created_by,
  disabled: p.disabled_at !== null,
  created_at: p.created_at.toISOString(),
});

export function adminRoutes(app: FastifyInstance, db: Db, settings: WorkflowSettings): void {
  app.post(
    '/api/v1/profiles',
    {
      schema: {
        tags: ['profiles'],
        summary: 'Create a trust profile',
        body: ProfileBody,
        response: { 201: ProfileSchema, 202: PendingConfigurationSchema, ...errorResponses },
      },
    },
    async (req, reply) => {
      const p = who(req);
      requireRole(p, ['admin'], 'manage profiles');
      const body = req.body as ProfileBody;
      const c = await configureProfile(
        db,
        settings,
        p,
        null,
        profileFields(body),
        body.approvers ?? [],
        body.justification,
      );
      return sendConfigured(reply, c, 201, profileView);
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
        response: { 200: ProfileSchema, 202: PendingConfigurationSchema, ...errorResponses },
      },
    },
    async (req, reply) => {
      const p = who(req);
      requireRole(p, ['admin'], 'manage profiles');
      const body = req.body as ProfileBody;
      const c = await configureProfile(
        db,
        settings,
        p,
        (req.params as { id: string }).id,
        profileFields(body),
        body.approvers ?? [],
        body.justification,
      );
      return sendConfigured(reply, c, 200, profileView);
    },
  );

  const PrincipalBody = Type.Object(
    {
      name: Type.String({ minLength: 1, maxLength: 200 }),
      email: Type.Optional(Nullable(Type.String({ format: 'email', maxLength: 320 }))),
      role: Type.Union(ROLES.map((r) => Type.Literal(r))),
      kind: Type.Optional(Type.Union([Type.Literal('user'), Type.Literal('service')])),
      justification: Justification,
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
        response: { 201: PrincipalSchema, 202: PendingConfigurationSchema, ...errorResponses },
      },
    },
    async (req, reply) => {
      const p = who(req);
      requireRole(p, ['admin'], 'manage principals');
      const { justification, ...input } = req.body as Static<typeof PrincipalBody>;
      return sendConfigured(reply, await configurePrincipal(db, settings, p, input, justification), 201, principalView);
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

  const CredentialSchema = Type.Object({
    kind: Type.Union([Type.Literal('api_key'), Type.Literal('client_certificate')]),
    id: Uuid,
    own: Type.Boolean({
      description: 'true: the principal created it for itself and may vote with it; false: an enrollment credential',
    }),
    created_by: Type.String(),
  });

  app.get(
    '/api/v1/me',
    {
      schema: {
        tags: ['principals'],
        summary: 'The calling principal and the credential it used',
        response: {
          200: Type.Object({ ...PrincipalSchema.properties, org_id: Uuid, credential: CredentialSchema }),
          ...errorResponses,
        },
      },
    },
    async (req) => {
      const p = who(req);
      const row = await identity.findPrincipal(db, p.orgId, p.id);
      if (!row) throw notFound('principal');
      return {
        ...principalView(row),
        org_id: p.orgId,
        credential: {
          kind: p.credential.kind,
          id: p.credential.id,
          own: p.credential.own,
          created_by: p.credential.createdBy,
        },
      };
    },
  );

  const PrincipalChangeBody = Type.Object(
    {
      role: Type.Optional(Type.Union(ROLES.map((r) => Type.Literal(r)))),
      email: Type.Optional(Nullable(Type.String({ format: 'email', maxLength: 320 }))),
      disabled: Type.Optional(Type.Boolean()),
      justification: Justification,
    },
    { ...Strict, minProperties: 1 },
  );

  app.patch(
    '/api/v1/principals/:id',
    {
      schema: {
        tags: ['principals'],
        summary: "Change a principal's role, email or enabled state",
        params: IdParams,
        body: PrincipalChangeBody,
        response: { 200: PrincipalSchema, 202: PendingConfigurationSchema, ...errorResponses },
      },
    },
    async (req, reply) => {
      const p = who(req);
      requireRole(p, ['admin'], 'manage principals');
      const id = (req.params as { id: string }).id;
      const { justification, ...change } = req.body as Static<typeof PrincipalChangeBody>;
      const c = await configurePrincipalUpdate(db, settings, p, id, change, justification);
      return sendConfigured(reply, c, 200, principalView);
    },
  );

  const KeyBody = Type.Object(
    {
      name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
      expires_at: Type.Optional(Type.String({ format: 'date-time' })),
      justification: Justification,
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
    created_by: Type.String(),
    purpose: Type.Union([Type.Literal('own'), Type.Literal('enrollment')], {
      description:
        'own: made by the principal for itself, may vote and decide; enrollment: made for it by someone else, may read, request and mint the own key once',
    }),
  });
  const keyOptions = (body: Static<typeof KeyBody> | undefined) => {
    const expiresAt = body?.expires_at ? new Date(body.expires_at) : null;
    if (expiresAt && expiresAt <= new Date())
      throw new DomainError('validation_failed', 'expires_at must be in the future');
    return { name: body?.name ?? null, expiresAt };
  };

  app.post(
    '/api/v1/me/api-keys',
    {
      schema: {
        tags: ['principals'],
        summary: 'Mint your own API key (shown once): the credential you vote and decide with',
        description:
          'Authenticate with any live credential of yours. An enrollment credential (made for you by an admin or the bootstrap) mints once; an own key may mint more (rotation).',
        body: Type.Optional(KeyBody),
        response: { 201: KeySchema, ...errorResponses },
      },
    },
    async (req, reply) => {
      const key = await mintOwnApiKey(db, who(req), keyOptions(req.body as Static<typeof KeyBody> | undefined));
      reply.header('cache-control', 'no-store');
      return reply.code(201).send(key);
    },
  );

  app.post(
    '/api/v1/principals/:id/api-keys',
    {
      schema: {
        tags: ['principals'],
        summary: 'Create an API key for a principal (shown once); for another principal it is an enrollment key',
        params: IdParams,
        body: Type.Optional(KeyBody),
        response: {
          201: KeySchema,
          202: Type.Object({
            configuration_request: Type.Ref('ConfigurationRequest'),
            key: Type.String({
              description: 'The enrollment key, shown only now; it works once another admin approves the request',
            }),
          }),
          ...errorResponses,
        },
      },
    },
    async (req, reply) => {
      const p = who(req);
      const principalId = (req.params as { id: string }).id;
      const body = req.body as Static<typeof KeyBody> | undefined;
      const opts = keyOptions(body);
      reply.header('cache-control', 'no-store');
      if (principalId === p.id) return reply.code(201).send(await mintOwnApiKey(db, p, opts));
      requireRole(p, ['admin'], 'create API keys for other principals');
      const { key, configured } = await configureEnrollmentKey(db, settings, p, principalId, opts, body?.justification);
      return sendConfigured(reply, configured, 201, () => key, { key: key.key });
    },
  );

  const KeyListItem = Type.Object({
    id: Uuid,
    principal_id: Uuid,
    name: Nullable(Type.String()),
    created_by: Type.String(),
    purpose: Type.Union([Type.Literal('own'), Type.Literal('enrollment')]),
    created_at: Type.String(),
    expires_at: Nullable(Type.String()),
    revoked_at: Nullable(Type.String()),
    enrollment_used_at: Nullable(Type.String()),
  });

  app.get(
    '/api/v1/principals/:id/api-keys',
    {
      schema: {
        tags: ['principals'],
        summary: "A principal's API keys (never their secrets), newest first",
        params: IdParams,
        response: { 200: Type.Object({ items: Type.Array(KeyListItem) }), ...errorResponses },
      },
    },
    async (req) => {
      const p = who(req);
      const principalId = (req.params as { id: string }).id;
      if (principalId !== p.id) requireRole(p, ['admin', 'auditor'], "list another principal's keys");
      if (!(await identity.findPrincipal(db, p.orgId, principalId))) throw notFound('principal');
      const rows = await identity.listApiKeys(db, p.orgId, principalId);
      return {
        items: rows.map((k) => ({
          id: k.id,
          principal_id: k.principal_id,
          name: k.name,
          created_by: k.created_by,
          purpose: k.created_by === k.principal_id ? ('own' as const) : ('enrollment' as const),
          created_at: k.created_at.toISOString(),
          expires_at: k.expires_at?.toISOString() ?? null,
          revoked_at: k.revoked_at?.toISOString() ?? null,
          enrollment_used_at: k.enrollment_used_at?.toISOString() ?? null,
        })),
      };
    },
  );

  app.delete(
    '/api/v1/api-keys/:id',
    {
      schema: {
        tags: ['principals'],
        summary: 'Revoke an API key (your own, or any in the org as admin)',
        params: IdParams,
        response: { 200: Type.Object({ id: Uuid, revoked: Type.Boolean() }), ...errorResponses },
      },
    },
    async (req) => {
      const p = who(req);
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
