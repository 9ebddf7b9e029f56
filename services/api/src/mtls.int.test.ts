import { request } from 'node:https';
import { createTestCa, issueTestCertificate, type TestCertificate } from '@countersign/ca/testing';
import { csrFor, profileFields } from '@countersign/testing';
import { saveProfile } from '@countersign/workflow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiHarness, startApiHarness } from './test/api-harness.ts';
import { listenMtls, type MtlsListener } from './tls.ts';

/**
 * The api over mTLS: the handshake refuses a client without a certificate,
 * with one from another CA, or with an expired one; a verified but
 * unregistered certificate gets 401; a registered one authenticates as its
 * service principal, which is the same actor as that principal's API key
 * (two-person integrity holds across the two).
 */
const DAY = 86_400_000;
const trusted = createTestCa('Countersign Test Client CA');
const foreign = createTestCa('Somebody Else CA');
const serverCert = issueTestCertificate(trusted, {
  commonName: 'localhost',
  usage: 'server',
  dnsNames: ['localhost'],
  ipAddresses: ['127.0.0.1'],
});
const deployerCert = issueTestCertificate(trusted, { commonName: 'deployer', usage: 'client' });
const renewerCert = issueTestCertificate(trusted, {
  commonName: 'renewer',
  usage: 'client',
  uris: ['spiffe://example.test/renewer'],
});
const expiredCert = issueTestCertificate(trusted, {
  commonName: 'deployer',
  usage: 'client',
  notBefore: new Date(Date.now() - 2 * DAY),
  notAfter: new Date(Date.now() - DAY),
});
const unregisteredCert = issueTestCertificate(trusted, { commonName: 'stranger', usage: 'client' });
/** A second certificate of the deployer's, bound by an admin: an enrollment credential. */
const deployerAdminBoundCert = issueTestCertificate(trusted, { commonName: 'deployer-2', usage: 'client' });
const foreignCert = issueTestCertificate(foreign, { commonName: 'deployer', usage: 'client' });

let h: ApiHarness;
let mtls: MtlsListener;
let deployer: { id: string; key: string };
let renewer: { id: string; key: string };
let deployerBindingId: string;
const refusals: string[] = [];

interface Answer {
  status: number;
  body: any;
}

/** One HTTPS request on a fresh connection, presenting `cert` (or none). */
function call(
  cert: TestCertificate | null,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const req = request(
      {
        host: '127.0.0.1',
        port: mtls.port,
        servername: 'localhost',
        method,
        path,
        ca: trusted.certPem,
        ...(cert ? { cert: cert.certPem, key: cert.keyPem } : {}),
        agent: false,
        headers: { ...(payload ? { 'content-type': 'application/json' } : {}), ...headers },
        timeout: 5_000,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          text += c;
        });
        res.on('end', () => {
          const type = String(res.headers['content-type'] ?? '');
          resolve({ status: res.statusCode ?? 0, body: type.includes('json') ? JSON.parse(text) : text });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end(payload);
  });
}

async function submitAs(key: string, cn: string) {
  const { csrPem } = await csrFor(cn);
  const r = await h.call(key, {
    method: 'POST',
    url: '/api/v1/certificates',
    payload: { profile_id: h.org.gated.id, common_name: cn, csr: csrPem, justification: `mTLS test ${cn}` },
  });
  expect(r.status).toBe(202);
  return r.body as { approval: { id: string }; job: { id: string } };
}

async function servicePrincipal(name: string, role: 'operator' | 'requester') {
  const admin = h.org.admin.key;
  const p = await h.call(admin, {
    method: 'POST',
    url: '/api/v1/principals',
    payload: { name, role, kind: 'service' },
  });
  expect(p.status).toBe(201);
  const k = await h.call(admin, { method: 'POST', url: `/api/v1/principals/${p.body.id}/api-keys`, payload: {} });
  expect(k.status).toBe(201);
  return { id: p.body.id as string, key: k.body.key as string };
}

