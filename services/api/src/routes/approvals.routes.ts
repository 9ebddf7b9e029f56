import { approvals, type Db, decodeCursor, pageOf } from '@countersign/db';
import { APPROVAL_STATES, type ApprovalState, notFound, readsOnlyOwn } from '@countersign/domain';
import {
  type Authenticated,
  approvalView,
  approve,
  type DecisionResult,
  reject,
  voidRequest,
} from '@countersign/workflow';
import { type Static, type TObject, Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { who } from '../auth.ts';
import { ApprovalSchema, errorResponses, IdParams, Note, PageQuery, pageOfSchema, Strict, Uuid } from '../schemas.ts';

/** The approval queue and the decisions on it. */
export type DecisionObserver = (result: DecisionResult) => void;

const ListQuery = Type.Object(
  {
    ...PageQuery,
    state: Type.Optional(Type.Union(APPROVAL_STATES.map((s) => Type.Literal(s)))),
    profile_id: Type.Optional(Uuid),
    requested_by: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    certificate_id: Type.Optional(Uuid),
  },
  Strict,
);

export function approvalRoutes(app: FastifyInstance, db: Db, onDecision: DecisionObserver): void {
  app.get(
    '/api/v1/approvals',
    {
      schema: {
        tags: ['approvals'],
        summary: 'The approval queue, newest first; requesters see their own requests',
        querystring: ListQuery,
        response: { 200: pageOfSchema(ApprovalSchema), ...errorResponses },
      },
    },
    async (req) => {
      const p = who(req);
      const q = req.query as Static<typeof ListQuery>;
      const limit = q.limit ?? 50;
      if (readsOnlyOwn(p) && q.requested_by !== undefined && q.requested_by !== p.id) {
        return { items: [], next_cursor: null };
      }
      const rows = await approvals.listApprovals(db, {
        orgId: p.orgId,
        ...(q.state ? { state: q.state as ApprovalState } : {}),
        ...(q.profile_id ? { profileId: q.profile_id } : {}),
        ...(readsOnlyOwn(p) ? { requestedBy: p.id } : q.requested_by ? { requestedBy: q.requested_by } : {}),
        ...(q.certificate_id ? { certificateId: q.certificate_id } : {}),
        after: decodeCursor(q.cursor),
        limit,
      });
      return pageOf(
        rows,
        limit,
        (r) => ({ at: r.requested_at, id: r.id }),
        (r) => approvalView(r, r.votes),
      );
    },
  );

  app.get(
    '/api/v1/approvals/:id',
    {
      schema: {
        tags: ['approvals'],
        summary: 'One approval request with its votes',
        params: IdParams,
        response: { 200: ApprovalSchema, ...errorResponses },
      },
    },
    async (req) => {
      const p = who(req);
      const a = await approvals.findApproval(db, p.orgId, (req.params as { id: string }).id);
      if (!a || (readsOnlyOwn(p) && a.requested_by !== p.id)) throw notFound('approval request');
      return approvalView(a, await approvals.listVotes(db, [a.id]));
    },
  );

  const decisionRoute = <B extends TObject>(
    path: string,
    summary: string,
    body: B,
    decide: (p: Authenticated, id: string, body: Static<B>) => Promise<DecisionResult>,
  ) =>
    app.post(
      path,
      {
        schema: {
          tags: ['approvals'],
          summary,
          params: IdParams,
          body,
          response: { 200: ApprovalSchema, ...errorResponses },
        },
        config: { rateLimited: 'decide' },
      },
      async (req) => {
        const result = await decide(who(req), (req.params as { id: string }).id, req.body as Static<B>);
        onDecision(result);
        return approvalView(result.approval, result.votes);
      },
    );

  decisionRoute(
    '/api/v1/approvals/:id/approve',
    'Approve: one vote of approvals_required; never by the requester (two-person integrity)',
    Type.Object({ note: Type.Optional(Note) }, Strict),
    (p, id, b) => approve(db, p, id, b?.note ?? null),
  );
  decisionRoute(
    '/api/v1/approvals/:id/reject',
    'Reject with a note; the job is cancelled',
    Type.Object({ note: Note }, Strict),
    (p, id, b) => reject(db, p, id, b.note),
  );
  decisionRoute(
    '/api/v1/approvals/:id/void',
    'Void (admin) with a reason; the job is cancelled',
    Type.Object({ reason: Note }, Strict),
    (p, id, b) => voidRequest(db, p, id, b.reason),
  );
}
