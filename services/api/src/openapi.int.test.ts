import { compileErrors, validate } from '@readme/openapi-parser';
import type { HTTPMethods } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiHarness, startApiHarness } from './test/api-harness.ts';

/**
 * The served OpenAPI document is the API's contract: it must validate as
 * OpenAPI 3.1, and every route Fastify serves must be in it (and nothing that
 * Fastify does not serve), except the operational and browser routes listed
 * below, which are deliberately hidden.
 */
let h: ApiHarness;
beforeAll(async () => {
  h = await startApiHarness();
});
afterAll(async () => h?.close());

/** Routes that are not part of the API contract: health, the spec itself, the docs UI, the console, the queue dashboard. */
const HIDDEN = [
  /^\/healthz$/,
  /^\/readyz$/,
  /^\/openapi\.json$/,
  /^\/docs(\/|$|\*)/,
  /^\/ui(\/|$|\*)/,
  /^\/admin\/queues(\/|$)/,
];

type Route = { method: string; url: string };

/**
 * Every route Fastify serves, read from its route tree (printRoutes with full
 * paths: each line is a segment appended to its parent's path). The parser is
 * strict: a line it does not understand fails the test rather than hiding a
 * route, and the test checks every route it reads with hasRoute(). Wildcard
 * routes (static files) print in a shorthand that hasRoute cannot replay;
 * they are only allowed under the hidden prefixes.
 */
function registeredRoutes(tree: string): Route[] {
  const routes: Route[] = [];
  const stack: string[] = [];
  for (const line of tree.split('\n')) {
    if (!line.trim()) continue;
    const m = /^([│ ├└─]*)(\S.*?) \(([A-Z, ]+)\)$/.exec(line) ?? /^([│ ├└─]*)(\S.*)$/.exec(line);
    if (!m) throw new Error(`cannot read route tree line "${line}"`);
    const depth = (m[1] ?? '').length / 4;
    if (!Number.isInteger(depth)) throw new Error(`unexpected indentation in "${line}"`);
    stack.length = depth;
    const parent = stack[depth - 1] ?? '';
    const segment = m[2] ?? '';
    const methods = (m[3] ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
    const url = parent + segment;
    stack[depth] = url;
    for (const method of methods) routes.push({ method, url });
  }
  return routes;
}

const toOpenApiPath = (url: string) => url.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, '{$1}');
const METHODS = ['get', 'put', 'post', 'delete', 'patch', 'options', 'head'] as const;

describe('/openapi.json', () => {
  it('is a valid OpenAPI 3.1 document', async () => {
    const doc = (await h.call(null, { method: 'GET', url: '/openapi.json' })).body;
    expect(doc.openapi).toBe('3.1.0');
    const result = await validate(structuredClone(doc));
    expect(result.valid, result.valid ? '' : compileErrors(result)).toBe(true);
  });

  it('the validator really rejects a broken document', async () => {
    const doc = (await h.call(null, { method: 'GET', url: '/openapi.json' })).body;
    const broken = structuredClone(doc);
    const first = Object.values(broken.paths as Record<string, Record<string, { responses?: unknown }>>)[0];
    const op = first && Object.values(first)[0];
    if (op) op.responses = 'not an object';
    expect((await validate(broken)).valid).toBe(false);
  });

  it('documents every route Fastify serves, and only those', async () => {
    const doc = (await h.call(null, { method: 'GET', url: '/openapi.json' })).body as {
      paths: Record<string, Record<string, unknown>>;
    };
    const exists = (r: Route) => h.app.hasRoute({ method: r.method as HTTPMethods, url: r.url });
    const routes = registeredRoutes(h.app.printRoutes({ commonPrefix: false }));
    // The parser reads the tree correctly: each route it found is one Fastify can find.
    for (const r of routes) {
      if (r.url.includes('*'))
        expect(
          HIDDEN.some((re) => re.test(r.url)),
          `wildcard ${r.url}`,
        ).toBe(true);
      else expect(exists(r), `${r.method} ${r.url}`).toBe(true);
    }
    const api = routes.filter((r) => r.method !== 'HEAD' && !HIDDEN.some((re) => re.test(r.url)));
    expect(api.length).toBeGreaterThan(15);
    const missing = api.filter((r) => !doc.paths[toOpenApiPath(r.url)]?.[r.method.toLowerCase()]);
    expect(missing, 'routes served but missing from /openapi.json').toEqual([]);

    const documented = Object.entries(doc.paths).flatMap(([path, item]) =>
      METHODS.filter((m) => m in item).map((m) => ({ method: m.toUpperCase(), url: path })),
    );
    const served = new Set(api.map((r) => `${r.method} ${toOpenApiPath(r.url)}`));
    const phantom = documented.filter((d) => !served.has(`${d.method} ${d.url}`));
    expect(phantom, 'documented but not served').toEqual([]);
  });

  it('every operation says who may call it, what it answers, and how it fails', async () => {
    const doc = (await h.call(null, { method: 'GET', url: '/openapi.json' })).body as {
      paths: Record<string, Record<string, { summary?: string; tags?: string[]; responses?: Record<string, unknown> }>>;
    };
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(item)) {
        const where = `${method.toUpperCase()} ${path}`;
        expect(op.summary, `${where} summary`).toBeTruthy();
        expect(op.tags?.length, `${where} tags`).toBeGreaterThan(0);
        const codes = Object.keys(op.responses ?? {});
        expect(
          codes.some((c) => c.startsWith('2')),
          `${where} documents its success answer`,
        ).toBe(true);
        expect(codes, `${where} documents 401`).toContain('401');
      }
    }
  });

  it('is browsable at /docs', async () => {
    const page = await h.call(null, { method: 'GET', url: '/docs/' });
    expect(page.status).toBe(200);
    expect(String(page.body)).toContain('swagger');
  });
});
