import { type Db, pageOf } from '@countersign/db';
import { CONFIGURATION_KINDS, CONFIGURATION_STATES, type ConfigurationState } from '@countersign/domain';
import {
  approveConfigRequest,
  type Configured,
  cancelConfigRequest,
  configRequestView,
  getConfigRequest,
  listConfigRequests,
  orgStatus,
  rejectConfigRequest,
} from '@countersign/workflow';
import { type Static, type TObject, Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { who } from '../auth.ts';
import { errorResponses, IdParams, Note, Nullable, PageQuery, pageOfSchema, Strict, Uuid } from '../schemas.ts';

/**
 * Configuration requests (SPEC §1.6): once an org is two-person ready, a
 * change that could weaken the gate waits here for another admin. Admins
 * decide; auditors read. `GET /api/v1/org` says whether the org is ready.
 */
export const ConfigRequestSchema = Type.Object(
  {
    id: Uuid,
    kind: Type.Union(CONFIGURATION_KINDS.map((k) => Type.Literal(k))),
    target_id: Uuid,
    summary: Type.String({ description: 'What about the change weakens the gate' }),
    change: Type.Unknown({ description: 'The change as it will be applied (a key only as its hash)' }),
    justification: Type.String(),
    state: Type.Union(CONFIGURATION_STATES.map((s) => Type.Literal(s))),
    requested_by: Type.String(),
    requested_at: Type.String({ format: 'date-time' }),
    expires_at: Type.String({ format: 'date-time' }),
    decided_by: Nullable(Type.String()),
    decided_at: Nullable(Type.String({ format: 'date-time' })),
    decision_note: Nullable(Type.String()),
  },
  { $id: 'ConfigurationRequest' },
);

/** The answer of a gated change that now waits for another admin (HTTP 202). */
export const PendingConfigurationSchema = Type.Object({
  configuration_request: Type.Ref('ConfigurationRequest'),
});

/** A justification for the second admin, on every body of a change that may need one. */
export const Justification = Type.Optional(
  Type.String({
    minLength: 1,
    maxLength: 4000,
    description: 'Why, for the admin who approves it when the org is two-person ready',
  }),
);

/** Answers a gated change: 201/200 with the result when applied, 202 with the request when it waits. */
export function sendConfigured<T, V>(
  reply: FastifyReply,
  configured: Configured<T>,
  appliedStatus: 200 | 201,
  view: (t: T) => V,
  extra: Record<string, unknown> = {},
) {
  if (configured.status === 'pending') {
    return reply.code(202).send({ configuration_request: configRequestView(configured.request), ...extra });
  }
  return reply.code(appliedStatus).send(view(configured.result));
}

/** Routes use `Type.Ref('ConfigurationRequest')`; buildApi adds ConfigRequestSchema before any route. */
export function configurationRoutes(app: FastifyInstance, db: Db): void {
  app.get(
    '/api/v1/org',
    {
      schema: {
        tags: ['configuration'],
        summary: 'Your org, and whether it is two-person ready',
        response: {
          200: Type.Object({
            id: Uuid,
            name: Type.String(),
            two_person_ready: Type.Boolean({
              description:
                'Two enabled admins, neither created by the other: changes that weaken the gate then need a second admin',
            }),
            enabled_admins: Type.Integer(),
            warning: Nullable(Type.String()),
          }),
          ...errorResponses,
        },
      },
    },
    async (req) => {
      const s = await orgStatus(db, who(req));
      return {
        id: s.org_id,
        name: s.name,
        two_person_ready: s.ready,
        enabled_admins: s.admins,
        warning: s.ready
          ? null
          : 'not yet two-person ready: one admin can change this org’s configuration alone (add an independent admin with `countersign admin add`)',
      };
    },
  );

  const ListQuery = Type.Object(
    { ...PageQuery, state: Type.Optional(Type.Union(CONFIGURATION_STATES.map((s) => Type.Literal(s)))) },
    Strict,
  );

  app.get(
    '/api/v1/configuration-requests',
    {
      schema: {
        tags: ['configuration'],
        summary: 'Configuration requests, newest first (admins and auditors)',
        querystring: ListQuery,
        response: { 200: pageOfSchema(Type.Ref('ConfigurationRequest')), ...errorResponses },
      },
    },
    async (req) => {
      const q = req.query as Static<typeof ListQuery>;
      const limit = q.limit ?? 50;
      const rows = await listConfigRequests(db, who(req), {
        state: q.state as ConfigurationState | undefined,
        cursor: q.cursor,
        limit,
      });
      return pageOf(rows, limit, (r) => ({ at: r.requested_at, id: r.id }), configRequestView);
    },
  );

  app.get(
    '/api/v1/configuration-requests/:id',
    {
      schema: {
        tags: ['configuration'],
        summary: 'One configuration request',
        params: IdParams,
        response: { 200: Type.Ref('ConfigurationRequest'), ...errorResponses },
      },
    },
    async (req) => configRequestView(await getConfigRequest(db, who(req), (req.params as { id: string }).id)),
  );

  const decision = <B extends TObject>(
    path: string,
    summary: string,
    body: B,
    decide: (req: Parameters<typeof who>[0], id: string, body: Static<B>) => ReturnType<typeof approveConfigRequest>,
  ) =>
    app.post(
      path,
      {
        schema: {
          tags: ['configuration'],
          summary,
          params: IdParams,
          body,
          response: { 200: Type.Ref('ConfigurationRequest'), ...errorResponses },
        },
        config: { rateLimited: 'decide' },
      },
      async (req) => {
        const r = await decide(req, (req.params as { id: string }).id, req.body as Static<B>);
        return configRequestView(r.request);
      },
    );

  decision(
    '/api/v1/configuration-requests/:id/approve',
    'Approve and apply (another admin than the requester, with its own key)',
    Type.Object({ note: Type.Optional(Note) }, Strict),
    (req, id, b) => approveConfigRequest(db, who(req), id, b?.note ?? null),
  );
  decision(
    '/api/v1/configuration-requests/:id/reject',
    'Reject with a note; nothing changes',
    Type.Object({ note: Note }, Strict),
    (req, id, b) => rejectConfigRequest(db, who(req), id, b.note),
  );
  decision(
    '/api/v1/configuration-requests/:id/cancel',
    'Withdraw or close a pending request (an admin); nothing changes',
    Type.Object({ reason: Note }, Strict),
    (req, id, b) => cancelConfigRequest(db, who(req), id, b.reason),
  );
}
