import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';

export type ReadinessCheck = () => Promise<{ ok: boolean; detail?: string }>;

export interface OpsServer {
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Each service's own operations port: /metrics (Prometheus), /healthz (the
 * process is alive) and /readyz (every named dependency answered).
 */
export async function startOpsServer(opts: {
  host: string;
  port: number;
  registry: Registry;
  checks: Record<string, ReadinessCheck>;
}): Promise<OpsServer> {
  const server: Server = createServer((req, res) => {
    void (async () => {
      const path = (req.url ?? '/').split('?')[0];
      if (path === '/metrics') {
        res.writeHead(200, { 'content-type': opts.registry.contentType });
        res.end(await opts.registry.metrics());
      } else if (path === '/healthz') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"status":"ok"}');
      } else if (path === '/readyz') {
        const result = await readiness(opts.checks);
        res.writeHead(result.ready ? 200 : 503, { 'content-type': 'application/json' });
        res.end(JSON.stringify(result));
      } else {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end('{"status":"not found"}');
      }
    })().catch(() => {
      res.writeHead(500);
      res.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

export async function readiness(checks: Record<string, ReadinessCheck>) {
  const results: Record<string, { ok: boolean; detail?: string }> = {};
  await Promise.all(
    Object.entries(checks).map(async ([name, check]) => {
      try {
        results[name] = await withTimeout(check(), 2_000);
      } catch (err) {
        results[name] = { ok: false, detail: err instanceof Error ? err.message : String(err) };
      }
    }),
  );
  return { ready: Object.values(results).every((r) => r.ok), checks: results };
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}
