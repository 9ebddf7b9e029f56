import 'reflect-metadata';
import { execFile, execFileSync } from 'node:child_process';
import { createHash, generateKeyPairSync, X509Certificate as NodeX509, webcrypto } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as x509 from '@peculiar/x509';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKeyAndCsr } from './csr-generate.ts';
import type { IssuedCertificate, IssueRequest, LocalCa, ParsedCsr } from './index.ts';
import { IssueError, loadLocalCaFromFiles, loadOrCreateLocalCa, localConnector, parseCsr } from './index.ts';

x509.cryptoProvider.set(webcrypto);

const OPENSSL = '/usr/bin/openssl';
const DAY_MS = 86_400_000;
const packageDir = join(dirname(fileURLToPath(import.meta.url)), '..');
const work = mkdtempSync(join(tmpdir(), 'countersign-ca-'));
let counter = 0;
const freshDir = () => join(work, `ca-${++counter}`);
afterAll(() => rmSync(work, { recursive: true, force: true }));

function openssl(args: string[]): string {
  return execFileSync(OPENSSL, args, { encoding: 'utf8', stdio: 'pipe' });
}

/** Writes root/intermediate/leaf PEMs and runs `openssl verify`; returns its stdout. */
function opensslVerify(ca: LocalCa, leaf: IssuedCertificate, extra: string[] = []): string {
  const d = mkdtempSync(join(work, 'verify-'));
  writeFileSync(join(d, 'root.pem'), ca.rootPem);
  writeFileSync(join(d, 'intermediate.pem'), ca.chainPems[0] ?? '');
  writeFileSync(join(d, 'leaf.pem'), leaf.leafPem);
  return openssl([
    'verify',
    '-x509_strict',
    ...extra,
    '-CAfile',
    join(d, 'root.pem'),
    '-untrusted',
    join(d, 'intermediate.pem'),
    join(d, 'leaf.pem'),
  ]);
}

function request(csr: ParsedCsr, overrides: Partial<IssueRequest> = {}): IssueRequest {
  return {
    commonName: csr.commonName ?? '',
    dnsNames: csr.dnsNames,
    publicKeySpki: csr.publicKeySpki,
    validityDays: 90,
    ...overrides,
  };
}

