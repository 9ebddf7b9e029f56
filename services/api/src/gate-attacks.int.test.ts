import { enrollPrincipal, profileFields, type SeededPrincipal } from '@countersign/testing';
import { addInstallationAdmin, expireConfigRequests, saveProfile } from '@countersign/workflow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiHarness, startApiHarness } from './test/api-harness.ts';

/**
 * Issue 20's attacks on "no single person", each tried through the real api
 * against real PostgreSQL, written to fail on the code before the identity
 * model: an admin who mints keys for others and votes with them, who makes a
 * second admin and votes as it, who satisfies an M-of-N quorum with N minted
 * keys, or who weakens the gate's configuration alone. Each ends with no
 * certificate, nothing written by the refused step, and a clear problem code.
 */
let h: ApiHarness;
let n = 0;
const unique = () => `${Date.now().toString(36)}${++n}`;

beforeAll(async () => {
  h = await startApiHarness();
});
afterAll(async () => h?.close());

async function request(key: string, profileId: string) {
  const cn = `gate-${unique()}.example.test`;
  const { csrFor } = await import('@countersign/testing');
  const { csrPem } = await csrFor(cn);
  const r = await h.call(key, {
    method: 'POST',
    url: '/api/v1/certificates',
    payload: { profile_id: profileId, common_name: cn, csr: csrPem, justification: 'gate attack test' },
  });
  expect(r.status).toBe(202);
  return r.body as { certificate: { id: string }; job: { id: string }; approval: { id: string } };
}

const approve = (key: string, id: string) =>
  h.call(key, { method: 'POST', url: `/api/v1/approvals/${id}/approve`, payload: { note: 'lgtm' } });

async function nothingIssued(r: { job: { id: string }; approval: { id: string } }) {
  const job = await h.tdb.superuser<{ status: string }>('SELECT status FROM jobs WHERE id = $1', [r.job.id]);
  expect(job.rows[0]?.status).toBe('awaiting_approval');
  const votes = await h.tdb.superuser('SELECT 1 FROM approval_votes WHERE approval_id = $1', [r.approval.id]);
  expect(votes.rowCount).toBe(0);
  const versions = await h.tdb.superuser('SELECT 1 FROM certificate_versions WHERE job_id = $1', [r.job.id]);
  expect(versions.rowCount).toBe(0);
}

