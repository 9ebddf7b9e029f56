import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyAndCsr } from '@countersign/ca/csr-generate';
import { MAX_CERTIFICATE_NAMES } from '@countersign/domain';
import { csrFor } from '@countersign/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiHarness, startApiHarness } from './test/api-harness.ts';

/**
 * What a CSR must name (issue 20, "the gate guards itself"): a CSR that names
 * nothing matched whatever the body asked for, a renewal CSR kept the old
 * names, and a renewal CSR could carry thousands of names. Every refusal
 * writes nothing.
 */
let h: ApiHarness;
const work = mkdtempSync(join(tmpdir(), 'countersign-csr-names-'));
beforeAll(async () => {
  h = await startApiHarness();
});
afterAll(async () => {
  await h?.close();
  rmSync(work, { recursive: true, force: true });
});

/** A CSR made by OpenSSL: `-subj /` gives the empty subject @peculiar's generator cannot make. */
function opensslCsr(name: string, subject: string, sans: readonly string[] = []): string {
  const out = join(work, `${name}.csr`);
  execFileSync(
    '/usr/bin/openssl',
    [
      'req',
      '-new',
      '-nodes',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-keyout',
      join(work, `${name}.key`),
      '-out',
      out,
      '-subj',
      subject,
      ...(sans.length > 0 ? ['-addext', `subjectAltName=${sans.map((n) => `DNS:${n}`).join(',')}`] : []),
    ],
    { stdio: 'pipe' },
  );
  return readFileSync(out, 'utf8');
}

const counts = async () => {
  const r = await h.tdb.superuser<{ c: string; j: string; a: string; o: string }>(
    `SELECT (SELECT count(*) FROM certificates) c, (SELECT count(*) FROM jobs) j,
            (SELECT count(*) FROM approval_requests) a, (SELECT count(*) FROM audit_records) o`,
  );
  return r.rows[0];
};

const post = (url: string, payload: Record<string, unknown>) =>
  h.call(h.org.requester.key, { method: 'POST', url, payload });

/** A certificate of the ungated profile whose first job is finished, so it can be renewed. */
async function renewableCertificate(cn: string): Promise<string> {
  const first = await post('/api/v1/certificates', {
    profile_id: h.org.open.id,
    common_name: cn,
    csr: (await csrFor(cn)).csrPem,
  });
  expect(first.status).toBe(202);
  const id: string = first.body.certificate.id;
  await h.tdb.superuser(`UPDATE jobs SET status = 'completed' WHERE certificate_id = $1`, [id]);
  return id;
}

// Base 36 keeps the names short: 2,650 of them still fit the 64 KiB a CSR may have.
const manyNames = (n: number, prefix: string) =>
  Array.from({ length: n }, (_, i) => `${prefix}${i.toString(36)}.example.test`);

describe('a CSR that names nothing', () => {
  it('is refused for a new certificate with invalid_csr, whatever name the body asks for', async () => {
    const empty = opensslCsr('empty-new', '/');
    const before = await counts();
    const r = await post('/api/v1/certificates', {
      profile_id: h.org.gated.id,
      common_name: 'victim.example.test',
      csr: empty,
      justification: 'a CSR with no names',
    });
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('invalid_csr');
    expect(r.body.detail).toMatch(/no DNS name/);
    expect(await counts()).toEqual(before);
  });

  it('is refused for a renewal with invalid_csr (it used to keep the old names under a new key)', async () => {
    const id = await renewableCertificate('renew-empty.example.test');
    const before = await counts();
    const r = await post(`/api/v1/certificates/${id}/renew`, {
      justification: 'x',
      csr: opensslCsr('empty-renew', '/'),
    });
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('invalid_csr');
    expect(r.body.detail).toMatch(/no DNS name/);
    expect(await counts()).toEqual(before);
  });

  it('with only an organisation in its subject is refused too', async () => {
    const r = await post('/api/v1/certificates', {
      profile_id: h.org.gated.id,
      common_name: 'victim2.example.test',
      csr: opensslCsr('org-only', '/O=Acme'),
      justification: 'x',
    });
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('invalid_csr');
  });

  it('naming only other names does not match a request for a name it lacks', async () => {
    // No CN, one SAN: it names b, the request asks for a and b.
    const csr = opensslCsr('san-only', '/O=Acme', ['b.example.test']);
    const r = await post('/api/v1/certificates', {
      profile_id: h.org.gated.id,
      common_name: 'a.example.test',
      sans: ['b.example.test'],
      csr,
      justification: 'x',
    });
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('validation_failed');
    expect(r.body.detail).toMatch(/do not match/);
    // The same CSR for exactly what it names is fine.
    const ok = await post('/api/v1/certificates', {
      profile_id: h.org.gated.id,
      common_name: 'b.example.test',
      csr,
      justification: 'x',
    });
    expect(ok.status).toBe(202);
    expect(ok.body.approval.domains).toEqual(['b.example.test']);
  });

  it('a renewal CSR with names only in its SANs takes the first as common name', async () => {
    const id = await renewableCertificate('renew-san.example.test');
    const r = await post(`/api/v1/certificates/${id}/renew`, {
      justification: 'x',
      csr: opensslCsr('renew-san', '/O=Acme', ['renew-san2.example.test', 'renew-san3.example.test']),
    });
    expect(r.status).toBe(202);
    expect(r.body.job.common_name).toBe('renew-san2.example.test');
    expect(r.body.job.sans).toEqual(['renew-san2.example.test', 'renew-san3.example.test']);
  });
});

