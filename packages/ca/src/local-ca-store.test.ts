import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { LocalCa } from './index.ts';
import {
  CA_FILES,
  ensureDevCa,
  IssuingCaError,
  initOfflineCa,
  loadIssuingCa,
  loadOrCreateLocalCa,
  rotateIntermediate,
} from './index.ts';

/**
 * The root key is made offline and never read by the issuer: the issuer loads
 * only an intermediate, and refuses to start beside a root key, whatever the
 * file is called, or with a self-signed (root) issuing certificate.
 */
const work = mkdtempSync(join(tmpdir(), 'countersign-ca-store-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
let n = 0;
const fresh = (name = 'd') => join(work, `${name}-${++n}`);

/** A leaf the CA signs for a new P-256 key, written next to the other PEMs. */
function issueLeaf(ca: LocalCa, dir: string, cn = 'www.example.com'): string {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const issued = ca.issue({
    commonName: cn,
    dnsNames: [cn],
    publicKeySpki: publicKey.export({ type: 'spki', format: 'der' }),
    validityDays: 30,
  });
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `leaf-${++n}.pem`);
  writeFileSync(file, issued.leafPem);
  return file;
}

/** `openssl verify -CAfile root.pem -untrusted intermediate.pem leaf.pem`, the check a relying party makes. */
function opensslVerify(rootPem: string, intermediatePem: string, leafFile: string): string {
  const d = mkdtempSync(join(work, 'verify-'));
  writeFileSync(join(d, 'root.pem'), rootPem);
  writeFileSync(join(d, 'intermediate.pem'), intermediatePem);
  return execFileSync(
    'openssl',
    ['verify', '-x509_strict', '-CAfile', join(d, 'root.pem'), '-untrusted', join(d, 'intermediate.pem'), leafFile],
    { encoding: 'utf8', stdio: 'pipe' },
  );
}

async function refusal(p: Promise<unknown>): Promise<IssuingCaError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(IssuingCaError);
    return err as IssuingCaError;
  }
  throw new Error('the issuer accepted the CA');
}

describe('initOfflineCa (countersign ca init)', () => {
  it('writes the root key only to the offline directory; the issuer signs with the intermediate alone', async () => {
    const rootDir = fresh('offline');
    const r = await initOfflineCa({ rootDir, commonNamePrefix: 'Test' });
    expect(r.issuerDir).toBe(join(rootDir, 'issuer'));
    expect(readdirSync(rootDir).sort()).toEqual(['issuer', 'root.crt.pem', 'root.key.pem']);
    expect(readdirSync(r.issuerDir).sort()).toEqual(['intermediate.crt.pem', 'intermediate.key.pem', 'root.crt.pem']);
    expect(statSync(join(rootDir, 'root.key.pem')).mode & 0o777).toBe(0o600);
    expect(statSync(join(r.issuerDir, 'intermediate.key.pem')).mode & 0o777).toBe(0o600);
    expect(statSync(rootDir).mode & 0o777).toBe(0o700);
    const rootKey = readFileSync(join(rootDir, 'root.key.pem'), 'utf8');
    for (const f of readdirSync(r.issuerDir)) expect(readFileSync(join(r.issuerDir, f), 'utf8')).not.toContain(rootKey);

    const root = new X509Certificate(r.rootCertPem);
    const intermediate = new X509Certificate(r.intermediateCertPem);
    expect(root.subject).toMatch(/^CN=Test Root CA [0-9a-f]{8}$/);
    expect(intermediate.checkIssued(root) && intermediate.verify(root.publicKey)).toBe(true);
    expect(intermediate.ca).toBe(true);

    const ca = await loadIssuingCa({ dir: r.issuerDir });
    expect(ca.chainPems).toEqual([r.intermediateCertPem, r.rootCertPem]);
    const leaf = issueLeaf(ca, join(work, 'leaves'));
    expect(opensslVerify(r.rootCertPem, r.intermediateCertPem, leaf)).toContain(': OK');
    // A leaf is not signed by the root directly: verification without the intermediate fails.
    expect(() => opensslVerify(r.rootCertPem, r.rootCertPem, leaf)).toThrow();
  });

  it('refuses to make a second root over the first, to put the issuer material beside the root key, or over an intermediate', async () => {
    const rootDir = fresh('offline');
    await initOfflineCa({ rootDir });
    await expect(initOfflineCa({ rootDir, issuerDir: fresh('issuer') })).rejects.toThrow(/already holds a root CA/);
    await expect(initOfflineCa({ rootDir: fresh('offline'), issuerDir: rootDir })).rejects.toThrow(/already holds/);
    const same = fresh('offline');
    await expect(initOfflineCa({ rootDir: same, issuerDir: same })).rejects.toThrow(/must not be the offline root/);
  });
});

