import { type TSchema, Type } from '@sinclair/typebox';

/** Shared route schemas. Bodies reject unknown properties (server-owned fields included). */
export const Uuid = Type.String({ format: 'uuid' });
export const IdParams = Type.Object({ id: Uuid });
export const Strict = { additionalProperties: false } as const;

export const Note = Type.String({ minLength: 1, maxLength: 4000 });
export const Justification = Type.String({ minLength: 1, maxLength: 4000 });
export const Pem = Type.String({ minLength: 1, maxLength: 65_536 });
export const DnsName = Type.String({ minLength: 1, maxLength: 253 });
export const Duration = Type.String({ pattern: '^\\d+(\\.\\d+)?(ms|s|m|h|d)?$', maxLength: 20 });

export const PageQuery = {
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, default: 50 })),
  cursor: Type.Optional(Type.String({ maxLength: 512 })),
};

export const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);

export const ProblemSchema = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    code: Type.String(),
    detail: Type.String(),
    instance: Type.String(),
    request_id: Type.String(),
    errors: Type.Optional(Type.Array(Type.Object({ path: Type.String(), message: Type.String() }))),
  },
  { $id: 'Problem' },
);

export const VersionSchema = Type.Object({
  id: Uuid,
  job_id: Uuid,
  serial: Type.String(),
  fingerprint_sha256: Type.String(),
  not_before: Type.String({ format: 'date-time' }),
  not_after: Type.String({ format: 'date-time' }),
  issuer: Type.String(),
  created_at: Type.String({ format: 'date-time' }),
});

export const CertificateSchema = Type.Object({
  id: Uuid,
  profile_id: Uuid,
  owner_id: Uuid,
  common_name: Type.String(),
  sans: Type.Array(Type.String()),
  current_version: Nullable(VersionSchema),
  not_after: Nullable(Type.String({ format: 'date-time' })),
  created_at: Type.String({ format: 'date-time' }),
  versions: Type.Optional(Type.Array(VersionSchema)),
});

export const JobSchema = Type.Object({
  id: Uuid,
  certificate_id: Uuid,
  profile_id: Uuid,
  kind: Type.String(),
  status: Type.String(),
  requires_approval: Type.Boolean(),
  requested_by: Type.String(),
  common_name: Type.String(),
  sans: Type.Array(Type.String()),
  error: Nullable(Type.String()),
  attempts: Type.Integer(),
  created_at: Type.String({ format: 'date-time' }),
  released_at: Nullable(Type.String({ format: 'date-time' })),
  completed_at: Nullable(Type.String({ format: 'date-time' })),
});

export const ApprovalSchema = Type.Object({
  id: Uuid,
  job_id: Uuid,
  certificate_id: Uuid,
  profile_id: Uuid,
  state: Type.String(),
  requested_by: Type.String(),
  requester_type: Type.String(),
  justification: Type.String(),
  domains: Type.Array(Type.String()),
  environment: Type.String(),
  approvals_required: Type.Integer(),
  votes: Type.Array(Type.Object({ voter_id: Uuid, note: Nullable(Type.String()), voted_at: Type.String() })),
  requested_at: Type.String({ format: 'date-time' }),
  expires_at: Type.String({ format: 'date-time' }),
  decided_by: Nullable(Type.String()),
  decided_at: Nullable(Type.String({ format: 'date-time' })),
  decision_note: Nullable(Type.String()),
});

export const ProfileSchema = Type.Object({
  id: Uuid,
  name: Type.String(),
  environment: Type.String(),
  requires_approval: Type.Boolean(),
  approvals_required: Type.Integer(),
  approvers: Type.Array(Uuid),
  allowed_domains: Type.Array(Type.String()),
  issuer: Type.String(),
  validity_days: Type.Integer(),
  approval_timeout: Nullable(Type.String()),
  escalation_after: Nullable(Type.String()),
  renew_before_days: Type.Integer(),
  escalation_contacts: Type.Array(Type.String()),
  allow_bypass: Type.Boolean({
    description: 'COUNTERSIGN_APPROVAL_BYPASS may auto-approve this profile (never a production environment)',
  }),
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
});

export const PrincipalSchema = Type.Object({
  id: Uuid,
  name: Type.String(),
  email: Nullable(Type.String()),
  role: Type.String(),
  kind: Type.String(),
  created_by: Type.String({ description: 'The principal or system actor that created it' }),
  disabled: Type.Boolean(),
  created_at: Type.String({ format: 'date-time' }),
});

export const pageOfSchema = <T extends TSchema>(item: T) =>
  Type.Object({ items: Type.Array(item), next_cursor: Nullable(Type.String()) });

/** Error answers every authenticated route may give. */
export const errorResponses = {
  400: Type.Ref('Problem'),
  401: Type.Ref('Problem'),
  403: Type.Ref('Problem'),
  404: Type.Ref('Problem'),
  409: Type.Ref('Problem'),
  422: Type.Ref('Problem'),
};