describe('CSRs that are not CSRs', () => {
  it.each([
    ['garbage', 'not a csr at all', /invalid CSR: CSR is not PEM-encoded/],
    ['a certificate', '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n', /invalid CSR/],
  ])('%s in a renewal is invalid_csr', async (_name, csr, message) => {
    const id = await renewableCertificate(`renew-bad-${_name.replace(/ /g, '')}.example.test`);
    const r = await post(`/api/v1/certificates/${id}/renew`, { justification: 'x', csr });
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('invalid_csr');
    expect(r.body.detail).toMatch(message);
  });
});

describe(`at most ${MAX_CERTIFICATE_NAMES} names per certificate`, () => {
  it('is the cap of the HTTP schema too', () => {
    expect(MAX_CERTIFICATE_NAMES).toBe(100);
  });

  it('refuses a renewal CSR with 2,650 SANs (it was accepted) with validation_failed naming the limit', async () => {
    const id = await renewableCertificate('renew-many.example.test');
    const { csrPem } = await generateKeyAndCsr({
      commonName: 'renew-many.example.test',
      dnsNames: manyNames(2650, ''),
    });
    expect(csrPem.length).toBeLessThan(65_536);
    const before = await counts();
    const r = await post(`/api/v1/certificates/${id}/renew`, { justification: 'x', csr: csrPem });
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('validation_failed');
    expect(r.body.detail).toContain(`at most ${MAX_CERTIFICATE_NAMES}`);
    expect(await counts()).toEqual(before);
  });

  it('refuses a renewal CSR one name over, and takes one at the limit', async () => {
    const over = await renewableCertificate('renew-over.example.test');
    const atLimit = manyNames(MAX_CERTIFICATE_NAMES - 1, 'l');
    const r = await post(`/api/v1/certificates/${over}/renew`, {
      justification: 'x',
      csr: (await generateKeyAndCsr({ commonName: 'renew-over.example.test', dnsNames: manyNames(100, 'o') })).csrPem,
    });
    expect(r.status).toBe(400);
    expect(r.body.detail).toContain(`at most ${MAX_CERTIFICATE_NAMES}`);
    const ok = await post(`/api/v1/certificates/${over}/renew`, {
      justification: 'x',
      csr: (await generateKeyAndCsr({ commonName: 'renew-over.example.test', dnsNames: atLimit })).csrPem,
    });
    expect(ok.status).toBe(202);
    expect(ok.body.job.sans).toHaveLength(MAX_CERTIFICATE_NAMES);
  });

  it('refuses a new request whose CSR carries more names than allowed before matching them', async () => {
    const before = await counts();
    const { csrPem } = await generateKeyAndCsr({ commonName: 'many.example.test', dnsNames: manyNames(500, 'n') });
    const r = await post('/api/v1/certificates', {
      profile_id: h.org.gated.id,
      common_name: 'many.example.test',
      csr: csrPem,
      justification: 'x',
    });
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('validation_failed');
    expect(r.body.detail).toContain(`at most ${MAX_CERTIFICATE_NAMES}`);
    expect(await counts()).toEqual(before);
  });

  it(`refuses a body whose ${MAX_CERTIFICATE_NAMES} SANs and common name make one name too many`, async () => {
    const sans = manyNames(MAX_CERTIFICATE_NAMES, 'b');
    const { csrPem } = await generateKeyAndCsr({ commonName: 'body.example.test', dnsNames: sans });
    const r = await post('/api/v1/certificates', {
      profile_id: h.org.gated.id,
      common_name: 'body.example.test',
      sans,
      csr: csrPem,
      justification: 'x',
    });
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('validation_failed');
    expect(r.body.detail).toContain(`at most ${MAX_CERTIFICATE_NAMES}`);
  });

  it('refuses more SANs than the limit in the body through the schema', async () => {
    const r = await post('/api/v1/certificates', {
      profile_id: h.org.gated.id,
      common_name: 'schema.example.test',
      sans: manyNames(MAX_CERTIFICATE_NAMES + 1, 's'),
      csr: (await csrFor('schema.example.test')).csrPem,
      justification: 'x',
    });
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('validation_failed');
  });
});