describe('one admin alone cannot get a gated certificate', () => {
  it('cannot approve with a key it minted for an operator (an enrollment key)', async () => {
    // A request by the requester, so only the credential rule stands between the minted key and a vote.
    const r = await request(h.org.requester.key, h.org.gated.id);
    const minted = await h.call(h.org.admin.key, {
      method: 'POST',
      url: `/api/v1/principals/${h.org.operator1.id}/api-keys`,
      payload: { name: 'for alice' },
    });
    expect(minted.status).toBe(201);
    expect(minted.body).toMatchObject({ purpose: 'enrollment', created_by: h.org.admin.id });
    const vote = await approve(minted.body.key, r.approval.id);
    expect(vote.status).toBe(403);
    expect(vote.body.code).toBe('enrollment_credential');
    expect(vote.body.detail).toContain('/api/v1/me/api-keys');
    await nothingIssued(r);
    // And the admin's own request is not the operator's to approve even with the operator's own key: the
    // admin created the operator, so the operator is no second person for it.
    const own = await request(h.org.admin.key, h.org.gated.id);
    const related = await approve(h.org.operator1.key, own.approval.id);
    expect(related.status).toBe(403);
    expect(related.body.code).toBe('two_person_integrity');
    await nothingIssued(own);
  });

  it('cannot approve as a second admin it created, with the enrollment key or the own key minted from it', async () => {
    const r = await request(h.org.admin.key, h.org.gated.id);
    const created = await h.call(h.org.admin.key, {
      method: 'POST',
      url: '/api/v1/principals',
      payload: { name: `admin-${unique()}`, role: 'admin' },
    });
    expect(created.status).toBe(201);
    expect(created.body.created_by).toBe(h.org.admin.id);
    const enrollment = await h.call(h.org.admin.key, {
      method: 'POST',
      url: `/api/v1/principals/${created.body.id}/api-keys`,
      payload: {},
    });
    expect(enrollment.status).toBe(201);
    expect((await approve(enrollment.body.key, r.approval.id)).body.code).toBe('two_person_integrity');
    // The admin holds the enrollment key, so it can mint the new admin's own key...
    const own = await h.call(enrollment.body.key, { method: 'POST', url: '/api/v1/me/api-keys', payload: {} });
    expect(own.status).toBe(201);
    expect(own.body.purpose).toBe('own');
    // ...which still does not make a second person: the new admin was created by the requester.
    const vote = await approve(own.body.key, r.approval.id);
    expect(vote.status).toBe(403);
    expect(vote.body.code).toBe('two_person_integrity');
    expect(vote.body.detail).toContain('created the other');
    // And the enrollment key mints once: a second own key from it is refused, and says so.
    const again = await h.call(enrollment.body.key, { method: 'POST', url: '/api/v1/me/api-keys', payload: {} });
    expect(again.status).toBe(409);
    expect(again.body.detail).toContain('already used');
    await nothingIssued(r);
  });

  it('cannot fill an M-of-N quorum with keys it minted for the approvers', async () => {
    const mofn = await saveProfile(
      h.tdb.handle.db,
      h.org.admin,
      null,
      profileFields({ name: `two-of-two-${unique()}`, approvals_required: 2 }),
      [h.org.operator1.id, h.org.operator2.id],
    );
    const r = await request(h.org.requester.key, mofn.id);
    for (const op of [h.org.operator1, h.org.operator2]) {
      const minted = await h.call(h.org.admin.key, {
        method: 'POST',
        url: `/api/v1/principals/${op.id}/api-keys`,
        payload: {},
      });
      const vote = await approve(minted.body.key, r.approval.id);
      expect(vote.status).toBe(403);
      expect(vote.body.code).toBe('enrollment_credential');
    }
    await nothingIssued(r);
    // The operators' own keys still work: one vote each, and the second one approves.
    expect((await approve(h.org.operator1.key, r.approval.id)).body.state).toBe('pending');
    expect((await approve(h.org.operator2.key, r.approval.id)).body.state).toBe('approved');
  });

  it('flags an org with one admin as not yet two-person ready', async () => {
    const org = await h.call(h.org.auditor.key, { method: 'GET', url: '/api/v1/org' });
    expect(org.status).toBe(200);
    expect(org.body).toMatchObject({ id: h.org.orgId, two_person_ready: false, enabled_admins: 2 });
    expect(org.body.warning).toContain('not yet two-person ready');
  });
});