describe('loadOrCreateLocalCa', () => {
  it('creates root and intermediate with the right files, modes and extensions', async () => {
    const dir = freshDir();
    const ca = await loadOrCreateLocalCa({ dir, commonNamePrefix: 'Test', now: new Date('2030-06-01T00:00:00Z') });
    expect(readdirSync(dir).sort()).toEqual([
      'intermediate.crt.pem',
      'intermediate.key.pem',
      'root.crt.pem',
      'root.key.pem',
    ]);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(join(dir, 'root.key.pem')).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'intermediate.key.pem')).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dir, 'root.key.pem'), 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect(readFileSync(join(dir, 'root.crt.pem'), 'utf8')).toBe(ca.rootPem);

    const root = new x509.X509Certificate(ca.rootPem);
    const intermediate = new x509.X509Certificate(ca.chainPems[0] ?? '');
    expect(ca.chainPems).toHaveLength(2);
    expect(ca.chainPems[1]).toBe(ca.rootPem);

    expect(root.subject).toMatch(/^CN=Test Root CA [0-9a-f]{8}$/);
    expect(root.issuer).toBe(root.subject);
    expect(await root.verify({ signatureOnly: true })).toBe(true);
    expect(root.notBefore.toISOString()).toBe('2030-05-31T23:00:00.000Z');
    expect(root.notAfter.toISOString()).toBe('2040-05-31T23:00:00.000Z');
    const rootBc = root.getExtension(x509.BasicConstraintsExtension);
    expect(rootBc?.ca).toBe(true);
    expect(rootBc?.critical).toBe(true);
    const rootKu = root.getExtension(x509.KeyUsagesExtension);
    expect(rootKu?.usages).toBe(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
    const rootSki = root.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
    expect(rootSki).toMatch(/^[0-9a-f]{40}$/);

    expect(intermediate.subject).toMatch(/^CN=Test Intermediate CA [0-9a-f]{8}$/);
    expect(intermediate.issuer).toBe(root.subject);
    expect(await intermediate.verify({ publicKey: root.publicKey, signatureOnly: true })).toBe(true);
    expect(intermediate.notAfter.toISOString()).toBe('2035-05-31T23:00:00.000Z');
    const intBc = intermediate.getExtension(x509.BasicConstraintsExtension);
    expect(intBc).toMatchObject({ ca: true, pathLength: 0, critical: true });
    expect(intermediate.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId).toBe(rootSki);
    expect(intermediate.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId).toMatch(/^[0-9a-f]{40}$/);
    expect(intermediate.publicKey.algorithm).toMatchObject({ name: 'ECDSA', namedCurve: 'P-256' });
  });

  it('loads the same CA on a later start', async () => {
    const dir = freshDir();
    const first = await loadOrCreateLocalCa({ dir });
    const second = await loadOrCreateLocalCa({ dir });
    expect(second.rootPem).toBe(first.rootPem);
    expect(second.chainPems).toEqual(first.chainPems);
  });

  it('converges when several calls race on an empty directory', async () => {
    const dir = freshDir();
    const cas = await Promise.all(Array.from({ length: 6 }, () => loadOrCreateLocalCa({ dir })));
    for (const ca of cas) expect(ca.chainPems).toEqual(cas[0]?.chainPems);
    expect(readFileSync(join(dir, 'root.crt.pem'), 'utf8')).toBe(cas[0]?.rootPem);
    expect(readdirSync(dir).filter((f) => f.startsWith('.'))).toEqual([]);
  });

  it('converges when separate processes race on an empty directory', async () => {
    const dir = freshDir();
    const startAt = String(Date.now() + 1500);
    const run = promisify(execFile);
    const outputs = await Promise.all(
      Array.from({ length: 3 }, () =>
        run(process.execPath, ['--import', 'tsx', join(packageDir, 'src/create-ca-child.fixture.ts'), dir, startAt], {
          cwd: packageDir,
        }),
      ),
    );
    const results = outputs.map((o) => JSON.parse(o.stdout) as { rootPem: string; chainPems: string[] });
    for (const r of results) expect(r.chainPems).toEqual(results[0]?.chainPems);
    expect(readFileSync(join(dir, 'intermediate.crt.pem'), 'utf8')).toBe(results[0]?.chainPems[0]);
  }, 30_000);

  it('breaks a stale lock left by a crashed creator', async () => {
    const dir = freshDir();
    mkdirSync(dir, { recursive: true });
    const lock = join(dir, '.create.lock');
    writeFileSync(lock, '12345 crashed\n');
    const old = new Date(Date.now() - 120_000);
    utimesSync(lock, old, old);
    const ca = await loadOrCreateLocalCa({ dir });
    expect(ca.rootPem).toBe(readFileSync(join(dir, 'root.crt.pem'), 'utf8'));
    expect(existsSync(lock)).toBe(false);
  });

  it('refuses to overwrite a half-written directory', async () => {
    const dir = freshDir();
    await loadOrCreateLocalCa({ dir });
    rmSync(join(dir, 'intermediate.crt.pem'));
    await expect(loadOrCreateLocalCa({ dir })).rejects.toThrow(/incomplete .*refusing to overwrite/);
  });
});

