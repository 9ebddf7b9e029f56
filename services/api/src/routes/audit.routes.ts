import { Readable } from 'node:stream';
import {
  AUDIT_ACTIONS,
  type AuditDatabase,
  type AuditSigningKey,
  auditRecordView,
  createCheckpoint,
  type Db,
  decodeSeqCursor,
  decodeTimeCursor,
  encodeSeqCursor,
  encodeTimeCursor,
  exportLedger,
  findCheckpoint,
  keyringOf,
  latestCheckpoint,
  listAuditRecords,
  listCheckpoints,
  listsByTime,
  verifyAuditChain,
} from '@countersign/db';
import { DomainError, notFound, requireRole } from '@countersign/domain';
import { type Static, Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { AUDIT_VERIFY_CACHE_MS, verifyThrottle } from '../audit-verify-throttle.ts';
import { who } from '../auth.ts';
import { errorResponses, IdParams, Nullable, PageQuery, pageOfSchema, Strict, Uuid } from '../schemas.ts';

/**
 * The audit ledger for auditors (SPEC §1.6, §3): the records, on-demand
 * verification of the caller's org chain, signed checkpoints and an export an
 * auditor can verify offline with the public key alone
 * (`countersign audit verify --checkpoint FILE --ledger FILE --public-key FILE`).
 * Admins and auditors read; only admins create checkpoints. Everything is
 * scoped to the caller's org; another org's checkpoint is not_found.
 */
export interface AuditDeps {
  /** The pool the verifier streams from (COPY). */
  readonly database: AuditDatabase;
  /** Signs checkpoints; its public half verifies them. */
  readonly signingKey: AuditSigningKey;
  /** The clock of the on-demand verification's cache (Date.now unless a test moves time). */
  readonly now?: () => number;
}

const READERS = ['admin', 'auditor'] as const;
const Seq = Type.String({ pattern: '^(0|[1-9][0-9]{0,17})$' });
const Hash = Type.String({ pattern: '^[0-9a-f]{64}$' });

const AuditRecordSchema = Type.Object({
  seq: Seq,
  at: Type.String({ format: 'date-time' }),
  actor_id: Type.String(),
  actor_type: Type.String(),
  action: Type.String(),
  resource_type: Type.String(),
  resource_id: Type.String(),
  details: Type.Unknown(),
  prev_hash: Hash,
  hash: Hash,
});

const CheckpointSchema = Type.Object({
  type: Type.Literal('countersign.audit.checkpoint.v1'),
  id: Uuid,
  org_id: Uuid,
  seq: Seq,
  head_hash: Hash,
  at: Type.String({ format: 'date-time' }),
  key_id: Type.String(),
  algorithm: Type.Literal('Ed25519'),
  signature: Type.String({
    description: 'Ed25519 over the RFC 8785 JSON of {type, org_id, seq, head_hash, at, key_id}',
  }),
});

const VerifySchema = Type.Object({
  ok: Type.Boolean(),
  checked: Type.Integer(),
  head: Type.Object({ seq: Seq, hash: Hash }),
  first_bad_seq: Nullable(Seq),
  reason: Nullable(Type.String()),
  checkpoint: Nullable(Type.Object({ id: Uuid, seq: Seq })),
  verified_at: Type.String({
    format: 'date-time',
    description: 'when the verification started: the answer describes the chain as it was then',
  }),
  cached: Type.Boolean({
    description: `true when this call did not run the verification: a running one was shared, or one that started at most ${AUDIT_VERIFY_CACHE_MS / 1000} s ago was served again`,
  }),
});

const ListQuery = Type.Object(
  {
    ...PageQuery,
    action: Type.Optional(Type.Union(AUDIT_ACTIONS.map((a) => Type.Literal(a)))),
    actor: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    resource_id: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    from: Type.Optional(
      Type.String({
        format: 'date-time',
        description: 'records at or after this time; with from or to, records come in time order (at, then seq)',
      }),
    ),
    to: Type.Optional(Type.String({ format: 'date-time', description: 'records before this time' })),
  },
  Strict,
);
const VerifyQuery = Type.Object(
  { mode: Type.Optional(Type.Union([Type.Literal('full'), Type.Literal('tail')])) },
  Strict,
);
const ExportQuery = Type.Object({ checkpoint_id: Type.Optional(Uuid) }, Strict);
const CheckpointPage = Type.Object(PageQuery, Strict);
const Empty = Type.Object({}, Strict);

export function auditRoutes(app: FastifyInstance, db: Db, audit: AuditDeps): void {
  const { database, signingKey } = audit;
  const keyring = keyringOf(signingKey.publicKey);
  // A verification walks the whole chain: one per org at a time, its answer reused for a while.
  const verifyOnDemand = verifyThrottle(
    (orgId, mode) => verifyAuditChain(database, orgId, { mode, keyring }),
    audit.now ? { now: audit.now } : {},
  );

  app.get(
    '/api/v1/audit',
    {
      schema: {
        tags: ['audit'],
        summary: 'Audit records of the org, oldest first (admin, auditor)',
        querystring: ListQuery,
        response: { 200: pageOfSchema(AuditRecordSchema), ...errorResponses },
      },
    },
    async (req) => {
      const p = who(req);
      requireRole(p, READERS, 'read the audit ledger');
      const q = req.query as Static<typeof ListQuery>;
      const limit = q.limit ?? 50;
      const from = q.from === undefined ? undefined : new Date(q.from);
      const to = q.to === undefined ? undefined : new Date(q.to);
      if (from && to && from.getTime() > to.getTime()) {
        throw new DomainError('validation_failed', 'from must not be after to');
      }
      // A time range lists in time order and pages with its own cursor (audit-query.ts).
      const byTime = listsByTime({ from, to });
      const rows = await listAuditRecords(db, {
        orgId: p.orgId,
        limit,
        ...(q.action ? { action: q.action } : {}),
        ...(q.actor ? { actor: q.actor } : {}),
        ...(q.resource_id ? { resourceId: q.resource_id } : {}),
        ...(from ? { from } : {}),
        ...(to ? { to } : {}),
        ...(q.cursor
          ? byTime
            ? { afterTime: decodeTimeCursor(q.cursor) }
            : { afterSeq: decodeSeqCursor(q.cursor) }
          : {}),
      });
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      const cursorOf = byTime ? encodeTimeCursor : encodeSeqCursor;
      return {
        items: page.map(auditRecordView),
        next_cursor: rows.length > limit && last ? cursorOf(String(last.seq)) : null,
      };
    },
  );

  app.get(
    '/api/v1/audit/verify',
    {
      schema: {
        tags: ['audit'],
        summary: `Verify the org's audit chain and name the first bad record (admin, auditor); one verification per org at a time, its answer served again for ${AUDIT_VERIFY_CACHE_MS / 1000} s`,
        querystring: VerifyQuery,
        response: { 200: VerifySchema, ...errorResponses },
      },
    },
    async (req) => {
      const p = who(req);
      requireRole(p, READERS, 'verify the audit ledger');
      const q = req.query as Static<typeof VerifyQuery>;
      const answer = await verifyOnDemand(p.orgId, q.mode ?? 'full');
      return { ...answer.report, verified_at: answer.verifiedAt.toISOString(), cached: answer.cached };
    },
  );

  app.get(
    '/api/v1/audit/checkpoints',
    {
      schema: {
        tags: ['audit'],
        summary: 'Signed checkpoints of the org chain, newest first (admin, auditor)',
        querystring: CheckpointPage,
        response: { 200: pageOfSchema(CheckpointSchema), ...errorResponses },
      },
    },
    async (req) => {
      const p = who(req);
      requireRole(p, READERS, 'read audit checkpoints');
      const q = req.query as Static<typeof CheckpointPage>;
      const limit = q.limit ?? 50;
      const before = decodeSeqCursor(q.cursor);
      const rows = await listCheckpoints(database.pool, p.orgId, {
        limit,
        ...(before === undefined ? {} : { beforeSeq: before }),
      });
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      return { items: page, next_cursor: rows.length > limit && last ? encodeSeqCursor(last.seq) : null };
    },
  );

  app.post(
    '/api/v1/audit/checkpoints',
    {
      schema: {
        tags: ['audit'],
        summary: 'Verify the chain since the last checkpoint and sign its head now (admin)',
        body: Empty,
        response: { 200: CheckpointSchema, 201: CheckpointSchema, ...errorResponses },
      },
    },
    async (req, reply) => {
      const p = who(req);
      requireRole(p, ['admin'], 'create audit checkpoints');
      const { checkpoint, created } = await createCheckpoint(database, signingKey, p.orgId);
      return reply.code(created ? 201 : 200).send(checkpoint);
    },
  );

  app.get(
    '/api/v1/audit/checkpoints/:id',
    {
      schema: {
        tags: ['audit'],
        summary: 'One signed checkpoint, as a file for `countersign audit verify --checkpoint` (admin, auditor)',
        params: IdParams,
        response: { 200: CheckpointSchema, ...errorResponses },
      },
    },
    async (req, reply) => {
      const p = who(req);
      requireRole(p, READERS, 'read audit checkpoints');
      const cp = await findCheckpoint(database.pool, p.orgId, (req.params as { id: string }).id);
      if (!cp) throw notFound('checkpoint');
      return reply.header('content-disposition', `attachment; filename="checkpoint-${cp.seq}.json"`).send(cp);
    },
  );

  app.get(
    '/api/v1/audit/public-key',
    {
      schema: {
        tags: ['audit'],
        summary: 'The Ed25519 public key that verifies checkpoints (compare its key_id out of band) (admin, auditor)',
        response: {
          200: Type.Object({
            key_id: Type.String(),
            algorithm: Type.Literal('Ed25519'),
            public_key_pem: Type.String(),
          }),
          ...errorResponses,
        },
      },
    },
    async (req) => {
      requireRole(who(req), READERS, 'read the audit public key');
      return { key_id: signingKey.keyId, algorithm: 'Ed25519' as const, public_key_pem: signingKey.publicKeyPem };
    },
  );

  app.get(
    '/api/v1/audit/export',
    {
      schema: {
        tags: ['audit'],
        summary:
          'The ledger up to a checkpoint (default: the newest) as JSON lines: the checkpoint, then every record (admin, auditor)',
        querystring: ExportQuery,
        response: {
          200: Type.String({ description: 'application/x-ndjson: one checkpoint line, then one line per record' }),
          ...errorResponses,
        },
      },
    },
    async (req, reply) => {
      const p = who(req);
      requireRole(p, READERS, 'export the audit ledger');
      const q = req.query as Static<typeof ExportQuery>;
      const cp = q.checkpoint_id
        ? await findCheckpoint(database.pool, p.orgId, q.checkpoint_id)
        : await latestCheckpoint(database.pool, p.orgId);
      if (!cp) {
        throw q.checkpoint_id
          ? notFound('checkpoint')
          : new DomainError(
              'not_found',
              'no checkpoint yet: an admin can create one with POST /api/v1/audit/checkpoints',
            );
      }
      return reply
        .type('application/x-ndjson')
        .header('content-disposition', `attachment; filename="audit-ledger-${cp.seq}.jsonl"`)
        .send(Readable.from(exportLedger(database, cp)));
    },
  );
}
