import { execFileSync, spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadIssuingCa } from '@countersign/ca';
import { afterAll, describe, expect, it } from 'vitest';

/**
 * The offline CA step, run as the real binary: the root key lands only in
 * --out, the issuer's directory gets the intermediate, and a certificate the
 * issuer signs with that intermediate alone verifies with openssl under the root.
 */
const BIN = join(import.meta.dirname, '..', 'bin', 'countersign.mjs');
const work = mkdtempSync(join(tmpdir(), 'countersign-ca-cli-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const run = (args: string[]) =>
  spawnSync(process.execPath, [BIN, ...args], {
    env: { PATH: process.env.PATH },
    cwd: work,
    encoding: 'utf8',
    timeout: 60_000,
  });

async function signAndVerify(issuerDir: string, rootCert: string): Promise<string> {
  const ca = await loadIssuingCa({ dir: issuerDir });
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const leaf = ca.issue({
    commonName: 'svc.example.com',
    dnsNames: ['svc.example.com'],
    publicKeySpki: publicKey.export({ type: 'spki', format: 'der' }),
    validityDays: 7,
  });
  const leafFile = join(issuerDir, '..', `leaf-${Date.now()}.pem`);
  writeFileSync(leafFile, leaf.leafPem);
  return execFileSync(
    'openssl',
    ['verify', '-CAfile', rootCert, '-untrusted', join(issuerDir, 'intermediate.crt.pem'), leafFile],
    { encoding: 'utf8' },
  );
}

describe('countersign ca init / rotate-intermediate', () => {
  it('init: root key only in --out, the intermediate for the issuer, and instructions for each', async () => {
    const r = run(['ca', 'init', '--out', 'offline', '--name', 'Acme']);
    expect(r.status, r.stderr).toBe(0);
    const offline = join(work, 'offline');
    expect(readdirSync(offline).sort()).toEqual(['issuer', 'root.crt.pem', 'root.key.pem']);
    expect(readdirSync(join(offline, 'issuer')).sort()).toEqual([
      'intermediate.crt.pem',
      'intermediate.key.pem',
      'root.crt.pem',
    ]);
    expect(statSync(join(offline, 'root.key.pem')).mode & 0o777).toBe(0o600);
    expect(r.stdout).toMatch(/Keep offline[^\n]*\n\s+offline\/root\.key\.pem\n/);
    expect(r.stdout).toContain('infra/k8s/secrets/issuer-ca/');
    expect(r.stdout).toContain('COUNTERSIGN_CA_DIR');
    expect(r.stdout).toMatch(/root CA\s+CN=Acme Root CA [0-9a-f]{8}/);
    // The key itself is never printed.
    expect(r.stdout).not.toContain('PRIVATE KEY');

    const out = await signAndVerify(join(offline, 'issuer'), join(offline, 'root.crt.pem'));
    expect(out).toContain(': OK');
  });

  it('rotate-intermediate: a new intermediate from the same root, into an empty directory only', async () => {
    expect(run(['ca', 'init', '--out', 'rot', '--issuer-out', 'rot-issuer-1', '--json']).status).toBe(0);
    const r = run(['ca', 'rotate-intermediate', '--root-dir', 'rot', '--out', 'rot-issuer-2', '--json']);
    expect(r.status, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout) as { intermediate: { subject: string }; files: Record<string, string> };
    expect(j.files.intermediate_key).toBe(join(work, 'rot-issuer-2', 'intermediate.key.pem'));
    expect(readFileSync(join(work, 'rot-issuer-2', 'root.crt.pem'), 'utf8')).toBe(
      readFileSync(join(work, 'rot', 'root.crt.pem'), 'utf8'),
    );
    expect(readFileSync(join(work, 'rot-issuer-2', 'intermediate.crt.pem'), 'utf8')).not.toBe(
      readFileSync(join(work, 'rot-issuer-1', 'intermediate.crt.pem'), 'utf8'),
    );
    expect(await signAndVerify(join(work, 'rot-issuer-2'), join(work, 'rot', 'root.crt.pem'))).toContain(': OK');

    const again = run(['ca', 'rotate-intermediate', '--root-dir', 'rot', '--out', 'rot-issuer-2']);
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/already holds .*empty directory/);
  });

  it('refuses a second root over the first, and says what is missing', () => {
    expect(run(['ca', 'init', '--out', 'twice']).status).toBe(0);
    const again = run(['ca', 'init', '--out', 'twice']);
    expect(again.status).toBe(1);
    expect(again.stderr).toContain('already holds a root CA');
    const usage = run(['ca', 'init']);
    expect(usage.status).toBe(2);
    expect(usage.stderr).toContain('--out DIR is required');
    expect(run(['ca', 'rotate-intermediate', '--out', 'x']).status).toBe(2);
    expect(run(['--help']).stdout).toContain('ca rotate-intermediate');
  });
});