describe('LocalCa.issue', () => {
  let ca: LocalCa;
  let dir: string;
  let csr: ParsedCsr;

  beforeAll(async () => {
    dir = freshDir();
    ca = await loadOrCreateLocalCa({ dir });
    csr = parseCsr(
      (await generateKeyAndCsr({ commonName: 'www.example.com', dnsNames: ['www.example.com', 'api.example.com'] }))
        .csrPem,
    );
  });

  it('issues a leaf that @peculiar/x509 parses with the expected contents', async () => {
    const before = Date.now();
    const issued = ca.issue(request(csr));
    const leaf = new x509.X509Certificate(issued.leafPem);
    const intermediate = new x509.X509Certificate(ca.chainPems[0] ?? '');

    expect(leaf.subject).toBe('CN=www.example.com');
    expect(leaf.issuer).toBe(intermediate.subject);
    expect(leaf.serialNumber.toLowerCase()).toBe(issued.serialHex);
    expect(issued.serialHex).toMatch(/^[0-7][0-9a-f]{31}$/);
    expect(issued.serialHex.startsWith('00')).toBe(false);

    expect(leaf.notBefore.getTime()).toBe(issued.notBefore.getTime());
    expect(leaf.notAfter.getTime()).toBe(issued.notAfter.getTime());
    expect(issued.notBefore.getTime() % 1000).toBe(0);
    expect(issued.notBefore.getTime()).toBeGreaterThanOrEqual(Math.floor((before - 60_000) / 1000) * 1000);
    expect(issued.notBefore.getTime()).toBeLessThanOrEqual(Date.now() - 59_000);
    expect(issued.notAfter.getTime() - issued.notBefore.getTime()).toBe(90 * DAY_MS);

    const san = leaf.getExtension(x509.SubjectAlternativeNameExtension);
    expect(san?.names.toJSON()).toEqual([
      { type: 'dns', value: 'www.example.com' },
      { type: 'dns', value: 'api.example.com' },
    ]);
    expect(leaf.getExtension(x509.ExtendedKeyUsageExtension)?.usages).toEqual([x509.ExtendedKeyUsage.serverAuth]);
    const bc = leaf.getExtension(x509.BasicConstraintsExtension);
    expect(bc?.ca).toBe(false);
    expect(bc?.critical).toBe(true);
    const ku = leaf.getExtension(x509.KeyUsagesExtension);
    expect(ku?.usages).toBe(x509.KeyUsageFlags.digitalSignature);
    expect(ku?.critical).toBe(true);
    expect(leaf.getExtension(x509.AuthorityKeyIdentifierExtension)?.keyId).toBe(
      intermediate.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId,
    );
    const ski = leaf.getExtension(x509.SubjectKeyIdentifierExtension)?.keyId;
    expect(ski).toBe(Buffer.from(await leaf.publicKey.getKeyIdentifier('SHA-1', webcrypto)).toString('hex'));

    expect(Buffer.from(leaf.publicKey.rawData).equals(csr.publicKeySpki)).toBe(true);
    expect(leaf.signatureAlgorithm).toMatchObject({ name: 'ECDSA', hash: { name: 'SHA-256' } });
    expect(await leaf.verify({ publicKey: intermediate.publicKey, signatureOnly: true })).toBe(true);
    expect(await leaf.verify({ publicKey: new x509.X509Certificate(ca.rootPem).publicKey, signatureOnly: true })).toBe(
      false,
    );

    expect(Buffer.from(leaf.rawData).equals(issued.leafDer)).toBe(true);
    expect(issued.fingerprintSha256).toBe(createHash('sha256').update(issued.leafDer).digest('hex'));
    expect(issued.chainPem).toBe(ca.chainPems.join(''));
    expect(issued.chainPem).not.toContain(issued.leafPem.split('\n')[1]);
  });

  it('passes openssl verify (strict, TLS server purpose, hostname)', () => {
    const issued = ca.issue(request(csr));
    const out = opensslVerify(ca, issued, ['-purpose', 'sslserver', '-verify_hostname', 'api.example.com']);
    expect(out.trim()).toMatch(/leaf\.pem: OK$/);
  });

  it('is readable by openssl x509 -text', () => {
    const issued = ca.issue(request(csr));
    const d = mkdtempSync(join(work, 'text-'));
    writeFileSync(join(d, 'leaf.pem'), issued.leafPem);
    const text = openssl(['x509', '-noout', '-text', '-in', join(d, 'leaf.pem')]);
    expect(text).toContain('Version: 3 (0x2)');
    expect(text).toContain('Subject: CN = www.example.com');
    expect(text).toMatch(/Basic Constraints: critical\s+CA:FALSE/);
    expect(text).toMatch(/Key Usage: critical\s+Digital Signature\n/);
    expect(text).toMatch(/Extended Key Usage:\s+TLS Web Server Authentication/);
    expect(text).toContain('DNS:www.example.com, DNS:api.example.com');
    expect(text).toContain('Signature Algorithm: ecdsa-with-SHA256');
    // Node's parser (OpenSSL underneath) agrees on serial and fingerprint.
    const node = new NodeX509(issued.leafDer);
    expect(node.serialNumber.toLowerCase()).toBe(issued.serialHex);
    expect(node.fingerprint256.replaceAll(':', '').toLowerCase()).toBe(issued.fingerprintSha256);
  });

  it('gives 1,000 leaves unique serials', () => {
    const serials = new Set<string>();
    for (let i = 0; i < 1000; i++) serials.add(ca.issue(request(csr)).serialHex);
    expect(serials.size).toBe(1000);
  });

  it('issues a verifying leaf for an RSA key, with keyEncipherment', async () => {
    const rsa = parseCsr(
      (await generateKeyAndCsr({ commonName: 'rsa.example.com', dnsNames: [], keyAlgorithm: 'rsa' })).csrPem,
    );
    const issued = ca.issue(request(rsa));
    const leaf = new x509.X509Certificate(issued.leafPem);
    expect(leaf.getExtension(x509.KeyUsagesExtension)?.usages).toBe(
      x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
    );
    expect(leaf.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON()).toEqual([
      { type: 'dns', value: 'rsa.example.com' },
    ]);
    expect(Buffer.from(leaf.publicKey.rawData).equals(rsa.publicKeySpki)).toBe(true);
    expect(opensslVerify(ca, issued, ['-purpose', 'sslserver']).trim()).toMatch(/OK$/);
  });

  it('adds the CN to the SANs when missing, normalises and de-duplicates names', () => {
    const issued = ca.issue(
      request(csr, {
        commonName: 'Main.Example.com',
        dnsNames: ['b.example.com', 'B.EXAMPLE.COM.', 'main.example.com'],
      }),
    );
    const leaf = new x509.X509Certificate(issued.leafPem);
    expect(leaf.subject).toBe('CN=main.example.com');
    expect(
      leaf
        .getExtension(x509.SubjectAlternativeNameExtension)
        ?.names.toJSON()
        .map((n) => n.value),
    ).toEqual(['main.example.com', 'b.example.com']);
  });

  it('issues wildcard names', () => {
    const issued = ca.issue(request(csr, { commonName: '*.example.com', dnsNames: [] }));
    expect(opensslVerify(ca, issued, ['-verify_hostname', 'foo.example.com']).trim()).toMatch(/OK$/);
  });

  it('honours an explicit notBefore and encodes 2050+ dates as GeneralizedTime', async () => {
    const future = await loadOrCreateLocalCa({ dir: freshDir(), now: new Date('2047-01-01T00:00:00Z') });
    const notBefore = new Date('2049-12-01T12:00:00.750Z');
    const issued = future.issue(request(csr, { notBefore, validityDays: 60 }));
    expect(issued.notBefore.toISOString()).toBe('2049-12-01T12:00:00.000Z');
    expect(issued.notAfter.toISOString()).toBe('2050-01-30T12:00:00.000Z');
    const leaf = new x509.X509Certificate(issued.leafPem);
    expect(leaf.notAfter.toISOString()).toBe('2050-01-30T12:00:00.000Z');
    // UTCTime 491201120000Z, then GeneralizedTime 20500130120000Z.
    expect(issued.leafDer.includes(Buffer.from('\x17\x0d491201120000Z', 'latin1'))).toBe(true);
    expect(issued.leafDer.includes(Buffer.from('\x18\x0f20500130120000Z', 'latin1'))).toBe(true);
    const atTime = String(Date.parse('2050-01-15T00:00:00Z') / 1000);
    expect(opensslVerify(future, issued, ['-attime', atTime]).trim()).toMatch(/OK$/);
  });

  it('never issues past the issuing CA expiry', async () => {
    // Intermediate created ~5 years minus 10 days ago, so it expires in ~10 days.
    const old = await loadOrCreateLocalCa({ dir: freshDir(), now: new Date(Date.now() - (5 * 365 - 10) * DAY_MS) });
    const intermediate = new x509.X509Certificate(old.chainPems[0] ?? '');
    const issued = old.issue(request(csr, { validityDays: 90 }));
    expect(issued.notAfter.getTime()).toBe(intermediate.notAfter.getTime());
  });

  it('rejects bad requests with IssueError', () => {
    expect(() => ca.issue(request(csr, { commonName: 'bad_name.example.com' }))).toThrow(IssueError);
    expect(() => ca.issue(request(csr, { dnsNames: ['ok.example.com', '10.0.0.1'] }))).toThrow(/not a valid DNS name/);
    expect(() => ca.issue(request(csr, { commonName: `${'a'.repeat(60)}.example.com` }))).toThrow(/longer than 64/);
    expect(() => ca.issue(request(csr, { validityDays: 0 }))).toThrow(/validityDays/);
    expect(() => ca.issue(request(csr, { validityDays: Number.NaN }))).toThrow(/validityDays/);
    expect(() => ca.issue(request(csr, { publicKeySpki: Buffer.from('3000', 'hex') }))).toThrow(/SubjectPublicKeyInfo/);
    const k1 = generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).publicKey.export({ type: 'spki', format: 'der' });
    expect(() => ca.issue(request(csr, { publicKeySpki: k1 }))).toThrow(/unsupported elliptic curve/);
  });
});

