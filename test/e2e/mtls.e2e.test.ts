import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestCa, issueTestCertificate, type TestCertificate } from '@countersign/ca/testing';
import type { Stack } from '@countersign/stack';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startE2eStack } from './e2e-stack.ts';

/**
 * The api process started with COUNTERSIGN_TLS_* serves the mTLS listener
 * beside plain HTTP: a client certificate registered through the API
 * authenticates as its service principal; no certificate is refused.
 */
const ca = createTestCa('Countersign E2E Client CA');
const server = issueTestCertificate(ca, { commonName: 'localhost', usage: 'server', ipAddresses: ['127.0.0.1'] });
const client = issueTestCertificate(ca, { commonName: 'deployer', usage: 'client' });

let stack: Stack & { dataDir: string; cleanup(): Promise<void> };
let tlsPort: number;
let tlsDir: string;

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

function mtls(cert: TestCertificate | null, path: string): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: tlsPort,
        path,
        ca: ca.certPem,
        ...(cert ? { cert: cert.certPem, key: cert.keyPem } : {}),
        agent: false,
        timeout: 5_000,
      },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => {
          text += c.toString('utf8');
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

async function api(key: string, method: string, path: string, body?: unknown) {
  const res = await fetch(`${stack.apiUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify(body ?? {}),
  });
  return { status: res.status, body: (await res.json()) as { id: string } };
}

beforeAll(async () => {
  tlsPort = await freePort();
  tlsDir = await mkdtemp(join(tmpdir(), 'countersign-e2e-tls-'));
  const files = {
    cert: join(tlsDir, 'server.pem'),
    key: join(tlsDir, 'server.key'),
    ca: join(tlsDir, 'client-ca.pem'),
  };
  await writeFile(files.cert, server.certPem);
  await writeFile(files.key, server.keyPem, { mode: 0o600 });
  await writeFile(files.ca, ca.certPem);
  stack = await startE2eStack({
    env: {
      COUNTERSIGN_TLS_HOST: '127.0.0.1',
      COUNTERSIGN_TLS_PORT: String(tlsPort),
      COUNTERSIGN_TLS_CERT_FILE: files.cert,
      COUNTERSIGN_TLS_KEY_FILE: files.key,
      COUNTERSIGN_TLS_CLIENT_CA_FILE: files.ca,
    },
  });
});
afterAll(async () => {
  await stack?.cleanup();
  if (tlsDir) await rm(tlsDir, { recursive: true, force: true });
});

describe('api with COUNTERSIGN_TLS_*', () => {
  it('authenticates a registered client certificate as its principal and refuses a client without one', async () => {
    const admin = stack.demo?.principals.admin.key ?? '';
    const p = await api(admin, 'POST', '/api/v1/principals', { name: 'deployer', role: 'operator', kind: 'service' });
    expect(p.status).toBe(201);
    const bound = await api(admin, 'POST', `/api/v1/principals/${p.body.id}/client-certificates`, {
      certificate: client.certPem,
    });
    expect(bound.status).toBe(201);

    const me = await mtls(client, '/api/v1/me');
    expect(me.status).toBe(200);
    expect(me.body.id).toBe(p.body.id);
    await expect(mtls(null, '/api/v1/me')).rejects.toThrow(/socket hang up|ECONNRESET|EPIPE/);
  });
});
