import http from 'node:http';

/**
 * The benchmark's HTTP client: node:http over keep-alive sockets. fetch
 * (undici) cost the load generator ~1.5-2 ms of CPU per request, taken from
 * the same two cores as the services it measures.
 */
export interface JsonResponse {
  readonly status: number;
  readonly json: Record<string, unknown>;
}

export function jsonClient(baseUrl: string) {
  const base = new URL(baseUrl);
  // As many sockets as requests in flight (as fetch does): a client-side queue would hide the server's.
  const agent = new http.Agent({ keepAlive: true, maxFreeSockets: 1024 });
  const request = (key: string, method: string, path: string, body?: unknown): Promise<JsonResponse> =>
    new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const req = http.request(
        {
          host: base.hostname,
          port: base.port,
          method,
          path,
          agent,
          headers: {
            authorization: `Bearer ${key}`,
            ...(payload === undefined
              ? {}
              : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            try {
              const text = Buffer.concat(chunks).toString('utf8');
              resolve({ status: res.statusCode ?? 0, json: text === '' ? {} : JSON.parse(text) });
            } catch (err) {
              reject(err);
            }
          });
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  return { request, close: () => agent.destroy() };
}
