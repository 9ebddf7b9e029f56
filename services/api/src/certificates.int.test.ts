import { generateKeyAndCsr } from '@countersign/ca/csr-generate';
import { tamperCsrSignature } from '@countersign/ca/testing';
import { csrFor, seedOrg } from '@countersign/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiHarness, startApiHarness } from './test/api-harness.ts';

let h: ApiHarness;
beforeAll(async () => {
  h = await startApiHarness();
});
afterAll(async () => h?.close());

const counts = async () => {
  const r = await h.tdb.superuser<{ c: string; j: string; a: string; o: string }>(
    `SELECT (SELECT count(*) FROM certificates) c, (SELECT count(*) FROM jobs) j,
            (SELECT count(*) FROM approval_requests) a, (SELECT count(*) FROM audit_records) o`,
  );
  return r.rows[0];
};

async function request(key: string, body: Record<string, unknown>, headers: Record<string, string> = {}) {
  return h.call(key, { method: 'POST', url: '/api/v1/certificates', payload: body, headers });
}

describe('POST /api/v1/certificates', () => {
  it('opens an approval request for a gated profile and releases an ungated one at once', async () => {
    const { csrPem } = await csrFor('web1.example.test', ['www.example.test']);
    const gated = await request(h.org.requester.key, {
      profile_id: h.org.gated.id,
      common_name: 'web1.example.test',
      sans: ['www.example.test'],
      csr: csrPem,
      justification: 'new web frontend',
    });
    expect(gated.status).toBe(202);
    expect(gated.body.job.status).toBe('awaiting_approval');
    expect(gated.body.approval.state).toBe('pending');
    expect(gated.body.approval.requested_by).toBe(h.org.requester.id);
    expect(gated.body.approval.domains).toEqual(['web1.example.test', 'www.example.test']);
    expect(gated.body.approval.environment).toBe('production');

    const open = await request(h.org.requester.key, {
      profile_id: h.org.open.id,
      common_name: 'dev.example.test',
      csr: (await csrFor('dev.example.test')).csrPem,
    });
    expect(open.status).toBe(202);
    expect(open.body.job.status).toBe('pending');
    expect(open.body.approval).toBeNull();
  });

  it('requires a justification when the profile requires approval', async () => {
    const before = await counts();
    const r = await request(h.org.requester.key, {
      profile_id: h.org.gated.id,
      common_name: 'nojust.example.test',
      csr: (await csrFor('nojust.example.test')).csrPem,
    });
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('validation_failed');
    expect(r.body.detail).toMatch(/justification/);
    expect(await counts()).toEqual(before);
  });

  it.each([
    ['garbage', () => 'not a csr at all', /invalid CSR/],
    [
      'a certificate instead of a CSR',
      () => '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n',
      /invalid CSR/,
    ],
  ])('rejects %s with a clear 400 and writes nothing', async (_name, csr, message) => {
    const before = await counts();
    const r = await request(h.org.requester.key, {
      profile_id: h.org.gated.id,
      common_name: 'bad.example.test',
      csr: csr(),
      justification: 'x',
    });
    expect(r.status).toBe(400);
    expect(r.headers['content-type']).toMatch(/application\/problem\+json/);
    // invalid_csr since issue 20 (validation_failed before): a CSR that does not parse has its own code.
    expect(r.body.code).toBe('invalid_csr');
    expect(r.body.detail).toMatch(message);
    expect(await counts()).toEqual(before);
  });

  it('rejects a CSR whose signature does not verify', async () => {
    const before = await counts();
    const { csrPem } = await csrFor('sig.example.test');
    const r = await request(h.org.requester.key, {
      profile_id: h.org.gated.id,
      common_name: 'sig.example.test',
      csr: tamperCsrSignature(csrPem),
      justification: 'x',
    });
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('invalid_csr');
    expect(r.body.detail).toMatch(/signature/i);
    expect(await counts()).toEqual(before);
  });

  it('rejects a CSR whose names do not match the request', async () => {
    const before = await counts();
    const { csrPem } = await csrFor('other.example.test');
    const r = await request(h.org.requester.key, {
      profile_id: h.org.gated.id,
      common_name: 'mine.example.test',
      csr: csrPem,
      justification: 'x',
    });
    expect(r.status).toBe(400);
    expect(r.body.detail).toMatch(/does not match/);
    expect(await counts()).toEqual(before);
  });

  it('rejects names the profile does not allow with 422 domain_not_allowed', async () => {
    const before = await counts();
    const { csrPem } = await generateKeyAndCsr({ commonName: 'evil.attacker.test', dnsNames: ['evil.attacker.test'] });
    const r = await request(h.org.requester.key, {
      profile_id: h.org.gated.id,
      common_name: 'evil.attacker.test',
      csr: csrPem,
      justification: 'x',
    });
    expect(r.status).toBe(422);
    expect(r.body.code).toBe('domain_not_allowed');
    expect(r.body.detail).toContain('evil.attacker.test');
    expect(await counts()).toEqual(before);
  });

  it('rejects unknown and server-owned body properties with 400', async () => {
    const { csrPem } = await csrFor('owned.example.test');
    const base = { profile_id: h.org.gated.id, common_name: 'owned.example.test', csr: csrPem, justification: 'x' };
    const before = await counts();
    for (const extra of [{ state: 'approved' }, { requested_by: h.org.admin.id }, { org: 'x' }, { colour: 'blue' }]) {
      const r = await request(h.org.requester.key, { ...base, ...extra });
      expect(r.status).toBe(400);
      expect(r.body.code).toBe('validation_failed');
      expect(r.body.detail).toContain(`unknown property "${Object.keys(extra)[0]}"`);
    }
    expect(await counts()).toEqual(before);
  });

  it('answers without credentials with 401 problem+json', async () => {
    const r = await h.call(null, { method: 'GET', url: '/api/v1/certificates' });
    expect(r.status).toBe(401);
    expect(r.body.code).toBe('unauthenticated');
    const bad = await h.call('cs_00000000000000000000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', {
      method: 'GET',
      url: '/api/v1/certificates',
    });
    expect(bad.status).toBe(401);
  });

  it('replays the first answer for the same Idempotency-Key and refuses a different body', async () => {
    const { csrPem } = await csrFor('idem.example.test');
    const body = { profile_id: h.org.gated.id, common_name: 'idem.example.test', csr: csrPem, justification: 'idem' };
    const headers = { 'idempotency-key': 'key-1' };
    const [a, b] = await Promise.all([
      request(h.org.requester.key, body, headers),
      request(h.org.requester.key, body, headers),
    ]);
    expect(a.status).toBe(202);
    expect(b.status).toBe(202);
    expect(b.body.job.id).toBe(a.body.job.id);
    const c = await request(h.org.requester.key, body, headers);
    expect(c.body.approval.id).toBe(a.body.approval.id);
    const jobsForCert = await h.tdb.superuser('SELECT id FROM jobs WHERE certificate_id = $1', [a.body.certificate.id]);
    expect(jobsForCert.rowCount).toBe(1);
    const conflict = await request(h.org.requester.key, { ...body, justification: 'different' }, headers);
    expect(conflict.status).toBe(409);
    expect(conflict.body.code).toBe('idempotency_conflict');
    // The same key from another principal is its own request.
    const other = await request(h.org.operator1.key, body, headers);
    expect(other.status).toBe(202);
    expect(other.body.job.id).not.toBe(a.body.job.id);
  });
});

