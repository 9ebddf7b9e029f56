import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROUTES } from './routes.ts';
import { type LiveApi, startLiveApi } from './testing/live-api.ts';
import type {
  Approval,
  ApprovalDiff,
  Certificate,
  CertificateVersion,
  ClientCertificateBinding,
  CreatedApiKey,
  IntakeKey,
  Job,
  Me,
  Principal,
  Profile,
} from './types.ts';

/**
 * Holds the typed client to the OpenAPI document the api actually serves:
 * every operation the client calls exists, every operation served is in the
 * client, and the client's types name exactly the fields the server answers.
 */
let live: LiveApi;
let doc: {
  paths: Record<string, Record<string, { responses?: Record<string, { content?: Record<string, { schema?: any }> }> }>>;
};

beforeAll(async () => {
  live = await startLiveApi();
  const res = await fetch(`${live.url}/openapi.json`);
  expect(res.status).toBe(200);
  doc = (await res.json()) as typeof doc;
});
afterAll(async () => {
  await live?.close();
});

const METHODS = ['get', 'post', 'put', 'delete', 'patch'];
const served = () =>
  Object.entries(doc.paths).flatMap(([path, ops]) =>
    Object.keys(ops)
      .filter((m) => METHODS.includes(m))
      .map((m) => `${m.toUpperCase()} ${path}`),
  );

/** The property names of a 200/201/202 JSON answer; for pages, of the items. */
function answerKeys(method: string, path: string, status: string, pick: (s: any) => any = (s) => s): string[] {
  const schema = doc.paths[path]?.[method]?.responses?.[status]?.content?.['application/json']?.schema;
  expect(schema, `${method} ${path} ${status} has a JSON schema`).toBeTruthy();
  return Object.keys(pick(schema).properties ?? {}).sort();
}

// Record<keyof T, true> makes the compiler list every field of the type, no more, no less.
const keys = (o: Record<string, true>) => Object.keys(o).sort();
const approvalKeys: Record<keyof Approval, true> = {
  id: true,
  job_id: true,
  certificate_id: true,
  profile_id: true,
  state: true,
  requested_by: true,
  requester_type: true,
  justification: true,
  domains: true,
  environment: true,
  approvals_required: true,
  votes: true,
  requested_at: true,
  expires_at: true,
  decided_by: true,
  decided_at: true,
  decision_note: true,
};
const jobKeys: Record<keyof Job, true> = {
  id: true,
  certificate_id: true,
  profile_id: true,
  kind: true,
  status: true,
  requires_approval: true,
  requested_by: true,
  common_name: true,
  sans: true,
  error: true,
  attempts: true,
  created_at: true,
  released_at: true,
  completed_at: true,
};
const certificateKeys: Record<keyof Certificate, true> = {
  id: true,
  profile_id: true,
  owner_id: true,
  common_name: true,
  sans: true,
  current_version: true,
  not_after: true,
  created_at: true,
  versions: true,
};
const versionKeys: Record<keyof CertificateVersion, true> = {
  id: true,
  job_id: true,
  serial: true,
  fingerprint_sha256: true,
  not_before: true,
  not_after: true,
  issuer: true,
  created_at: true,
};
const profileKeys: Record<keyof Profile, true> = {
  id: true,
  name: true,
  environment: true,
  requires_approval: true,
  approvals_required: true,
  approvers: true,
  allowed_domains: true,
  issuer: true,
  validity_days: true,
  approval_timeout: true,
  escalation_after: true,
  renew_before_days: true,
  escalation_contacts: true,
  allow_bypass: true,
  created_at: true,
  updated_at: true,
};
const principalKeys: Record<keyof Principal, true> = {
  id: true,
  name: true,
  email: true,
  role: true,
  kind: true,
  created_by: true,
  disabled: true,
  created_at: true,
};
const meKeys: Record<keyof Me, true> = { ...principalKeys, org_id: true, credential: true };
const apiKeyKeys: Record<keyof CreatedApiKey, true> = {
  id: true,
  principal_id: true,
  key: true,
  name: true,
  expires_at: true,
  created_at: true,
  created_by: true,
  purpose: true,
};
const bindingKeys: Record<keyof ClientCertificateBinding, true> = {
  id: true,
  principal_id: true,
  match_kind: true,
  match_value: true,
  name: true,
  created_by: true,
  created_at: true,
};
const intakeKeyKeys: Record<keyof IntakeKey, true> = {
  id: true,
  org_id: true,
  principal_id: true,
  alg: true,
  public_key: true,
  thumbprint: true,
  name: true,
  created_by: true,
  created_at: true,
  revoked_at: true,
};
const diffKeys: Record<keyof ApprovalDiff, true> = {
  approval_id: true,
  job_id: true,
  certificate_id: true,
  kind: true,
  current: true,
  proposed: true,
  names_added: true,
  names_removed: true,
  names_kept: true,
  common_name_changed: true,
  key_change: true,
  current_validity_days: true,
};