describe('loadIssuingCa (the issuer at start-up)', () => {
  it('refuses a directory holding root.key.pem, naming COUNTERSIGN_CA_DIR', async () => {
    const { issuerDir, rootDir } = await initOfflineCa({ rootDir: fresh('offline') });
    copyFileSync(join(rootDir, 'root.key.pem'), join(issuerDir, 'root.key.pem'));
    const err = await refusal(loadIssuingCa({ dir: issuerDir }));
    expect(err.variable).toBe('COUNTERSIGN_CA_DIR');
    expect(err.message).toMatch(/^COUNTERSIGN_CA_DIR points at a directory holding a root CA private key/);
  });

  it('finds the root key under any name, by its public key', async () => {
    const { issuerDir, rootDir } = await initOfflineCa({ rootDir: fresh('offline') });
    copyFileSync(join(rootDir, 'root.key.pem'), join(issuerDir, 'backup.txt'));
    const err = await refusal(loadIssuingCa({ dir: issuerDir }));
    expect(err.message).toContain(join(issuerDir, 'backup.txt'));
    expect(err.message).toMatch(/the private key of "CN=Countersign Local Root CA/);
  });

  it('refuses the old all-in-one directory that loadOrCreateLocalCa makes', async () => {
    const dir = fresh('all-in-one');
    await loadOrCreateLocalCa({ dir });
    expect((await refusal(loadIssuingCa({ dir }))).variable).toBe('COUNTERSIGN_CA_DIR');
  });

  it('names the file variable whose directory holds the root key', async () => {
    const { issuerDir, rootDir } = await initOfflineCa({ rootDir: fresh('offline') });
    const keys = fresh('keys');
    mkdirSync(keys);
    renameSync(join(issuerDir, 'intermediate.key.pem'), join(keys, 'tls.key'));
    const files = {
      dir: '/nonexistent',
      certFile: join(issuerDir, 'intermediate.crt.pem'),
      keyFile: join(keys, 'tls.key'),
      chainFile: join(issuerDir, 'root.crt.pem'),
    };
    await expect(loadIssuingCa(files)).resolves.toBeDefined();
    copyFileSync(join(rootDir, 'root.key.pem'), join(keys, 'ca.pem'));
    expect((await refusal(loadIssuingCa(files))).variable).toBe('COUNTERSIGN_CA_KEY_FILE');
  });

  it('refuses a self-signed root as the issuing CA, naming COUNTERSIGN_CA_CERT_FILE', async () => {
    const { rootDir } = await initOfflineCa({ rootDir: fresh('offline') });
    const elsewhere = fresh('root-as-issuer');
    mkdirSync(elsewhere);
    copyFileSync(join(rootDir, 'root.crt.pem'), join(elsewhere, 'tls.crt'));
    copyFileSync(join(rootDir, 'root.key.pem'), join(elsewhere, 'tls.key'));
    writeFileSync(join(elsewhere, 'chain.crt'), '');
    const err = await refusal(
      loadIssuingCa({
        dir: '/nonexistent',
        certFile: join(elsewhere, 'tls.crt'),
        keyFile: join(elsewhere, 'tls.key'),
        chainFile: join(elsewhere, 'chain.crt'),
      }),
    );
    expect(err.variable).toBe('COUNTERSIGN_CA_CERT_FILE');
    expect(err.message).toMatch(/self-signed root CA/);
  });

  it('never creates a CA: an empty or missing directory is refused and left as it was', async () => {
    const empty = fresh('empty');
    mkdirSync(empty);
    const err = await refusal(loadIssuingCa({ dir: empty }));
    expect(err.variable).toBe('COUNTERSIGN_CA_DIR');
    expect(err.message).toMatch(/holds no intermediate CA .*countersign ca init/);
    expect(readdirSync(empty)).toEqual([]);
    const missing = fresh('missing');
    await refusal(loadIssuingCa({ dir: missing }));
    expect(existsSync(missing)).toBe(false);
  });

  it('wants all three files when any is set, and names the missing or unreadable one', async () => {
    const { issuerDir } = await initOfflineCa({ rootDir: fresh('offline') });
    const cert = join(issuerDir, 'intermediate.crt.pem');
    expect((await refusal(loadIssuingCa({ dir: issuerDir, certFile: cert }))).variable).toBe('COUNTERSIGN_CA_KEY_FILE');
    const err = await refusal(
      loadIssuingCa({
        dir: issuerDir,
        certFile: cert,
        keyFile: join(issuerDir, 'intermediate.key.pem'),
        chainFile: join(issuerDir, 'nope.pem'),
      }),
    );
    expect(err.variable).toBe('COUNTERSIGN_CA_CHAIN_FILE');
    expect(err.message).toMatch(/cannot be read \(ENOENT\)/);
  });

  it('accepts unrelated keys beside the intermediate (a host TLS key is not a CA key)', async () => {
    const { issuerDir } = await initOfflineCa({ rootDir: fresh('offline') });
    const other = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
    writeFileSync(join(issuerDir, 'server.key'), other.export({ type: 'pkcs8', format: 'pem' }));
    await expect(loadIssuingCa({ dir: issuerDir })).resolves.toBeDefined();
  });
});

describe('rotateIntermediate (countersign ca rotate-intermediate)', () => {
  it('signs a new intermediate with the offline root; old and new leaves verify under the same root', async () => {
    const rootDir = fresh('offline');
    const first = await initOfflineCa({ rootDir, commonNamePrefix: 'Acme' });
    const oldLeaf = issueLeaf(await loadIssuingCa({ dir: first.issuerDir }), join(work, 'leaves'));

    const next = await rotateIntermediate({ rootDir, issuerDir: fresh('issuer-next') });
    expect(next.rootCertPem).toBe(first.rootCertPem);
    expect(next.intermediateCertPem).not.toBe(first.intermediateCertPem);
    const intermediate = new X509Certificate(next.intermediateCertPem);
    expect(intermediate.subject).toMatch(/^CN=Acme Intermediate CA [0-9a-f]{8}$/);
    expect(new Date(intermediate.validTo).getTime()).toBeLessThanOrEqual(
      new Date(new X509Certificate(next.rootCertPem).validTo).getTime(),
    );
    expect(readdirSync(next.issuerDir).sort()).toEqual([
      'intermediate.crt.pem',
      'intermediate.key.pem',
      'root.crt.pem',
    ]);
    expect(statSync(join(next.issuerDir, 'intermediate.key.pem')).mode & 0o777).toBe(0o600);

    const newLeaf = issueLeaf(await loadIssuingCa({ dir: next.issuerDir }), join(work, 'leaves'));
    expect(opensslVerify(next.rootCertPem, next.intermediateCertPem, newLeaf)).toContain(': OK');
    expect(opensslVerify(first.rootCertPem, first.intermediateCertPem, oldLeaf)).toContain(': OK');
  });

  it('never writes over an intermediate in service, nor into the root directory', async () => {
    const rootDir = fresh('offline');
    const { issuerDir } = await initOfflineCa({ rootDir });
    const before = readFileSync(join(issuerDir, CA_FILES.intermediateKey), 'utf8');
    await expect(rotateIntermediate({ rootDir, issuerDir })).rejects.toThrow(/already holds .*empty directory/);
    expect(readFileSync(join(issuerDir, CA_FILES.intermediateKey), 'utf8')).toBe(before);
    await expect(rotateIntermediate({ rootDir, issuerDir: rootDir })).rejects.toThrow(/must not be the offline root/);
    await expect(rotateIntermediate({ rootDir: fresh('no-root'), issuerDir: fresh('x') })).rejects.toThrow(
      /holds no usable root CA/,
    );
  });
});

describe('ensureDevCa (the local stack)', () => {
  it('runs the offline step once, into a directory apart from the issuer, and reuses it', async () => {
    const dirs = { offlineDir: fresh('ca-offline'), issuerDir: fresh('ca') };
    const first = await ensureDevCa(dirs);
    expect(readdirSync(dirs.offlineDir).sort()).toEqual(['root.crt.pem', 'root.key.pem']);
    expect(readdirSync(dirs.issuerDir).sort()).toEqual([
      'intermediate.crt.pem',
      'intermediate.key.pem',
      'root.crt.pem',
    ]);
    const again = await ensureDevCa(dirs);
    expect(again.intermediateCertPem).toBe(first.intermediateCertPem);
    await expect(loadIssuingCa({ dir: dirs.issuerDir })).resolves.toBeDefined();
  });

  it('moves the root key out of a data directory made before the split, keeping the same CA', async () => {
    const dirs = { offlineDir: fresh('ca-offline'), issuerDir: fresh('ca') };
    const old = await loadOrCreateLocalCa({ dir: dirs.issuerDir });
    await refusal(loadIssuingCa({ dir: dirs.issuerDir }));
    await ensureDevCa(dirs);
    expect(existsSync(join(dirs.issuerDir, 'root.key.pem'))).toBe(false);
    expect(readdirSync(dirs.offlineDir).sort()).toEqual(['root.crt.pem', 'root.key.pem']);
    const ca = await loadIssuingCa({ dir: dirs.issuerDir });
    expect(ca.chainPems).toEqual(old.chainPems);
  });

  it('gives the issuer a new intermediate from the kept root when its directory was lost', async () => {
    const dirs = { offlineDir: fresh('ca-offline'), issuerDir: fresh('ca') };
    const first = await ensureDevCa(dirs);
    rmSync(dirs.issuerDir, { recursive: true });
    const second = await ensureDevCa(dirs);
    expect(second.rootCertPem).toBe(first.rootCertPem);
    expect(second.intermediateCertPem).not.toBe(first.intermediateCertPem);
  });
});
