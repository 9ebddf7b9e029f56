import { generateKeyPairSync } from 'node:crypto';
import { createTestCa, issueTestCertificate } from '@countersign/ca/testing';
import { certificates, clientCertificates, completeIssuance, jobs } from '@countersign/db';
import { SYSTEM_ACTORS } from '@countersign/domain';
import { csrFor, profileFields, type SeededOrg, seedOrg } from '@countersign/testing';
import { createEnrollmentKey, createPrincipal, mintOwnApiKey, revokeApiKey, saveProfile } from '@countersign/workflow';
import type { RouteOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiHarness, startApiHarness } from './test/api-harness.ts';

/**
 * The authorization matrix: every route the api registers × every role
 * (admin, operator, requester, auditor) × own org / other org, plus no
 * credentials, a revoked key and an expired key, each with the status it
 * must answer. The route list comes from Fastify itself (onRoute), so a new
 * route without a row here fails "every registered route has an entry",
 * naming the route. Routes outside /api/v1 must match an explicit policy.
 *
 * "own" cells call with org A's principals against org A's objects; "other"
 * cells call with org B's principals of the same role against the same org A
 * objects, and their answers must not mention any of org A's ids.
 */
const ROLES = ['admin', 'operator', 'requester', 'auditor'] as const;
type Role = (typeof ROLES)[number];
/** Expected statuses in ROLES order: [admin, operator, requester, auditor]. */
type PerRole = readonly [number, number, number, number];

interface Fixture {
  readonly url: string;
  readonly payload?: unknown;
  /** Org A ids this request is about; an other-org answer must contain none of them. */
  readonly ids?: readonly string[];
}

interface Row {
  /** Builds the request; mutating rows get a fresh object per cell so no cell depends on another. */
  readonly fixture: () => Promise<Fixture>;
  readonly own: PerRole;
  readonly other: PerRole;
  /** No credentials, a revoked key, an expired key: every /api/v1 route answers 401 unless it says otherwise. */
  readonly anonymous?: number;
}

/** Routes outside /api/v1 and the policy that covers them. */
const POLICIES: readonly { name: string; pattern: RegExp; check: 'public' | 'admin-ui' }[] = [
  { name: 'liveness and readiness', pattern: /^\/(healthz|readyz)$/, check: 'public' },
  { name: 'OpenAPI document', pattern: /^\/openapi\.json$/, check: 'public' },
  { name: 'API docs UI', pattern: /^\/docs(\/.*)?$/, check: 'public' },
  {
    name: 'web console (static files; it calls /api/v1 with the user’s key)',
    pattern: /^\/ui(\/.*)?$/,
    check: 'public',
  },
  // The queue dashboard has its own admin session (queues-dashboard.routes.ts); its sign-in pages are public.
  { name: 'queue dashboard sign-in', pattern: /^\/admin\/queues\/(login|logout)$/, check: 'public' },
  { name: 'queue dashboard (admins only)', pattern: /^\/admin\/queues(\/.*)?$/, check: 'admin-ui' },
];

let h: ApiHarness;
let A: SeededOrg;
let B: SeededOrg;
let revokedKey: string;
let expiredKey: string;
let servicePrincipalId: string;
let shared: { approvalId: string; jobId: string; certificateId: string; issuedCertificateId: string };
let n = 0;
const unique = () => `${Date.now().toString(36)}-${++n}`;
/** A new P-256 public key (JWK) for each intake-key fixture: an org registers a public key once. */
const freshIntakePublicKey = () =>
  generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' });