beforeAll(async () => {
  h = await startApiHarness();
  mtls = await listenMtls(h.app, {
    cert: serverCert.certPem,
    key: serverCert.keyPem,
    clientCa: trusted.certPem,
    host: '127.0.0.1',
    port: 0,
    onRefused: (reason) => refusals.push(reason),
  });
  deployer = await servicePrincipal('deployer', 'operator');
  renewer = await servicePrincipal('renewer', 'requester');
  // The deployer approves the gated profile, like the two seeded operators.
  await saveProfile(h.tdb.handle.db, h.org.admin, h.org.gated.id, profileFields(), [
    h.org.operator1.id,
    h.org.operator2.id,
    deployer.id,
  ]);
  // The deployer registers its own certificate with the enrollment key the admin gave it: its own credential.
  const byCert = await h.call(deployer.key, {
    method: 'POST',
    url: '/api/v1/me/client-certificates',
    payload: { certificate: deployerCert.certPem, name: 'deployer on ci-runner-7' },
  });
  expect(byCert.status).toBe(201);
  expect(byCert.body.match_kind).toBe('fingerprint');
  expect(byCert.body.created_by).toBe(deployer.id);
  deployerBindingId = byCert.body.id;
  const byAdmin = await h.call(h.org.admin.key, {
    method: 'POST',
    url: `/api/v1/principals/${deployer.id}/client-certificates`,
    payload: { certificate: deployerAdminBoundCert.certPem, name: 'bound by the admin' },
  });
  expect(byAdmin.status).toBe(201);
  expect(byAdmin.body.created_by).toBe(h.org.admin.id);
  const bySan = await h.call(h.org.admin.key, {
    method: 'POST',
    url: `/api/v1/principals/${renewer.id}/client-certificates`,
    payload: { san: 'URI:spiffe://example.test/renewer' },
  });
  expect(bySan.status).toBe(201);
});

afterAll(async () => {
  await mtls?.close();
  await h?.close();
});

/** The connection closes right after the handshake, without an HTTP answer, for the reason the server logs. */
async function expectRefused(cert: TestCertificate | null, reason: string) {
  const seen = refusals.length;
  const err = await call(cert, 'GET', '/api/v1/me').then(
    (a) => new Error(`expected a refused connection, got HTTP ${a.status}`),
    (e: Error) => e,
  );
  expect(err.message).toMatch(/socket hang up|ECONNRESET|EPIPE/);
  expect(refusals.slice(seen)).toEqual([reason]);
}