describe('an org with two independent admins: the gate guards its own configuration', () => {
  let admin2: SeededPrincipal;
  let admin2Enrollment: string;

  beforeAll(async () => {
    const db = h.tdb.handle.db;
    const name = (await h.tdb.superuser<{ name: string }>('SELECT name FROM orgs WHERE id = $1', [h.org.orgId])).rows[0]
      ?.name;
    // The admin made above by the first admin does not count; the installation adds an independent one.
    const added = await addInstallationAdmin(db, name ?? '', { name: 'admin2', email: 'admin2@example.test' });
    admin2Enrollment = added.key.key;
    admin2 = await enrollPrincipal(
      db,
      { id: added.admin.id, orgId: h.org.orgId, role: 'admin', kind: 'user', name: 'admin2' },
      { id: added.key.id, key: added.key.key, createdBy: added.key.created_by },
    );
  });

  it('says the org is ready', async () => {
    const org = await h.call(h.org.admin.key, { method: 'GET', url: '/api/v1/org' });
    expect(org.body).toMatchObject({ two_person_ready: true, warning: null });
  });

  it('one admin cannot ungate a profile: the change waits for the other admin, who applies it', async () => {
    const before = await h.call(h.org.admin.key, { method: 'GET', url: `/api/v1/profiles/${h.org.gated.id}` });
    const put = await h.call(h.org.admin.key, {
      method: 'PUT',
      url: `/api/v1/profiles/${h.org.gated.id}`,
      payload: {
        name: before.body.name,
        environment: before.body.environment,
        requires_approval: false,
        allowed_domains: before.body.allowed_domains,
        approvers: before.body.approvers,
        justification: 'load test this week',
      },
    });
    expect(put.status).toBe(202);
    const cr = put.body.configuration_request;
    expect(cr).toMatchObject({ kind: 'profile_update', state: 'pending', target_id: h.org.gated.id });
    expect(cr.summary).toContain('requires_approval: true → false');
    const still = await h.call(h.org.admin.key, { method: 'GET', url: `/api/v1/profiles/${h.org.gated.id}` });
    expect(still.body.requires_approval).toBe(true);

    // The requester cannot approve it; the other admin's enrollment key cannot either.
    const self = await h.call(h.org.admin.key, {
      method: 'POST',
      url: `/api/v1/configuration-requests/${cr.id}/approve`,
      payload: {},
    });
    expect(self.status).toBe(403);
    expect(self.body.code).toBe('two_person_integrity');
    const enrolled = await h.call(admin2Enrollment, {
      method: 'POST',
      url: `/api/v1/configuration-requests/${cr.id}/approve`,
      payload: {},
    });
    expect(enrolled.status).toBe(403);
    expect(enrolled.body.code).toBe('enrollment_credential');
    // An operator is not an admin.
    const op = await h.call(h.org.operator1.key, {
      method: 'POST',
      url: `/api/v1/configuration-requests/${cr.id}/approve`,
      payload: {},
    });
    expect(op.status).toBe(403);
    expect(
      (await h.call(h.org.admin.key, { method: 'GET', url: `/api/v1/profiles/${h.org.gated.id}` })).body
        .requires_approval,
    ).toBe(true);

    // Rejected: nothing changes, and it stays rejected.
    const rejected = await h.call(admin2.key, {
      method: 'POST',
      url: `/api/v1/configuration-requests/${cr.id}/reject`,
      payload: { note: 'not in production' },
    });
    expect(rejected.status).toBe(200);
    expect(rejected.body).toMatchObject({
      state: 'rejected',
      decided_by: admin2.id,
      decision_note: 'not in production',
    });
    const late = await h.call(admin2.key, {
      method: 'POST',
      url: `/api/v1/configuration-requests/${cr.id}/approve`,
      payload: {},
    });
    expect(late.status).toBe(409);
    expect(late.body.code).toBe('already_decided');
    expect(
      (await h.call(h.org.admin.key, { method: 'GET', url: `/api/v1/profiles/${h.org.gated.id}` })).body
        .requires_approval,
    ).toBe(true);
  });

  it('a weakening approved by the other admin is applied in the same step, and audited with both', async () => {
    const fields = profileFields({ name: `wide-${unique()}`, allowed_domains: ['shop.example.test'] });
    const p = await h.call(h.org.admin.key, {
      method: 'POST',
      url: '/api/v1/profiles',
      payload: {
        name: fields.name,
        environment: 'production',
        requires_approval: true,
        allowed_domains: fields.allowed_domains,
        approvers: [h.org.operator1.id],
      },
    });
    expect(p.status).toBe(202);
    expect(p.body.configuration_request.kind).toBe('profile_create');
    const id = p.body.configuration_request.target_id;
    expect((await h.call(h.org.admin.key, { method: 'GET', url: `/api/v1/profiles/${id}` })).status).toBe(404);
    const ok = await h.call(admin2.key, {
      method: 'POST',
      url: `/api/v1/configuration-requests/${p.body.configuration_request.id}/approve`,
      payload: { note: 'agreed' },
    });
    expect(ok.status).toBe(200);
    expect(ok.body.state).toBe('approved');
    const created = await h.call(h.org.admin.key, { method: 'GET', url: `/api/v1/profiles/${id}` });
    expect(created.status).toBe(200);
    expect(created.body).toMatchObject({ name: fields.name, approvers: [h.org.operator1.id] });
    const audit = await h.tdb.superuser<{ action: string; actor_id: string }>(
      `SELECT action, actor_id FROM audit_records WHERE org_id = $1 AND resource_id IN ($2, $3) ORDER BY seq`,
      [h.org.orgId, p.body.configuration_request.id, id],
    );
    expect(audit.rows).toEqual([
      { action: 'config_request_submitted', actor_id: h.org.admin.id },
      { action: 'config_request_approved', actor_id: admin2.id },
      { action: 'profile_created', actor_id: h.org.admin.id },
    ]);
  });

  it('one admin cannot add an approver, create an admin or operator, or promote anyone alone', async () => {
    // A requester can never decide, so even a two-person ready org creates one at once.
    const extraAnswer = await h.call(h.org.admin.key, {
      method: 'POST',
      url: '/api/v1/principals',
      payload: { name: `op-${unique()}`, role: 'requester' },
    });
    expect(extraAnswer.status).toBe(201);
    const extra = extraAnswer.body as { id: string };
    const before = await h.call(h.org.admin.key, { method: 'GET', url: `/api/v1/profiles/${h.org.gated.id}` });
    const promote = await h.call(h.org.admin.key, {
      method: 'PATCH',
      url: `/api/v1/principals/${extra.id}`,
      payload: { role: 'operator' },
    });
    expect(promote.status).toBe(202);
    expect(promote.body.configuration_request.summary).toContain('role: requester → operator');
    const newAdmin = await h.call(h.org.admin.key, {
      method: 'POST',
      url: '/api/v1/principals',
      payload: { name: `sneaky-${unique()}`, role: 'admin' },
    });
    expect(newAdmin.status).toBe(202);
    const newOperator = await h.call(h.org.admin.key, {
      method: 'POST',
      url: '/api/v1/principals',
      payload: { name: `sneaky-${unique()}`, role: 'operator' },
    });
    expect(newOperator.status).toBe(202);
    const approver = await h.call(h.org.admin.key, {
      method: 'PUT',
      url: `/api/v1/profiles/${h.org.gated.id}`,
      payload: {
        name: before.body.name,
        environment: before.body.environment,
        requires_approval: true,
        allowed_domains: before.body.allowed_domains,
        approvers: [...before.body.approvers, h.org.admin.id],
      },
    });
    expect(approver.status).toBe(202);
    expect(approver.body.configuration_request.summary).toContain('approvers add');
    // Nothing changed while they wait.
    const principals = await h.call(h.org.admin.key, { method: 'GET', url: '/api/v1/principals?limit=500' });
    const names = principals.body.items.map((p: { name: string }) => p.name);
    expect(names).not.toContain(newAdmin.body.configuration_request.change.name);
    expect(names).not.toContain(newOperator.body.configuration_request.change.name);
    expect(principals.body.items.find((p: { id: string }) => p.id === extra.id)?.role).toBe('requester');
    const after = await h.call(h.org.admin.key, { method: 'GET', url: `/api/v1/profiles/${h.org.gated.id}` });
    expect(after.body.approvers).toEqual(before.body.approvers);
    // A requester (can never decide) is created at once, and a tightening change applies at once.
    const requester = await h.call(h.org.admin.key, {
      method: 'POST',
      url: '/api/v1/principals',
      payload: { name: `plain-${unique()}`, role: 'requester' },
    });
    expect(requester.status).toBe(201);
    const tighter = await h.call(h.org.admin.key, {
      method: 'PUT',
      url: `/api/v1/profiles/${h.org.gated.id}`,
      payload: {
        name: before.body.name,
        environment: before.body.environment,
        requires_approval: true,
        approvals_required: 2,
        allowed_domains: before.body.allowed_domains,
        approvers: before.body.approvers,
      },
    });
    expect(tighter.status).toBe(200);
    expect(tighter.body.approvals_required).toBe(2);
  });

  it('a key for someone else is shown once, works only once approved, and never decides', async () => {
    const r = await h.call(h.org.admin.key, {
      method: 'POST',
      url: `/api/v1/principals/${h.org.operator2.id}/api-keys`,
      payload: { name: 'replacement', justification: 'operator2 lost the laptop' },
    });
    expect(r.status).toBe(202);
    expect(r.body.key).toMatch(/^cs_/);
    expect(JSON.stringify(r.body.configuration_request.change)).not.toContain(r.body.key.slice(-20));
    expect((await h.call(r.body.key, { method: 'GET', url: '/api/v1/me' })).status).toBe(401);
    const ok = await h.call(admin2.key, {
      method: 'POST',
      url: `/api/v1/configuration-requests/${r.body.configuration_request.id}/approve`,
      payload: {},
    });
    expect(ok.status).toBe(200);
    const me = await h.call(r.body.key, { method: 'GET', url: '/api/v1/me' });
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({ id: h.org.operator2.id, credential: { own: false, created_by: h.org.admin.id } });
  });

  it('an intake signing key for a service principal waits for the other admin too', async () => {
    const svc = await h.call(h.org.admin.key, {
      method: 'POST',
      url: '/api/v1/principals',
      payload: { name: `svc-${unique()}`, role: 'requester', kind: 'service' },
    });
    expect(svc.status).toBe(201);
    const { generateKeyPairSync } = await import('node:crypto');
    const jwk = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' });
    const r = await h.call(h.org.admin.key, {
      method: 'POST',
      url: `/api/v1/principals/${svc.body.id}/intake-keys`,
      payload: { public_key: jwk, justification: 'deploy pipeline' },
    });
    expect(r.status).toBe(202);
    expect(r.body.configuration_request.kind).toBe('intake_key_create');
    const before = await h.tdb.superuser('SELECT 1 FROM intake_keys WHERE principal_id = $1', [svc.body.id]);
    expect(before.rowCount).toBe(0);
    const ok = await h.call(admin2.key, {
      method: 'POST',
      url: `/api/v1/configuration-requests/${r.body.configuration_request.id}/approve`,
      payload: {},
    });
    expect(ok.status).toBe(200);
    const after = await h.tdb.superuser<{ id: string; created_by: string }>(
      'SELECT id, created_by FROM intake_keys WHERE principal_id = $1',
      [svc.body.id],
    );
    expect(after.rows).toEqual([{ id: r.body.configuration_request.target_id, created_by: h.org.admin.id }]);
  });

  it('lists requests for admins and auditors only, and a requester can withdraw its own', async () => {
    const put = await h.call(h.org.admin.key, {
      method: 'PATCH',
      url: `/api/v1/principals/${admin2.id}`,
      payload: { disabled: true },
    });
    // Disabling the other admin would leave one alone: it needs that other admin's approval.
    expect(put.status).toBe(202);
    expect(put.body.configuration_request.summary).toContain('an admin disabled');
    const list = await h.call(h.org.auditor.key, {
      method: 'GET',
      url: '/api/v1/configuration-requests?state=pending',
    });
    expect(list.status).toBe(200);
    expect(list.body.items.map((i: { id: string }) => i.id)).toContain(put.body.configuration_request.id);
    expect((await h.call(h.org.operator1.key, { method: 'GET', url: '/api/v1/configuration-requests' })).status).toBe(
      403,
    );
    const cancel = await h.call(h.org.admin.key, {
      method: 'POST',
      url: `/api/v1/configuration-requests/${put.body.configuration_request.id}/cancel`,
      payload: { reason: 'changed my mind' },
    });
    expect(cancel.body.state).toBe('cancelled');
    expect((await h.call(admin2.key, { method: 'GET', url: '/api/v1/me' })).body.disabled).toBe(false);
  });

  it('expires a request nobody decided, and applies nothing', async () => {
    const r = await h.call(h.org.admin.key, {
      method: 'POST',
      url: '/api/v1/principals',
      payload: { name: `late-${unique()}`, role: 'operator' },
    });
    expect(r.status).toBe(202);
    const id = r.body.configuration_request.id;
    await h.tdb.superuser(`UPDATE config_requests SET expires_at = now() - interval '1 second' WHERE id = $1`, [id]);
    const approveLate = await h.call(admin2.key, {
      method: 'POST',
      url: `/api/v1/configuration-requests/${id}/approve`,
      payload: {},
    });
    expect(approveLate.status).toBe(409);
    const expired = await expireConfigRequests(h.tdb.handle.db, new Date(), 100);
    expect(expired.map((e) => e.id)).toContain(id);
    const got = await h.call(h.org.admin.key, { method: 'GET', url: `/api/v1/configuration-requests/${id}` });
    expect(got.body).toMatchObject({ state: 'expired', decided_by: 'system-reaper' });
    const principal = await h.tdb.superuser('SELECT 1 FROM principals WHERE id = $1', [
      r.body.configuration_request.target_id,
    ]);
    expect(principal.rowCount).toBe(0);
  });

  describe('and the database refuses the same changes by raw SQL as the services role', () => {
    const sql = (text: string, values: unknown[] = []) => h.tdb.handle.pool.query(text, values);

    it('refuses ungating a profile, adding an approver, creating an admin, or a key for someone else', async () => {
      await expect(
        sql('UPDATE profiles SET requires_approval = false WHERE id = $1', [h.org.gated.id]),
      ).rejects.toThrow(/two-person ready.*configuration request/);
      await expect(
        sql(`UPDATE profiles SET allowed_domains = array_append(allowed_domains, '*.evil.test') WHERE id = $1`, [
          h.org.gated.id,
        ]),
      ).rejects.toThrow(/config_gate|configuration request/);
      await expect(
        sql('INSERT INTO profile_approvers (profile_id, org_id, principal_id) VALUES ($1, $2, $3)', [
          h.org.gated.id,
          h.org.orgId,
          h.org.auditor.id,
        ]),
      ).rejects.toThrow(/a new approver/);
      await expect(
        sql(`INSERT INTO principals (org_id, name, role, created_by) VALUES ($1, 'raw-admin', 'admin', $2)`, [
          h.org.orgId,
          h.org.admin.id,
        ]),
      ).rejects.toThrow(/a new admin/);
      await expect(
        sql(`INSERT INTO api_keys (org_id, principal_id, secret_hash, created_by) VALUES ($1, $2, $3, $4)`, [
          h.org.orgId,
          h.org.operator1.id,
          Buffer.alloc(32, 9),
          h.org.admin.id,
        ]),
      ).rejects.toThrow(/a key for someone else/);
      await expect(sql(`UPDATE principals SET role = 'admin' WHERE id = $1`, [h.org.requester.id])).rejects.toThrow(
        /adds a decider/,
      );
    });

    it('refuses a change under an approval of another change, or one approved in an earlier transaction', async () => {
      // An approved request to create one profile...
      const p = await h.call(h.org.admin.key, {
        method: 'POST',
        url: '/api/v1/profiles',
        payload: {
          name: `replay-${unique()}`,
          environment: 'staging',
          requires_approval: true,
          allowed_domains: ['replay.example.test'],
        },
      });
      const cr = p.body.configuration_request;
      await h.call(admin2.key, { method: 'POST', url: `/api/v1/configuration-requests/${cr.id}/approve`, payload: {} });
      // ...cannot be used later to ungate it, nor to create a request already approved.
      await expect(sql('UPDATE profiles SET requires_approval = false WHERE id = $1', [cr.target_id])).rejects.toThrow(
        /configuration request/,
      );
      await expect(
        sql(
          `INSERT INTO config_requests (org_id, kind, target_id, change, summary, justification, requested_by, expires_at, state,
             decided_by, decided_by_type, decided_at)
           VALUES ($1, 'profile_update', $2, '{}', 'x', 'x', $3, now() + interval '1 day', 'approved', $4, 'user', now())`,
          [h.org.orgId, cr.target_id, h.org.admin.id, admin2.id],
        ),
      ).rejects.toThrow(/starts pending/);
      // A request approved by the requester itself, or by the other admin without its own credential, is refused.
      const pending = await h.call(h.org.admin.key, {
        method: 'PUT',
        url: `/api/v1/profiles/${cr.target_id}`,
        payload: {
          name: `replay-x-${unique()}`,
          environment: 'staging',
          requires_approval: false,
          allowed_domains: ['replay.example.test'],
        },
      });
      const pid = pending.body.configuration_request.id;
      await expect(
        sql(
          `UPDATE config_requests SET state = 'approved', decided_by = $2, decided_by_type = 'user', decided_at = now(),
             decided_credential_kind = 'api_key', decided_credential_id = $3 WHERE id = $1`,
          [pid, h.org.admin.id, h.org.admin.keyId],
        ),
      ).rejects.toThrow(/config_two_person|another enabled admin/);
      await expect(
        sql(
          `UPDATE config_requests SET state = 'approved', decided_by = $2, decided_by_type = 'user', decided_at = now(),
             decided_credential_kind = 'api_key', decided_credential_id = $3 WHERE id = $1`,
          [pid, admin2.id, admin2.enrollmentKeyId],
        ),
      ).rejects.toThrow(/another enabled admin.*own credential/);
    });
  });
});
