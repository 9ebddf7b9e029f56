import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Stack, type StackOptions, startStack } from '@countersign/stack';
import { inject } from 'vitest';

/**
 * The five services as real processes on the run's PostgreSQL and Redis, each
 * test file with its own database, queue prefix, CA and SMTP sink.
 */
export async function startE2eStack(
  opts: Partial<StackOptions> = {},
): Promise<Stack & { dataDir: string; cleanup(): Promise<void> }> {
  const infra = inject('infra');
  const dataDir = await mkdtemp(join(tmpdir(), 'countersign-e2e-'));
  const stack = await startStack({
    dataDir,
    superuserUrl: infra.superuserUrl,
    redisUrl: infra.redisUrl,
    ownerPassword: infra.ownerPassword,
    appPassword: infra.appPassword,
    database: `cs_e2e_${randomBytes(5).toString('hex')}`,
    queuePrefix: `{cs-e2e-${randomBytes(4).toString('hex')}}`,
    smtp: 'sink',
    seedDemo: true,
    ...opts,
  });
  return Object.assign(stack, {
    dataDir,
    cleanup: async () => {
      await stack.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  });
}

/** One API call with a bearer key; JSON bodies are parsed, anything else comes back as text. */
export async function apiCall(baseUrl: string, key: string, method: string, path: string, body?: unknown) {
  const res = await fetch(`${baseUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  const parsed: any = res.headers.get('content-type')?.includes('json') ? JSON.parse(text) : text;
  return { status: res.status, body: parsed };
}

/** Polls the PEM endpoint; returns the PEM and how long after `since` it appeared. */
export async function waitForPem(baseUrl: string, key: string, certId: string, since: number, timeoutMs = 10_000) {
  for (;;) {
    const r = await apiCall(baseUrl, key, 'GET', `/api/v1/certificates/${certId}/pem`);
    if (r.status === 200) return { pem: r.body as string, ms: Date.now() - since };
    if (Date.now() - since > timeoutMs) throw new Error(`no PEM after ${timeoutMs} ms: ${JSON.stringify(r.body)}`);
    await new Promise((res) => setTimeout(res, 25));
  }
}
