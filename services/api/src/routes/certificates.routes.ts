import { certificates, type Db, decodeCursor, jobs, pageOf } from '@countersign/db';
import { actorOf, DomainError, MAX_CERTIFICATE_NAMES, notFound, readsOnlyOwn } from '@countersign/domain';
import {
  certificateView,
  jobView,
  renewCertificate,
  requestCertificate,
  requesterOf,
  versionView,
  type WorkflowSettings,
} from '@countersign/workflow';
import { type Static, Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { who } from '../auth.ts';
import {
  ApprovalSchema,
  CertificateSchema,
  DnsName,
  errorResponses,
  IdParams,
  JobSchema,
  Justification,
  Nullable,
  PageQuery,
  Pem,
  pageOfSchema,
  Strict,
  Uuid,
} from '../schemas.ts';

/** Certificate requests, renewals, reads and the PEM chain; jobs. */
const RequestBody = Type.Object(
  {
    profile_id: Uuid,
    common_name: DnsName,
    sans: Type.Optional(Type.Array(DnsName, { maxItems: MAX_CERTIFICATE_NAMES })),
    csr: Pem,
    justification: Type.Optional(Justification),
  },
  Strict,
);
const RenewBody = Type.Object({ justification: Type.Optional(Justification), csr: Type.Optional(Pem) }, Strict);

const IdempotencyHeaders = Type.Object({
  'idempotency-key': Type.Optional(Type.String({ minLength: 1, maxLength: 200, pattern: '^[\\x21-\\x7e]+$' })),
});

function idempotencyOf(req: FastifyRequest, operation: string, body: unknown) {
  const key = (req.headers as Record<string, string | undefined>)['idempotency-key'];
  return key === undefined ? undefined : { key, fingerprint: { operation, body } };
}

export function certificateRoutes(app: FastifyInstance, db: Db, settings: WorkflowSettings): void {
  app.post(
    '/api/v1/certificates',
    {
      schema: {
        tags: ['certificates'],
        summary: 'Request a certificate (PKCS#10 CSR); gated profiles open an approval request',
        headers: IdempotencyHeaders,
        body: RequestBody,
        response: {
          202: Type.Object({ certificate: CertificateSchema, job: JobSchema, approval: Nullable(ApprovalSchema) }),
          ...errorResponses,
        },
      },
      config: { rateLimited: 'submit' },
    },
    async (req, reply) => {
      const p = who(req);
      const body = req.body as Static<typeof RequestBody>;
      const result = await requestCertificate(
        db,
        settings,
        requesterOf(p, actorOf(p)),
        body,
        idempotencyOf(req, 'request', body),
      );
      return reply.code(202).send(result);
    },
  );

  app.post(
    '/api/v1/certificates/:id/renew',
    {
      schema: {
        tags: ['certificates'],
        summary: 'Renew a certificate (without a CSR the previous public key is reused)',
        params: IdParams,
        headers: IdempotencyHeaders,
        body: Type.Optional(RenewBody),
        response: { 202: Type.Object({ job: JobSchema, approval: Nullable(ApprovalSchema) }), ...errorResponses },
      },
      config: { rateLimited: 'submit' },
    },
    async (req, reply) => {
      const p = who(req);
      const id = (req.params as { id: string }).id;
      const body = (req.body ?? {}) as Static<typeof RenewBody>;
      const result = await renewCertificate(
        db,
        settings,
        requesterOf(p, actorOf(p)),
        id,
        body,
        idempotencyOf(req, `renew:${id}`, body),
      );
      return reply.code(202).send({ job: result.job, approval: result.approval });
    },
  );

  app.get(
    '/api/v1/certificates',
    {
      schema: {
        tags: ['certificates'],
        summary: 'List certificates, newest first',
        querystring: Type.Object({ ...PageQuery, profile_id: Type.Optional(Uuid) }, Strict),
        response: { 200: pageOfSchema(CertificateSchema), ...errorResponses },
      },
    },
    async (req) => {
      const p = who(req);
      const q = req.query as { limit?: number; cursor?: string; profile_id?: string };
      const limit = q.limit ?? 50;
      const rows = await certificates.listCertificates(db, {
        orgId: p.orgId,
        ...(readsOnlyOwn(p) ? { ownerId: p.id } : {}),
        ...(q.profile_id ? { profileId: q.profile_id } : {}),
        after: decodeCursor(q.cursor),
        limit,
      });
      const versions = await certificates.findVersionsByIds(
        db,
        rows.flatMap((r) => (r.current_version_id ? [r.current_version_id] : [])),
      );
      return pageOf(
        rows,
        limit,
        (r) => ({ at: r.created_at, id: r.id }),
        (r) =>
          certificateView(
            r,
            versions.find((v) => v.id === r.current_version_id),
          ),
      );
    },
  );

  const loadVisible = async (req: FastifyRequest) => {
    const p = who(req);
    const cert = await certificates.findCertificate(db, p.orgId, (req.params as { id: string }).id);
    if (!cert || (readsOnlyOwn(p) && cert.owner_id !== p.id)) throw notFound('certificate');
    return cert;
  };

  app.get(
    '/api/v1/certificates/:id',
    {
      schema: {
        tags: ['certificates'],
        summary: 'Get a certificate with its current version and version history',
        params: IdParams,
        response: { 200: CertificateSchema, ...errorResponses },
      },
    },
    async (req) => {
      const cert = await loadVisible(req);
      const versions = await certificates.listVersions(db, cert.id);
      const current = versions.find((v) => v.id === cert.current_version_id);
      return { ...certificateView(cert, current), versions: versions.map(versionView) };
    },
  );

  app.get(
    '/api/v1/certificates/:id/pem',
    {
      schema: {
        tags: ['certificates'],
        summary: 'The current certificate as a PEM chain: leaf, then issuing chain',
        params: IdParams,
        produces: ['application/pem-certificate-chain'],
        response: { 200: Type.String(), ...errorResponses },
      },
    },
    async (req, reply) => {
      const cert = await loadVisible(req);
      if (!cert.current_version_id) {
        throw new DomainError('not_found', 'this certificate has not been issued yet; check its job status');
      }
      const v = await certificates.findVersion(db, cert.org_id, cert.current_version_id);
      if (!v) throw notFound('certificate version');
      return reply
        .type('application/pem-certificate-chain')
        .header('content-disposition', `attachment; filename="${cert.common_name.replace(/[^a-z0-9.-]/g, '_')}.pem"`)
        .send(`${v.leaf_pem.trimEnd()}\n${v.chain_pem.trimEnd()}\n`);
    },
  );

  app.get(
    '/api/v1/jobs',
    {
      schema: {
        tags: ['jobs'],
        summary: 'List jobs, newest first',
        querystring: Type.Object({ ...PageQuery, certificate_id: Type.Optional(Uuid) }, Strict),
        response: { 200: pageOfSchema(JobSchema), ...errorResponses },
      },
    },
    async (req) => {
      const p = who(req);
      const q = req.query as { limit?: number; cursor?: string; certificate_id?: string };
      const limit = q.limit ?? 50;
      const rows = await jobs.listJobs(db, {
        orgId: p.orgId,
        ...(q.certificate_id ? { certificateId: q.certificate_id } : {}),
        ...(readsOnlyOwn(p) ? { requestedBy: p.id } : {}),
        before: decodeCursor(q.cursor),
        limit,
      });
      return pageOf(rows, limit, (r) => ({ at: r.created_at, id: r.id }), jobView);
    },
  );

  app.get(
    '/api/v1/jobs/:id',
    {
      schema: {
        tags: ['jobs'],
        summary: 'Get a job',
        params: IdParams,
        response: { 200: JobSchema, ...errorResponses },
      },
    },
    async (req) => {
      const p = who(req);
      const job = await jobs.findJob(db, p.orgId, (req.params as { id: string }).id);
      if (!job || (readsOnlyOwn(p) && job.requested_by !== p.id)) throw notFound('job');
      return jobView(job);
    },
  );
}