describe('mTLS handshake', () => {
  it('refuses a client without a certificate', async () => {
    await expectRefused(null, 'NO_CLIENT_CERTIFICATE');
  });

  it('refuses a certificate from another CA', async () => {
    await expectRefused(foreignCert, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
  });

  it('refuses an expired certificate of the trusted CA', async () => {
    await expectRefused(expiredCert, 'CERT_HAS_EXPIRED');
  });
});

describe('certificate to principal', () => {
  it('answers 401 for a verified certificate that no binding names', async () => {
    const r = await call(unregisteredCert, 'GET', '/api/v1/me');
    expect(r.status).toBe(401);
    expect(r.body.code).toBe('unauthenticated');
    expect(r.body.detail).toContain('not registered');
  });

  it('authenticates a certificate bound by fingerprint and one bound by SAN as their principals', async () => {
    const me = await call(deployerCert, 'GET', '/api/v1/me');
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({ id: deployer.id, kind: 'service', role: 'operator' });
    const other = await call(renewerCert, 'GET', '/api/v1/me');
    expect(other.status).toBe(200);
    expect(other.body.id).toBe(renewer.id);
  });

  it('keeps public routes public over mTLS', async () => {
    expect((await call(unregisteredCert, 'GET', '/healthz')).status).toBe(200);
  });

  it('refuses a certificate and an API key of two different principals', async () => {
    const r = await call(deployerCert, 'GET', '/api/v1/me', undefined, {
      authorization: `Bearer ${h.org.admin.key}`,
    });
    expect(r.status).toBe(401);
    expect(r.body.detail).toContain('different principals');
    const same = await call(deployerCert, 'GET', '/api/v1/me', undefined, { authorization: `Bearer ${deployer.key}` });
    expect(same.status).toBe(200);
  });
});

describe('two-person integrity across certificate and key', () => {
  it('refuses the certificate approving a request its principal made with its API key, and writes no vote', async () => {
    const { approval, job } = await submitAs(deployer.key, 'deploy-self.example.test');
    const own = await call(deployerCert, 'POST', `/api/v1/approvals/${approval.id}/approve`, {});
    expect(own.status).toBe(403);
    expect(own.body.code).toBe('two_person_integrity');
    expect(own.body.detail).toContain('two-person integrity');
    const reject = await call(deployerCert, 'POST', `/api/v1/approvals/${approval.id}/reject`, { note: 'mine' });
    expect(reject.body.code).toBe('two_person_integrity');
    const votes = await h.tdb.superuser('SELECT 1 FROM approval_votes WHERE approval_id = $1', [approval.id]);
    expect(votes.rowCount).toBe(0);
    const state = await h.tdb.superuser<{ status: string }>('SELECT status FROM jobs WHERE id = $1', [job.id]);
    expect(state.rows[0]?.status).toBe('awaiting_approval');
  });

  it('lets the certificate decide somebody else’s request, recorded as its principal', async () => {
    const { approval } = await submitAs(h.org.requester.key, 'deploy-other.example.test');
    const r = await call(deployerCert, 'POST', `/api/v1/approvals/${approval.id}/approve`, { note: 'via mTLS' });
    expect(r.status).toBe(200);
    expect(r.body.state).toBe('approved');
    expect(r.body.decided_by).toBe(deployer.id);
    const audit = await h.tdb.superuser<{ actor_id: string; actor_type: string }>(
      `SELECT actor_id, actor_type FROM audit_records WHERE resource_id = $1 AND action = 'approval_approved'`,
      [approval.id],
    );
    expect(audit.rows).toEqual([{ actor_id: deployer.id, actor_type: 'service' }]);
    const vote = await h.tdb.superuser<{ credential_kind: string; credential_id: string }>(
      'SELECT credential_kind, credential_id FROM approval_votes WHERE approval_id = $1',
      [approval.id],
    );
    expect(vote.rows).toEqual([{ credential_kind: 'client_certificate', credential_id: deployerBindingId }]);
  });

  it('refuses a decision with a certificate an admin bound for the principal (an enrollment credential)', async () => {
    const { approval, job } = await submitAs(h.org.requester.key, 'deploy-enrolled.example.test');
    const me = await call(deployerAdminBoundCert, 'GET', '/api/v1/me');
    expect(me.status).toBe(200);
    expect(me.body.credential).toMatchObject({ kind: 'client_certificate', own: false, created_by: h.org.admin.id });
    const r = await call(deployerAdminBoundCert, 'POST', `/api/v1/approvals/${approval.id}/approve`, {});
    expect(r.status).toBe(403);
    expect(r.body.code).toBe('enrollment_credential');
    const votes = await h.tdb.superuser('SELECT 1 FROM approval_votes WHERE approval_id = $1', [approval.id]);
    expect(votes.rowCount).toBe(0);
    const state = await h.tdb.superuser<{ status: string }>('SELECT status FROM jobs WHERE id = $1', [job.id]);
    expect(state.rows[0]?.status).toBe('awaiting_approval');
    // The deployer's enrollment key was used to register its own certificate: it cannot make a second one.
    const again = await h.call(deployer.key, {
      method: 'POST',
      url: '/api/v1/me/client-certificates',
      payload: { certificate: unregisteredCert.certPem },
    });
    expect(again.status).toBe(409);
    expect(again.body.detail).toContain('already used');
  });
});

describe('binding administration', () => {
  it('lists bindings to admins and auditors only, and audits registrations', async () => {
    const list = await h.call(h.org.auditor.key, { method: 'GET', url: '/api/v1/client-certificates' });
    expect(list.status).toBe(200);
    // The deployer's own binding and the one the admin made for it, and the renewer's.
    expect(list.body.items.map((b: { principal_id: string }) => b.principal_id).sort()).toEqual(
      [deployer.id, deployer.id, renewer.id].sort(),
    );
    const filtered = await h.call(h.org.admin.key, {
      method: 'GET',
      url: `/api/v1/client-certificates?principal_id=${renewer.id}`,
    });
    expect(filtered.body.items).toHaveLength(1);
    expect(filtered.body.items[0].match_value).toBe('URI:spiffe://example.test/renewer');
    const paged = await h.call(h.org.admin.key, { method: 'GET', url: '/api/v1/client-certificates?limit=1' });
    expect(paged.body.items).toHaveLength(1);
    const rest = await h.call(h.org.admin.key, {
      method: 'GET',
      url: `/api/v1/client-certificates?limit=1&cursor=${paged.body.next_cursor}`,
    });
    expect(rest.body.items).toHaveLength(1);
    expect(rest.body.items[0].id).not.toBe(paged.body.items[0].id);
    const last = await h.call(h.org.admin.key, {
      method: 'GET',
      url: `/api/v1/client-certificates?limit=1&cursor=${rest.body.next_cursor}`,
    });
    expect(last.body.items).toHaveLength(1);
    expect([paged.body.items[0].id, rest.body.items[0].id]).not.toContain(last.body.items[0].id);
    expect(last.body.next_cursor).toBeNull();

    expect((await h.call(h.org.operator1.key, { method: 'GET', url: '/api/v1/client-certificates' })).status).toBe(403);
    const audited = await h.tdb.superuser(
      `SELECT 1 FROM audit_records WHERE action = 'client_certificate_registered' AND org_id = $1`,
      [h.org.orgId],
    );
    expect(audited.rowCount).toBe(3);
  });

  it('refuses bindings for user principals, duplicates, malformed values and two kinds at once', async () => {
    const post = (id: string, payload: object) =>
      h.call(h.org.admin.key, { method: 'POST', url: `/api/v1/principals/${id}/client-certificates`, payload });
    const user = await post(h.org.operator1.id, { san: 'DNS:op1.example.test' });
    expect(user.status).toBe(400);
    expect(user.body.detail).toContain('service principals');
    const dup = await post(renewer.id, { san: 'uri:spiffe://example.test/renewer' });
    expect(dup.status).toBe(409);
    expect(dup.body.code).toBe('conflict');
    expect((await post(renewer.id, { san: 'IP:10.0.0.1' })).status).toBe(400);
    expect((await post(renewer.id, { fingerprint: 'z'.repeat(64) })).status).toBe(400);
    expect((await post(renewer.id, { san: 'DNS:a.example.test', fingerprint: 'a'.repeat(64) })).status).toBe(400);
    expect((await post(renewer.id, { certificate: 'not a certificate' })).status).toBe(400);
    const colons = await post(renewer.id, { fingerprint: `SHA256:${'AB:'.repeat(31)}AB` });
    expect(colons.status).toBe(201);
    expect(colons.body.match_value).toBe('ab'.repeat(32));
  });

  it('a deleted binding no longer authenticates, and the deletion is audited', async () => {
    const del = await h.call(h.org.admin.key, {
      method: 'DELETE',
      url: `/api/v1/client-certificates/${deployerBindingId}`,
    });
    expect(del.status).toBe(200);
    expect(del.body).toEqual({ id: deployerBindingId, deleted: true });
    const after = await call(deployerCert, 'GET', '/api/v1/me');
    expect(after.status).toBe(401);
    const again = await h.call(h.org.admin.key, {
      method: 'DELETE',
      url: `/api/v1/client-certificates/${deployerBindingId}`,
    });
    expect(again.status).toBe(404);
    const audited = await h.tdb.superuser(
      `SELECT 1 FROM audit_records WHERE action = 'client_certificate_deleted' AND resource_id = $1`,
      [deployerBindingId],
    );
    expect(audited.rowCount).toBe(1);
  });
});