describe('loadLocalCaFromFiles', () => {
  it('loads an operator-supplied intermediate and issues verifying leaves', async () => {
    const dir = freshDir();
    const created = await loadOrCreateLocalCa({ dir });
    const read = (f: string) => readFileSync(join(dir, f), 'utf8');
    const ca = loadLocalCaFromFiles({
      certPem: read('intermediate.crt.pem'),
      keyPem: read('intermediate.key.pem'),
      chainPems: [read('root.crt.pem')],
    });
    expect(ca.rootPem).toBe(created.rootPem);
    expect(ca.chainPems).toEqual(created.chainPems);
    const csr = parseCsr((await generateKeyAndCsr({ commonName: 'op.example.com', dnsNames: [] })).csrPem);
    expect(opensslVerify(ca, ca.issue(request(csr))).trim()).toMatch(/OK$/);
  });

  it('rejects a key that does not match, a chain without a root, and a non-CA certificate', async () => {
    const a = freshDir();
    const b = freshDir();
    await loadOrCreateLocalCa({ dir: a });
    await loadOrCreateLocalCa({ dir: b });
    const read = (d: string, f: string) => readFileSync(join(d, f), 'utf8');
    expect(() =>
      loadLocalCaFromFiles({
        certPem: read(a, 'intermediate.crt.pem'),
        keyPem: read(b, 'intermediate.key.pem'),
        chainPems: [read(a, 'root.crt.pem')],
      }),
    ).toThrow(/does not match/);
    expect(() =>
      loadLocalCaFromFiles({
        certPem: read(a, 'intermediate.crt.pem'),
        keyPem: read(a, 'intermediate.key.pem'),
        chainPems: [],
      }),
    ).toThrow(/self-signed root/);
    expect(() =>
      loadLocalCaFromFiles({
        certPem: read(a, 'intermediate.crt.pem'),
        keyPem: read(a, 'intermediate.key.pem'),
        chainPems: [read(b, 'root.crt.pem')],
      }),
    ).toThrow(/chain broken/);

    const ca = loadLocalCaFromFiles({
      certPem: read(a, 'intermediate.crt.pem'),
      keyPem: read(a, 'intermediate.key.pem'),
      chainPems: [read(a, 'root.crt.pem')],
    });
    const g = await generateKeyAndCsr({ commonName: 'leaf.example.com', dnsNames: [] });
    const leaf = ca.issue(request(parseCsr(g.csrPem)));
    expect(() =>
      loadLocalCaFromFiles({ certPem: leaf.leafPem, keyPem: g.privateKeyPem, chainPems: [leaf.chainPem] }),
    ).toThrow(/is not a CA/);
  });
});

describe('localConnector', () => {
  it('wraps a LocalCa as the "local" IssuerConnector', async () => {
    const ca = await loadOrCreateLocalCa({ dir: freshDir() });
    const connector = localConnector(ca);
    expect(connector.id).toBe('local');
    const csr = parseCsr((await generateKeyAndCsr({ commonName: 'c.example.com', dnsNames: [] })).csrPem);
    const issued = await connector.issue(request(csr));
    expect(new x509.X509Certificate(issued.leafPem).subject).toBe('CN=c.example.com');
    await expect(connector.issue(request(csr, { validityDays: -1 }))).rejects.toThrow(IssueError);
  });
});
