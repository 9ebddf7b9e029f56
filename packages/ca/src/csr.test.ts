import { execFileSync } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generateKeyAndCsr } from './csr-generate.ts';
import { CsrError, parseCsr } from './index.ts';
import { tamperCsrSignature } from './testing.ts';

const OPENSSL = '/usr/bin/openssl';
const work = mkdtempSync(join(tmpdir(), 'countersign-csr-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A CSR made by OpenSSL, an encoder independent of both ours and @peculiar's. */
function opensslCsr(name: string, keyArgs: string[], extra: string[] = []): string {
  const out = join(work, `${name}.csr`);
  execFileSync(
    OPENSSL,
    ['req', '-new', '-nodes', ...keyArgs, '-keyout', join(work, `${name}.key`), '-out', out, ...extra],
    { stdio: 'pipe' },
  );
  return readFileSync(out, 'utf8');
}

function expectCsrError(fn: () => unknown, reason: CsrError['reason'], message: RegExp): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(CsrError);
  expect((caught as CsrError).reason).toBe(reason);
  expect((caught as CsrError).message).toMatch(message);
}

describe('parseCsr', () => {
  it('parses an ECDSA P-256 CSR from generateKeyAndCsr', async () => {
    const g = await generateKeyAndCsr({
      commonName: 'WWW.Example.com',
      dnsNames: ['www.example.com', 'API.example.com', '*.Example.com'],
    });
    expect(g.csrPem).toMatch(/^-----BEGIN CERTIFICATE REQUEST-----\n/);
    expect(g.privateKeyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    const csr = parseCsr(g.csrPem);
    expect(csr.commonName).toBe('www.example.com');
    expect(csr.dnsNames).toEqual(['www.example.com', 'api.example.com', '*.example.com']);
    expect(csr.keyAlgorithm).toBe('ecdsa-p256');
    expect(csr.keyBits).toBe(256);
    expect(csr.publicKeySpki.equals(g.publicKeySpki)).toBe(true);
  });

  it('parses an RSA-2048 CSR', async () => {
    const g = await generateKeyAndCsr({ commonName: 'rsa.example.com', dnsNames: [], keyAlgorithm: 'rsa' });
    const csr = parseCsr(g.csrPem);
    expect(csr).toMatchObject({ commonName: 'rsa.example.com', dnsNames: [], keyAlgorithm: 'rsa', keyBits: 2048 });
    expect(createPublicKey({ key: csr.publicKeySpki, format: 'der', type: 'spki' }).asymmetricKeyType).toBe('rsa');
    expect(csr.publicKeySpki.equals(g.publicKeySpki)).toBe(true);
  });

  it('parses OpenSSL-made P-384 and Ed25519 CSRs', () => {
    const p384 = parseCsr(
      opensslCsr(
        'p384',
        ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384'],
        ['-subj', '/O=Acme/CN=p384.example.com', '-addext', 'subjectAltName=DNS:p384.example.com,DNS:Alt.Example.com'],
      ),
    );
    expect(p384).toMatchObject({
      commonName: 'p384.example.com',
      dnsNames: ['p384.example.com', 'alt.example.com'],
      keyAlgorithm: 'ecdsa-p384',
      keyBits: 384,
    });
    const ed = parseCsr(opensslCsr('ed', ['-newkey', 'ed25519'], ['-subj', '/CN=ed.example.com']));
    expect(ed).toMatchObject({ commonName: 'ed.example.com', dnsNames: [], keyAlgorithm: 'ed25519' });
  });

  it('returns a null commonName when the subject has none', () => {
    const csr = parseCsr(
      opensslCsr(
        'nocn',
        ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'],
        ['-subj', '/O=Acme', '-addext', 'subjectAltName=DNS:only-san.example.com'],
      ),
    );
    expect(csr.commonName).toBeNull();
    expect(csr.dnsNames).toEqual(['only-san.example.com']);
  });

  it('rejects input that is not PEM', () => {
    expectCsrError(() => parseCsr('definitely not a csr'), 'not-pem', /not PEM-encoded/);
    expectCsrError(() => parseCsr(''), 'not-pem', /not PEM-encoded/);
    expectCsrError(
      () => parseCsr('-----BEGIN CERTIFICATE REQUEST-----\n!!!!\n-----END CERTIFICATE REQUEST-----\n'),
      'not-pem',
      /not valid base64/,
    );
  });

  it('rejects a PEM that is not a CERTIFICATE REQUEST', async () => {
    const g = await generateKeyAndCsr({ commonName: 'a.example.com', dnsNames: [] });
    expectCsrError(() => parseCsr(g.privateKeyPem), 'not-csr', /expected a PEM CERTIFICATE REQUEST, found PRIVATE KEY/);
    const certPem = g.csrPem.replaceAll('CERTIFICATE REQUEST', 'CERTIFICATE');
    expectCsrError(() => parseCsr(certPem), 'not-csr', /found CERTIFICATE$/);
  });

  it('rejects undecodable DER', async () => {
    const garbage = Buffer.from('this is not ASN.1 at all, just text').toString('base64');
    expectCsrError(
      () => parseCsr(`-----BEGIN CERTIFICATE REQUEST-----\n${garbage}\n-----END CERTIFICATE REQUEST-----\n`),
      'malformed',
      /not valid DER/,
    );
    const g = await generateKeyAndCsr({ commonName: 'a.example.com', dnsNames: [] });
    const der = Buffer.from(g.csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    const truncated = der.subarray(0, der.length - 5).toString('base64');
    expectCsrError(
      () => parseCsr(`-----BEGIN CERTIFICATE REQUEST-----\n${truncated}\n-----END CERTIFICATE REQUEST-----\n`),
      'malformed',
      /not valid DER/,
    );
  });

  it('rejects a CSR whose signature does not verify (EC and RSA)', async () => {
    for (const keyAlgorithm of ['ecdsa-p256', 'rsa'] as const) {
      const g = await generateKeyAndCsr({ commonName: 'a.example.com', dnsNames: ['a.example.com'], keyAlgorithm });
      const tampered = tamperCsrSignature(g.csrPem);
      expect(tampered).not.toBe(g.csrPem);
      expectCsrError(() => parseCsr(tampered), 'bad-signature', /^CSR signature does not verify$/);
    }
  });

  it('rejects a CSR whose signed content was altered', async () => {
    const g = await generateKeyAndCsr({ commonName: 'aaaa.example.com', dnsNames: [] });
    const der = Buffer.from(g.csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    const at = der.indexOf(Buffer.from('aaaa.example.com'));
    der[at] = 'b'.charCodeAt(0);
    const pem = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64')}\n-----END CERTIFICATE REQUEST-----\n`;
    expectCsrError(() => parseCsr(pem), 'bad-signature', /does not verify/);
  });

  it('rejects RSA keys under 2048 bits', async () => {
    const g = await generateKeyAndCsr({
      commonName: 'weak.example.com',
      dnsNames: [],
      keyAlgorithm: 'rsa',
      rsaBits: 1024,
    });
    expectCsrError(
      () => parseCsr(g.csrPem),
      'unsupported-key',
      /RSA key is 1024 bits; at least 2048 bits are required/,
    );
  });

  it('rejects unsupported curves', () => {
    const pem = opensslCsr(
      'k1',
      ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:secp256k1'],
      ['-subj', '/CN=k1.example.com'],
    );
    expectCsrError(() => parseCsr(pem), 'unsupported-key', /unsupported elliptic curve secp256k1/);
  });

  it('rejects SHA-1 signatures', () => {
    const pem = opensslCsr('sha1', ['-newkey', 'rsa:2048', '-sha1'], ['-subj', '/CN=sha1.example.com']);
    expectCsrError(() => parseCsr(pem), 'unsupported-signature-algorithm', /SHA-1/);
  });

  it.each([
    ['IP:192.0.2.1', 'IP address'],
    ['email:a@example.com', 'email address'],
    ['URI:https://example.com/', 'URI'],
  ])('rejects non-DNS SAN %s', (san, kind) => {
    const pem = opensslCsr(
      `san-${kind.replace(' ', '-')}`,
      ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'],
      ['-subj', '/CN=a.example.com', '-addext', `subjectAltName=DNS:a.example.com,${san}`],
    );
    expectCsrError(
      () => parseCsr(pem),
      'unsupported-name',
      new RegExp(`^only DNS subject alternative names are supported \\(found ${kind}\\)$`),
    );
  });

  it('accepts a PEM flattened onto one line with surrounding text', async () => {
    const g = await generateKeyAndCsr({ commonName: 'flat.example.com', dnsNames: [] });
    expect(parseCsr(`csr: ${g.csrPem.replaceAll('\n', ' ')}`).commonName).toBe('flat.example.com');
  });

  it('rejects oversized input before parsing', () => {
    expectCsrError(() => parseCsr('x'.repeat(70_000)), 'too-large', /larger than/);
  });
});