describe('the client against the served OpenAPI document', () => {
  it('calls only operations the server documents (optional audit routes may be absent)', () => {
    const ops = new Set(served());
    const missing = Object.entries(ROUTES)
      .filter(([, r]) => !ops.has(`${r.method} ${r.path}`) && !('optional' in r && r.optional))
      .map(([name, r]) => `${name}: ${r.method} ${r.path}`);
    expect(missing).toEqual([]);
  });

  it('covers every documented operation', () => {
    const called = new Set(Object.values(ROUTES).map((r) => `${r.method} ${r.path}`));
    const uncovered = served().filter((op) => !called.has(op));
    expect(uncovered).toEqual([]);
    expect(served().length).toBeGreaterThanOrEqual(20);
  });

  it('names exactly the fields the server answers with', () => {
    expect(keys(approvalKeys)).toEqual(answerKeys('get', '/api/v1/approvals/{id}', '200'));
    expect(keys(approvalKeys)).toEqual(answerKeys('get', '/api/v1/approvals', '200', (s) => s.properties.items.items));
    expect(keys(jobKeys)).toEqual(answerKeys('get', '/api/v1/jobs/{id}', '200'));
    expect(keys(certificateKeys)).toEqual(answerKeys('get', '/api/v1/certificates/{id}', '200'));
    expect(keys(versionKeys)).toEqual(
      answerKeys('get', '/api/v1/certificates/{id}', '200', (s) => s.properties.versions.items),
    );
    expect(keys(profileKeys)).toEqual(answerKeys('get', '/api/v1/profiles/{id}', '200'));
    expect(keys(principalKeys)).toEqual(
      answerKeys('get', '/api/v1/principals', '200', (s) => s.properties.items.items),
    );
    expect(keys(meKeys)).toEqual(answerKeys('get', '/api/v1/me', '200'));
    expect(keys(apiKeyKeys)).toEqual(answerKeys('post', '/api/v1/principals/{id}/api-keys', '201'));
    expect(keys(diffKeys)).toEqual(answerKeys('get', '/api/v1/approvals/{id}/diff', '200'));
    expect(keys(bindingKeys)).toEqual(answerKeys('post', '/api/v1/principals/{id}/client-certificates', '201'));
    expect(keys(intakeKeyKeys)).toEqual(answerKeys('post', '/api/v1/principals/{id}/intake-keys', '201'));
    expect(keys(intakeKeyKeys)).toEqual(answerKeys('delete', '/api/v1/intake-keys/{id}', '200'));
    expect(['approval', 'certificate', 'job']).toEqual(answerKeys('post', '/api/v1/certificates', '202'));
    expect(['approval', 'job']).toEqual(answerKeys('post', '/api/v1/certificates/{id}/renew', '202'));
  });

  it('matches the documented audit shapes once the server has them', () => {
    const verify = doc.paths['/api/v1/audit/verify']?.get;
    if (verify) {
      const k = answerKeys('get', '/api/v1/audit/verify', '200');
      for (const f of ['ok', 'checked', 'head', 'first_bad_seq']) expect(k).toContain(f);
    }
    const checkpoints = doc.paths['/api/v1/audit/checkpoints']?.get;
    if (checkpoints) {
      const k = answerKeys('get', '/api/v1/audit/checkpoints', '200', (s) => s.properties.items.items);
      for (const f of ['at', 'head_hash', 'key_id', 'org_id', 'seq', 'signature']) expect(k).toContain(f);
    }
  });
});