describe('renewals', () => {
  it('reuses the previous key without a CSR and refuses a second open job with 409', async () => {
    const { csrPem } = await csrFor('renew.example.test');
    const first = await request(h.org.requester.key, {
      profile_id: h.org.open.id,
      common_name: 'renew.example.test',
      csr: csrPem,
    });
    const certId = first.body.certificate.id;
    // The first job is still open (pending, not yet issued): a renewal must wait.
    const blocked = await h.call(h.org.requester.key, {
      method: 'POST',
      url: `/api/v1/certificates/${certId}/renew`,
      payload: {},
    });
    expect(blocked.status).toBe(409);
    expect(blocked.body.code).toBe('renewal_in_progress');
    await h.tdb.superuser(`UPDATE jobs SET status = 'completed' WHERE certificate_id = $1`, [certId]);
    const renewed = await h.call(h.org.requester.key, {
      method: 'POST',
      url: `/api/v1/certificates/${certId}/renew`,
      payload: { justification: 'rotation' },
    });
    expect(renewed.status).toBe(202);
    expect(renewed.body.job.kind).toBe('renewal');
    const keys = await h.tdb.superuser<{ same: boolean }>(
      `SELECT (SELECT public_key FROM jobs WHERE id = $1) = (SELECT public_key FROM certificates WHERE id = $2) AS same`,
      [renewed.body.job.id, certId],
    );
    expect(keys.rows[0]?.same).toBe(true);
  });
});