async function submit(key: string, profileId: string) {
  const cn = `matrix-${unique()}.example.test`;
  const { csrPem } = await csrFor(cn);
  const r = await h.call(key, {
    method: 'POST',
    url: '/api/v1/certificates',
    payload: { profile_id: profileId, common_name: cn, csr: csrPem, justification: 'authorization matrix' },
  });
  if (r.status !== 202) throw new Error(`fixture submission failed: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body as { certificate: { id: string }; job: { id: string }; approval: { id: string } | null };
}

/** A pending approval request of org A, asked for by org A's requester. */
async function freshApproval() {
  const r = await submit(A.requester.key, A.gated.id);
  if (!r.approval) throw new Error('gated profile answered without an approval');
  return { approvalId: r.approval.id, jobId: r.job.id, certificateId: r.certificate.id };
}

/**
 * A pending configuration request of org A's admin. Org A is not two-person ready, so no route makes one; it
 * is written as the services' role would, to check who may see and decide it.
 */
async function freshConfigRequest(): Promise<string> {
  const r = await h.tdb.superuser<{ id: string }>(
    `INSERT INTO config_requests (org_id, kind, target_id, change, summary, justification, requested_by, expires_at)
     VALUES ($1, 'principal_create', gen_random_uuid(), '{"name":"matrix","role":"operator"}', 'create matrix (operator)',
             'authorization matrix', $2, now() + interval '1 day') RETURNING id`,
    [A.orgId, A.admin.id],
  );
  return r.rows[0]?.id ?? '';
}

const testCa = createTestCa('Matrix Test CA');

/** An issued certificate of org A's requester whose job is closed, so it can be renewed. */
async function freshIssuedCertificate(): Promise<string> {
  const r = await submit(A.requester.key, A.open.id);
  const db = h.tdb.handle.db;
  const leaf = issueTestCertificate(testCa, { commonName: 'matrix.example.test', usage: 'server' });
  const now = Date.now();
  const job = await jobs.findJob(db, A.orgId, r.job.id);
  if (!job) throw new Error('fixture job vanished');
  const version = await certificates.insertVersion(db, {
    orgId: A.orgId,
    certificateId: r.certificate.id,
    jobId: r.job.id,
    issuer: 'local',
    serial: `${now.toString(16)}${n}`,
    fingerprint: `${'0'.repeat(48)}${now.toString(16).padStart(16, '0')}`,
    notBefore: new Date(now - 3_600_000),
    notAfter: new Date(now + 86_400_000),
    leafPem: leaf.certPem,
    chainPem: testCa.certPem,
    sans: job.sans,
  });
  // As the issuer records it: the certificate points at the version and the job completes.
  await completeIssuance(db, {
    job,
    version,
    at: new Date(),
    audit: {
      orgId: A.orgId,
      actor: SYSTEM_ACTORS.issuer,
      action: 'certificate_issued',
      resourceType: 'certificate',
      resourceId: r.certificate.id,
      details: { job_id: job.id, version_id: version.id },
    },
  });
  return r.certificate.id;
}

const profileBody = (name: string) => ({
  name,
  environment: 'staging',
  requires_approval: true,
  allowed_domains: ['*.example.test'],
});

/** One row per route: method and Fastify path, exactly as registered. */
const MATRIX: Record<string, Row> = {
  // Profiles: anyone in the org reads; only admins write.
  'POST /api/v1/profiles': {
    fixture: async () => ({ url: '/api/v1/profiles', payload: profileBody(`matrix-${unique()}`) }),
    own: [201, 403, 403, 403],
    other: [201, 403, 403, 403], // creates in the caller's own org
  },
  'GET /api/v1/profiles': {
    fixture: async () => ({ url: '/api/v1/profiles', ids: [A.gated.id, A.open.id] }),
    own: [200, 200, 200, 200],
    other: [200, 200, 200, 200],
  },
  'GET /api/v1/profiles/:id': {
    fixture: async () => ({ url: `/api/v1/profiles/${A.gated.id}`, ids: [A.gated.id] }),
    own: [200, 200, 200, 200],
    other: [404, 404, 404, 404],
  },
  'PUT /api/v1/profiles/:id': {
    fixture: async () => {
      const name = `matrix-put-${unique()}`;
      const p = await saveProfile(h.tdb.handle.db, A.admin, null, profileFields({ name }), []);
      return { url: `/api/v1/profiles/${p.id}`, payload: profileBody(name), ids: [p.id] };
    },
    own: [200, 403, 403, 403],
    other: [404, 403, 403, 403],
  },

  // Principals and keys: admins manage; admins, auditors and operators list.
  'POST /api/v1/principals': {
    fixture: async () => ({ url: '/api/v1/principals', payload: { name: `matrix-${unique()}`, role: 'requester' } }),
    own: [201, 403, 403, 403],
    other: [201, 403, 403, 403],
  },
  'GET /api/v1/principals': {
    fixture: async () => ({ url: '/api/v1/principals', ids: [A.admin.id, A.requester.id] }),
    own: [200, 200, 403, 200],
    other: [200, 200, 403, 200],
  },
  'GET /api/v1/me': {
    fixture: async () => ({ url: '/api/v1/me', ids: [A.admin.id] }),
    own: [200, 200, 200, 200],
    other: [200, 200, 200, 200],
  },
  'POST /api/v1/principals/:id/api-keys': {
    fixture: async () => ({
      url: `/api/v1/principals/${A.requester.id}/api-keys`,
      payload: { name: `matrix-${unique()}` },
      ids: [A.requester.id],
    }),
    // A key for oneself is the principal's own (the requester here); for anyone else only an admin makes one.
    own: [201, 403, 201, 403],
    other: [404, 403, 403, 403],
  },
  // The org and its configuration requests: anyone reads its org; admins and auditors read requests; only another
  // admin than the requester decides (the fixture's request is org A's admin's own: 403 for it too).
  'GET /api/v1/org': {
    fixture: async () => ({ url: '/api/v1/org', ids: [A.orgId] }),
    own: [200, 200, 200, 200],
    other: [200, 200, 200, 200],
  },
  'GET /api/v1/configuration-requests': {
    fixture: async () => ({ url: '/api/v1/configuration-requests', ids: [await freshConfigRequest()] }),
    own: [200, 403, 403, 200],
    other: [200, 403, 403, 200],
  },
  'GET /api/v1/configuration-requests/:id': {
    fixture: async () => {
      const id = await freshConfigRequest();
      return { url: `/api/v1/configuration-requests/${id}`, ids: [id] };
    },
    own: [200, 403, 403, 200],
    other: [404, 403, 403, 404],
  },
  'POST /api/v1/configuration-requests/:id/approve': {
    fixture: async () => {
      const id = await freshConfigRequest();
      return { url: `/api/v1/configuration-requests/${id}/approve`, payload: {}, ids: [id] };
    },
    own: [403, 403, 403, 403],
    other: [404, 404, 404, 404],
  },
  'POST /api/v1/configuration-requests/:id/reject': {
    fixture: async () => {
      const id = await freshConfigRequest();
      return { url: `/api/v1/configuration-requests/${id}/reject`, payload: { note: 'matrix' }, ids: [id] };
    },
    own: [403, 403, 403, 403],
    other: [404, 404, 404, 404],
  },
  'POST /api/v1/configuration-requests/:id/cancel': {
    fixture: async () => {
      const id = await freshConfigRequest();
      return { url: `/api/v1/configuration-requests/${id}/cancel`, payload: { reason: 'matrix' }, ids: [id] };
    },
    own: [200, 403, 403, 403],
    other: [404, 404, 404, 404],
  },
  'GET /api/v1/principals/:id/api-keys': {
    fixture: async () => ({ url: `/api/v1/principals/${A.requester.id}/api-keys`, ids: [A.requester.id] }),
    own: [200, 403, 200, 200],
    other: [404, 403, 403, 404],
  },
  'POST /api/v1/me/api-keys': {
    fixture: async () => ({ url: '/api/v1/me/api-keys', payload: { name: `matrix-${unique()}` } }),
    // Every principal mints its own key, in its own org.
    own: [201, 201, 201, 201],
    other: [201, 201, 201, 201],
  },
  'PATCH /api/v1/principals/:id': {
    fixture: async () => {
      const p = await createPrincipal(h.tdb.handle.db, A.admin, { name: `matrix-${unique()}`, role: 'requester' });
      return { url: `/api/v1/principals/${p.id}`, payload: { email: `m${unique()}@example.test` }, ids: [p.id] };
    },
    own: [200, 403, 403, 403],
    other: [404, 403, 403, 403],
  },
  'POST /api/v1/me/client-certificates': {
    fixture: async () => ({
      url: '/api/v1/me/client-certificates',
      payload: { san: `DNS:me-${unique()}.example.test` },
    }),
    // The seeded principals are users: client certificates are for service principals.
    own: [400, 400, 400, 400],
    other: [400, 400, 400, 400],
  },
  'DELETE /api/v1/api-keys/:id': {
    fixture: async () => {
      const k = await createEnrollmentKey(
        h.tdb.handle.db,
        { id: A.admin.id, type: 'user' },
        A.orgId,
        A.requester.id,
        {},
      );
      return { url: `/api/v1/api-keys/${k.id}`, ids: [k.id] };
    },
    // The requester may revoke a key of its own; others' keys only an admin.
    own: [200, 404, 200, 404],
    other: [404, 404, 404, 404],
  },

  // Client-certificate bindings: admins manage, admins and auditors list.
  'POST /api/v1/principals/:id/client-certificates': {
    fixture: async () => ({
      url: `/api/v1/principals/${servicePrincipalId}/client-certificates`,
      payload: { san: `DNS:svc-${unique()}.example.test` },
      ids: [servicePrincipalId],
    }),
    own: [201, 403, 403, 403],
    other: [404, 403, 403, 403],
  },
  'GET /api/v1/client-certificates': {
    fixture: async () => ({ url: '/api/v1/client-certificates', ids: [servicePrincipalId] }),
    own: [200, 403, 403, 200],
    other: [200, 403, 403, 200],
  },
  'DELETE /api/v1/client-certificates/:id': {
    fixture: async () => {
      const b = await clientCertificates.insertBinding(h.tdb.handle.db, {
        orgId: A.orgId,
        principalId: servicePrincipalId,
        matchKind: 'san',
        matchValue: `DNS:del-${unique()}.example.test`,
        name: null,
        createdBy: A.admin.id,
        enrolledVia: null,
      });
      return { url: `/api/v1/client-certificates/${b.id}`, ids: [b.id] };
    },
    own: [200, 403, 403, 403],
    other: [404, 403, 403, 403],
  },

  // Intake signing keys: admins register them for service principals (a service principal registers its own;
  // the matrix's principals are users), admins and auditors list, admins (or the key's principal) revoke.
  'POST /api/v1/principals/:id/intake-keys': {
    fixture: async () => ({
      url: `/api/v1/principals/${servicePrincipalId}/intake-keys`,
      payload: { public_key: freshIntakePublicKey() },
      ids: [servicePrincipalId],
    }),
    own: [201, 403, 403, 403],
    other: [404, 403, 403, 403],
  },
  'POST /api/v1/me/intake-keys': {
    fixture: async () => ({ url: '/api/v1/me/intake-keys', payload: { public_key: freshIntakePublicKey() } }),
    own: [403, 403, 403, 403],
    other: [403, 403, 403, 403],
  },
  'GET /api/v1/intake-keys': {
    fixture: async () => ({ url: '/api/v1/intake-keys', ids: [servicePrincipalId] }),
    own: [200, 403, 403, 200],
    other: [200, 403, 403, 200],
  },
  'DELETE /api/v1/intake-keys/:id': {
    fixture: async () => {
      const r = await h.call(A.admin.key, {
        method: 'POST',
        url: `/api/v1/principals/${servicePrincipalId}/intake-keys`,
        payload: { public_key: freshIntakePublicKey() },
      });
      if (r.status !== 201) throw new Error(`fixture intake key failed: ${r.status} ${JSON.stringify(r.body)}`);
      return { url: `/api/v1/intake-keys/${r.body.id}`, ids: [r.body.id] };
    },
    own: [200, 403, 403, 403],
    other: [404, 404, 404, 404],
  },

  // Certificates: requesters, operators and admins ask; everyone in the org reads (requesters their own).
  'POST /api/v1/certificates': {
    fixture: async () => {
      const cn = `matrix-${unique()}.example.test`;
      const { csrPem } = await csrFor(cn);
      return {
        url: '/api/v1/certificates',
        payload: { profile_id: A.gated.id, common_name: cn, csr: csrPem, justification: 'matrix' },
        ids: [A.gated.id],
      };
    },
    own: [202, 202, 202, 403],
    // The profile is not theirs; an auditor may not request at all, whatever the profile.
    other: [404, 404, 404, 403],
  },
  'POST /api/v1/certificates/:id/renew': {
    fixture: async () => {
      const id = await freshIssuedCertificate();
      return { url: `/api/v1/certificates/${id}/renew`, payload: {}, ids: [id] };
    },
    own: [202, 202, 202, 403],
    other: [404, 404, 404, 403],
  },
  'GET /api/v1/certificates': {
    fixture: async () => ({ url: '/api/v1/certificates', ids: [shared.certificateId, shared.issuedCertificateId] }),
    own: [200, 200, 200, 200],
    other: [200, 200, 200, 200],
  },
  'GET /api/v1/certificates/:id': {
    fixture: async () => ({
      url: `/api/v1/certificates/${shared.issuedCertificateId}`,
      ids: [shared.issuedCertificateId],
    }),
    own: [200, 200, 200, 200],
    other: [404, 404, 404, 404],
  },
  'GET /api/v1/certificates/:id/pem': {
    fixture: async () => ({
      url: `/api/v1/certificates/${shared.issuedCertificateId}/pem`,
      ids: [shared.issuedCertificateId],
    }),
    own: [200, 200, 200, 200],
    other: [404, 404, 404, 404],
  },
  'GET /api/v1/jobs': {
    fixture: async () => ({ url: '/api/v1/jobs', ids: [shared.jobId] }),
    own: [200, 200, 200, 200],
    other: [200, 200, 200, 200],
  },
  'GET /api/v1/jobs/:id': {
    fixture: async () => ({ url: `/api/v1/jobs/${shared.jobId}`, ids: [shared.jobId] }),
    own: [200, 200, 200, 200],
    other: [404, 404, 404, 404],
  },

  // Approvals: readers of the org see the queue (requesters their own); eligible approvers decide, never the requester.
  'GET /api/v1/approvals': {
    fixture: async () => ({ url: '/api/v1/approvals', ids: [shared.approvalId] }),
    own: [200, 200, 200, 200],
    other: [200, 200, 200, 200],
  },
  'GET /api/v1/approvals/:id': {
    fixture: async () => ({ url: `/api/v1/approvals/${shared.approvalId}`, ids: [shared.approvalId] }),
    own: [200, 200, 200, 200],
    other: [404, 404, 404, 404],
  },
  'GET /api/v1/approvals/:id/diff': {
    fixture: async () => ({ url: `/api/v1/approvals/${shared.approvalId}/diff`, ids: [shared.approvalId] }),
    own: [200, 200, 200, 200],
    other: [404, 404, 404, 404],
  },
  'POST /api/v1/approvals/:id/approve': {
    fixture: async () => {
      const a = await freshApproval();
      return { url: `/api/v1/approvals/${a.approvalId}/approve`, payload: {}, ids: [a.approvalId] };
    },
    // The requester made the request: two-person integrity (403); the admin created the requester, so it is no
    // second person either (403); an auditor never decides.
    own: [403, 200, 403, 403],
    other: [404, 404, 404, 404],
  },
  'POST /api/v1/approvals/:id/reject': {
    fixture: async () => {
      const a = await freshApproval();
      return { url: `/api/v1/approvals/${a.approvalId}/reject`, payload: { note: 'matrix' }, ids: [a.approvalId] };
    },
    own: [403, 200, 403, 403],
    other: [404, 404, 404, 404],
  },
  'POST /api/v1/approvals/:id/void': {
    fixture: async () => {
      const a = await freshApproval();
      return { url: `/api/v1/approvals/${a.approvalId}/void`, payload: { reason: 'matrix' }, ids: [a.approvalId] };
    },
    own: [200, 403, 403, 403],
    other: [404, 404, 404, 404],
  },

  // The audit ledger: admins and auditors read, only admins sign checkpoints; each org sees its own chain.
  'GET /api/v1/audit': {
    fixture: async () => ({ url: '/api/v1/audit?limit=500', ids: [shared.approvalId, A.admin.id] }),
    own: [200, 403, 403, 200],
    other: [200, 403, 403, 200],
  },
  'GET /api/v1/audit/verify': {
    fixture: async () => ({ url: '/api/v1/audit/verify' }),
    own: [200, 403, 403, 200],
    other: [200, 403, 403, 200],
  },
  'GET /api/v1/audit/public-key': {
    fixture: async () => ({ url: '/api/v1/audit/public-key' }),
    own: [200, 403, 403, 200],
    other: [200, 403, 403, 200],
  },
  'GET /api/v1/audit/checkpoints': {
    fixture: async () => ({ url: '/api/v1/audit/checkpoints', ids: [await checkpointOfA()] }),
    own: [200, 403, 403, 200],
    other: [200, 403, 403, 200],
  },
  'POST /api/v1/audit/checkpoints': {
    fixture: async () => {
      // Something new in both chains, so a checkpoint is due (201) in either org.
      await createPrincipal(h.tdb.handle.db, A.admin, { name: `matrix-${unique()}`, role: 'requester' });
      await createPrincipal(h.tdb.handle.db, B.admin, { name: `matrix-${unique()}`, role: 'requester' });
      return { url: '/api/v1/audit/checkpoints', payload: {} };
    },
    own: [201, 403, 403, 403],
    other: [201, 403, 403, 403],
  },
  'GET /api/v1/audit/checkpoints/:id': {
    fixture: async () => {
      const id = await checkpointOfA();
      return { url: `/api/v1/audit/checkpoints/${id}`, ids: [id] };
    },
    own: [200, 403, 403, 200],
    other: [404, 403, 403, 404],
  },
  'GET /api/v1/audit/export': {
    fixture: async () => {
      const id = await checkpointOfA();
      return { url: `/api/v1/audit/export?checkpoint_id=${id}`, ids: [id] };
    },
    own: [200, 403, 403, 200],
    other: [404, 403, 403, 404],
  },
};

/** A signed checkpoint of org A's chain, made once through the api. */
let checkpointA: string | undefined;
async function checkpointOfA(): Promise<string> {
  if (checkpointA) return checkpointA;
  const r = await h.call(A.admin.key, { method: 'POST', url: '/api/v1/audit/checkpoints', payload: {} });
  if (r.status !== 201 && r.status !== 200)
    throw new Error(`fixture checkpoint failed: ${r.status} ${JSON.stringify(r.body)}`);
  checkpointA = r.body.id as string;
  return checkpointA;
}

const keyOf = (org: SeededOrg, role: Role): string => (role === 'operator' ? org.operator1.key : org[role].key);

/** Registered routes as "METHOD /path"; HEAD routes Fastify derives from a GET share that GET's row. */
function registeredRoutes(routes: readonly RouteOptions[]): string[] {
  const all = routes.flatMap((r) => (Array.isArray(r.method) ? r.method : [r.method]).map((m) => `${m} ${r.url}`));
  const set = new Set(all);
  return [...set].filter((k) => !(k.startsWith('HEAD ') && set.has(`GET ${k.slice(5)}`))).sort();
}

const pathOf = (route: string): string => route.slice(route.indexOf(' ') + 1);

interface Outcome {
  status: number;
  code: unknown;
  contentType: string;
  text: string;
}

async function send(route: string, key: string | null, f: Fixture): Promise<Outcome> {
  const method = route.slice(0, route.indexOf(' ')) as 'GET' | 'POST' | 'PUT' | 'DELETE';
  const res = await h.app.inject({
    method,
    url: f.url,
    headers: key ? { authorization: `Bearer ${key}` } : {},
    ...(f.payload !== undefined ? { payload: f.payload as object } : {}),
  });
  const contentType = String(res.headers['content-type'] ?? '');
  let code: unknown;
  let text = res.body;
  if (/^application\/(problem\+)?json/.test(contentType)) {
    const body = res.json() as Record<string, unknown>;
    code = body.code;
    // A problem's `instance` echoes the caller's own URL; that is not a leak.
    const { instance: _echo, ...rest } = body;
    text = JSON.stringify(rest);
  }
  return { status: res.statusCode, code, contentType, text };
}

/** What a cell got wrong, or null. Errors must be problem+json with a code. */
function judge(cell: string, expected: number, got: Outcome, foreignIds: readonly string[]): string | null {
  if (got.status !== expected) {
    return `${cell}: expected ${expected}, got ${got.status}${got.code ? ` (${String(got.code)})` : ''}`;
  }
  if (expected >= 400 && (!got.contentType.includes('application/problem+json') || typeof got.code !== 'string')) {
    return `${cell}: ${expected} without a problem+json body carrying a code`;
  }
  const leaked = foreignIds.filter((id) => got.text.includes(id));
  if (leaked.length > 0) return `${cell}: answer mentions org A's ${leaked.join(', ')}`;
  return null;
}

beforeAll(async () => {
  h = await startApiHarness();
  A = h.org;
  B = await seedOrg(h.tdb.handle.db);
  const db = h.tdb.handle.db;
  const revoked = await mintOwnApiKey(db, A.admin, { name: 'revoked' });
  await revokeApiKey(db, A.admin, revoked.id);
  revokedKey = revoked.key;
  const expired = await mintOwnApiKey(db, A.admin, { name: 'expired' });
  await h.tdb.superuser(`UPDATE api_keys SET expires_at = now() - interval '1 minute' WHERE id = $1`, [expired.id]);
  expiredKey = expired.key;
  servicePrincipalId = (await createPrincipal(db, A.admin, { name: 'matrix-svc', role: 'operator', kind: 'service' }))
    .id;
  const a = await freshApproval();
  shared = { ...a, issuedCertificateId: await freshIssuedCertificate() };
});
afterAll(async () => h?.close());

describe('authorization matrix', () => {
  it('has an entry for every registered route, and no entry for a route that does not exist', () => {
    const registered = registeredRoutes(h.routes);
    const api = registered.filter((r) => pathOf(r).startsWith('/api/'));
    const missing = api.filter((r) => !(r in MATRIX));
    const unpoliced = registered
      .filter((r) => !pathOf(r).startsWith('/api/'))
      .filter((r) => !POLICIES.some((p) => p.pattern.test(pathOf(r))));
    const stale = Object.keys(MATRIX).filter((r) => !registered.includes(r));
    const problems = [
      ...missing.map((r) => `route ${r} has no row in MATRIX (authorization-matrix.int.test.ts): add its statuses`),
      ...unpoliced.map(
        (r) => `route ${r} is outside /api/v1 and matches no entry of POLICIES: make it public or guarded`,
      ),
      ...stale.map((r) => `MATRIX row ${r} names a route the api does not register: remove or rename it`),
    ];
    expect(problems).toEqual([]);
    // The table is not vacuous: it covers the SPEC §3 routes at least.
    expect(api.length).toBeGreaterThanOrEqual(25);
  });

  for (const [route, row] of Object.entries(MATRIX)) {
    it(route, async () => {
      const wrong: string[] = [];
      for (const scope of ['own', 'other'] as const) {
        const org = scope === 'own' ? A : B;
        for (const [i, role] of ROLES.entries()) {
          const f = await row.fixture();
          const got = await send(route, keyOf(org, role), f);
          const problem = judge(
            `${role} of ${scope} org`,
            row[scope][i] ?? 0,
            got,
            scope === 'other' ? (f.ids ?? []) : [],
          );
          if (problem) wrong.push(problem);
        }
      }
      for (const [label, key] of [
        ['no credentials', null],
        ['a revoked key', revokedKey],
        ['an expired key', expiredKey],
      ] as const) {
        const f = await row.fixture();
        const got = await send(route, key, f);
        const problem = judge(label, row.anonymous ?? 401, got, f.ids ?? []);
        if (problem) wrong.push(problem);
        if (got.status === 401 && got.code !== 'unauthenticated')
          wrong.push(`${label}: 401 with code ${String(got.code)}`);
      }
      expect(wrong, `${route}:\n  ${wrong.join('\n  ')}`).toEqual([]);
    });
  }

  it('answers public routes to anyone, whatever credentials come along, and guards the admin UI', async () => {
    const registered = registeredRoutes(h.routes).filter((r) => !pathOf(r).startsWith('/api/'));
    const wrong: string[] = [];
    let probed = 0;
    for (const route of registered) {
      const path = pathOf(route);
      const method = route.slice(0, route.indexOf(' '));
      // Wildcards and parameters have no single URL to probe; GET is the only method that cannot act.
      if (method !== 'GET' || /[*:]/.test(path)) continue;
      const policy = POLICIES.find((p) => p.pattern.test(path));
      for (const key of [null, revokedKey, A.requester.key]) {
        const res = await h.app.inject({
          method: 'GET',
          url: path,
          headers: key ? { authorization: `Bearer ${key}` } : {},
        });
        probed++;
        if (policy?.check === 'public' && res.statusCode >= 400) {
          wrong.push(
            `${route} (${policy.name}) answered ${res.statusCode} to ${key ? 'a caller with a key' : 'anyone'}`,
          );
        }
        if (policy?.check === 'admin-ui' && key !== A.admin.key && res.statusCode < 400) {
          wrong.push(`${route} (${policy.name}) answered ${res.statusCode} to a non-admin`);
        }
      }
    }
    expect(wrong).toEqual([]);
    expect(probed).toBeGreaterThanOrEqual(9); // /healthz, /readyz, /openapi.json at least
  });

  it('keeps an unknown /api path from answering anonymous callers with anything but 401', async () => {
    const r = await h.call(null, { method: 'GET', url: '/api/v1/does-not-exist' });
    expect(r.status).toBe(401);
    const known = await h.call(A.admin.key, { method: 'GET', url: '/api/v1/does-not-exist' });
    expect(known.status).toBe(404);
    expect(known.body.code).toBe('not_found');
  });
});