describe('org isolation', () => {
  it('answers 404 for every object of another org', async () => {
    const other = await seedOrg(h.tdb.handle.db);
    const { csrPem } = await csrFor('iso.example.test');
    const mine = await request(h.org.requester.key, {
      profile_id: h.org.gated.id,
      common_name: 'iso.example.test',
      csr: csrPem,
      justification: 'iso',
    });
    const paths = [
      `/api/v1/certificates/${mine.body.certificate.id}`,
      `/api/v1/certificates/${mine.body.certificate.id}/pem`,
      `/api/v1/jobs/${mine.body.job.id}`,
      `/api/v1/approvals/${mine.body.approval.id}`,
      `/api/v1/profiles/${h.org.gated.id}`,
    ];
    for (const url of paths) {
      const r = await h.call(other.admin.key, { method: 'GET', url });
      expect(r.status, url).toBe(404);
      expect(r.body.code).toBe('not_found');
    }
    const approve = await h.call(other.admin.key, {
      method: 'POST',
      url: `/api/v1/approvals/${mine.body.approval.id}/approve`,
      payload: {},
    });
    expect(approve.status).toBe(404);
    const useProfile = await request(other.admin.key, {
      profile_id: h.org.gated.id,
      common_name: 'iso.example.test',
      csr: csrPem,
      justification: 'x',
    });
    expect(useProfile.status).toBe(404);
    const list = await h.call(other.admin.key, { method: 'GET', url: '/api/v1/approvals' });
    expect(list.body.items).toEqual([]);
  });
});

describe('paging', () => {
  it('returns every row exactly once when paging one by one, even for rows created in the same millisecond', async () => {
    const other = await seedOrg(h.tdb.handle.db);
    const { csrPem } = await csrFor('page.example.test');
    const made = await Promise.all(
      [1, 2, 3, 4].map(() =>
        h.call(other.admin.key, {
          method: 'POST',
          url: '/api/v1/certificates',
          payload: { profile_id: other.open.id, common_name: 'page.example.test', csr: csrPem },
        }),
      ),
    );
    const expected = made.map((m) => m.body.certificate.id).sort();
    for (const kind of ['certificates', 'jobs'] as const) {
      const seen: string[] = [];
      let cursor: string | null = null;
      do {
        const page: { body: { items: { id: string; certificate_id?: string }[]; next_cursor: string | null } } =
          await h.call(other.admin.key, {
            method: 'GET',
            url: `/api/v1/${kind}?limit=1${cursor ? `&cursor=${cursor}` : ''}`,
          });
        seen.push(...page.body.items.map((i) => i.certificate_id ?? i.id));
        cursor = page.body.next_cursor;
      } while (cursor);
      expect(seen.sort(), kind).toEqual(expected);
    }
  });
});
