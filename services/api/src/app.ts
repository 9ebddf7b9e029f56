import type { Db } from '@countersign/db';
import { DomainError } from '@countersign/domain';
import type { Logger } from '@countersign/observability';
import type { WorkflowSettings } from '@countersign/workflow';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { Ajv } from 'ajv';
import addFormatsModule from 'ajv-formats';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyError,
  type FastifyInstance,
  LogController,
  type RouteOptions,
} from 'fastify';
import { authenticator } from './auth.ts';
import { problemOf, sendProblem, toProblem } from './problem.ts';
import {
  type AbuseLimits,
  DEFAULT_ABUSE_LIMITS,
  memoryRateLimiter,
  openRequestsHook,
  type RateLimiter,
  rateLimitHook,
} from './rate-limit.ts';
import { adminRoutes } from './routes/admin.routes.ts';
import { approvalRoutes, type DecisionObserver } from './routes/approvals.routes.ts';
import { type AuditDeps, auditRoutes } from './routes/audit.routes.ts';
import { certificateRoutes } from './routes/certificates.routes.ts';
import { clientCertificateRoutes } from './routes/client-certificates.routes.ts';
import { ConfigRequestSchema, configurationRoutes } from './routes/configuration.routes.ts';
import { consoleRoutes } from './routes/console.routes.ts';
import { diffRoutes } from './routes/diff.routes.ts';
import { intakeKeyRoutes } from './routes/intake-keys.routes.ts';
import { type QueueDashboardDeps, queueDashboardRoutes } from './routes/queues-dashboard.routes.ts';
import { ProblemSchema } from './schemas.ts';

/**
 * Builds the HTTP API from injected dependencies; main.ts owns the clients.
 * Tests build it the same way against real PostgreSQL.
 */
export interface ApiDeps {
  readonly db: Db;
  readonly log: Logger;
  readonly settings: WorkflowSettings;
  readonly onDecision: DecisionObserver;
  /** Audit verification pool and checkpoint signing key; without it the /api/v1/audit routes are not served. */
  readonly audit?: AuditDeps;
  /** Readiness of the api's dependencies (database, Redis, audit chain). */
  readonly readiness: () => Promise<{ ready: boolean; checks: Record<string, unknown> }>;
  readonly observeRequest?: (method: string, route: string, status: number, seconds: number) => void;
  readonly bodyLimit?: number;
  /** Per-principal counters; main.ts passes the Redis one so replicas share budgets. Default: this process only. */
  readonly rateLimiter?: RateLimiter;
  readonly limits?: AbuseLimits;
  /** Sees every route as it is registered (the authorization matrix builds its table from this). */
  readonly onRoute?: (route: RouteOptions) => void;
  /** Mounts the BullMQ dashboard at /admin/queues (admins only) when given. */
  readonly queueDashboard?: QueueDashboardDeps;
}

// ajv-formats is CommonJS; its default export arrives wrapped under NodeNext.
const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default;

function makeAjv(coerce: boolean): Ajv {
  // Bodies are validated strictly (no coercion, unknown properties rejected,
  // never silently removed); query strings coerce "50" to 50.
  const ajv = new Ajv({
    coerceTypes: coerce ? 'array' : false,
    useDefaults: true,
    removeAdditional: false,
    allErrors: false,
    strict: false,
  });
  addFormats(ajv);
  // RFC 3339 as ajv-formats checks it, and also an instant that Date and PostgreSQL can hold: ajv accepts
  // a leap second (23:59:60) that Date cannot parse, and years PostgreSQL cannot store.
  const rfc3339 = ajv.formats['date-time'];
  const syntax = (s: string): boolean => {
    const v = typeof rfc3339 === 'object' && 'validate' in rfc3339 ? rfc3339.validate : rfc3339;
    if (v instanceof RegExp) return v.test(s);
    return typeof v === 'function' ? (v as (x: string) => unknown)(s) === true : true;
  };
  ajv.addFormat('date-time', {
    type: 'string',
    validate: (s: string) => {
      if (!syntax(s)) return false;
      const t = Date.parse(s);
      if (!Number.isFinite(t)) return false;
      const year = new Date(t).getUTCFullYear();
      return year >= 1 && year <= 9999;
    },
  });
  return ajv;
}

// PostgreSQL text cannot hold U+0000, and a lone UTF-16 surrogate would be stored as U+FFFD.
// biome-ignore lint/suspicious/noControlCharactersInRegex: U+0000 is exactly what this refuses
const NOT_STORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** The first string in a parsed body, query or path that PostgreSQL could not store faithfully, by its path. */
function unstorableText(root: unknown, base: string): string | null {
  const stack: [unknown, string][] = [[root, base]];
  while (stack.length > 0) {
    const [v, path] = stack.pop() as [unknown, string];
    if (typeof v === 'string') {
      if (NOT_STORABLE.test(v)) return path;
    } else if (Array.isArray(v)) {
      v.forEach((item, i) => {
        stack.push([item, `${path}/${i}`]);
      });
    } else if (v !== null && typeof v === 'object') {
      for (const [k, item] of Object.entries(v)) {
        if (NOT_STORABLE.test(k)) return `${path}/${k}`;
        stack.push([item, `${path}/${k}`]);
      }
    }
  }
  return null;
}

export async function buildApi(deps: ApiDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.log as FastifyBaseLogger,
    bodyLimit: deps.bodyLimit ?? 256 * 1024,
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && /^[\w.-]{1,100}$/.test(given) ? given : crypto.randomUUID();
    },
    requestIdHeader: false,
    // Request logging is ours (ids and redaction); Fastify's per-request lines are off.
    logController: new LogController({ disableRequestLogging: true }),
    routerOptions: { ignoreTrailingSlash: true },
    // A URL the router cannot decode (bad percent-encoding) gets a problem like every other refusal.
    frameworkErrors: (err, req, reply) => {
      reply.header('x-request-id', String(req.id));
      sendProblem(reply, problemOf('validation_failed', `malformed request: ${err.message}`, req));
    },
  });
  // First, so it also sees the routes that plugins (docs, console) register.
  if (deps.onRoute) app.addHook('onRoute', deps.onRoute);

  const strictAjv = makeAjv(false);
  const coercingAjv = makeAjv(true);
  strictAjv.addSchema(ProblemSchema);
  coercingAjv.addSchema(ProblemSchema);
  app.setValidatorCompiler(({ schema, httpPart }) =>
    httpPart === 'body' ? strictAjv.compile(schema) : coercingAjv.compile(schema),
  );
  app.addSchema(ProblemSchema);
  app.addSchema(ConfigRequestSchema);

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Countersign API',
        version: '1.0.0',
        description:
          'Approval gate for X.509 certificate issuance. Errors are application/problem+json with a stable `code`.',
      },
      components: {
        securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'Countersign API key' } },
      },
      security: [{ apiKey: [] }],
    },
    refResolver: {
      buildLocalReference: (json, _base, _frag, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`),
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  app.decorateRequest('principal', null);
  app.addHook('onRequest', async (req, reply) => {
    reply.header('x-request-id', String(req.id));
  });
  // Every /api route needs a caller; refusing before the body is parsed answers 401, never a 400 that describes the schema.
  const authenticate = authenticator(deps.db);
  app.addHook('onRequest', async (req) => {
    // The matched route, not the raw URL: an encoded path still reaches the route it matches.
    if (!(req.routeOptions.url ?? req.url).startsWith('/api/')) return;
    await authenticate(req);
    if (!req.principal) {
      throw new DomainError('unauthenticated', 'a valid API key is required (Authorization: Bearer <key>)');
    }
  });
  const limits = deps.limits ?? DEFAULT_ABUSE_LIMITS;
  app.addHook('onRequest', rateLimitHook(deps.rateLimiter ?? memoryRateLimiter(), limits));
  app.addHook('preHandler', openRequestsHook(deps.db, limits));
  app.addHook('preValidation', async (req) => {
    const bad =
      unstorableText(req.params, 'params') ??
      unstorableText(req.query, 'querystring') ??
      unstorableText(req.body, 'body');
    if (bad) {
      throw new DomainError('validation_failed', `${bad}: text must not contain U+0000 or unpaired UTF-16 surrogates`);
    }
  });
  // POSTs without a body validate as an empty object, so required fields get a clear message.
  app.addHook('preValidation', async (req) => {
    if (req.body === undefined && req.method === 'POST') req.body = {};
  });
  app.addHook('onResponse', async (req, reply) => {
    deps.observeRequest?.(req.method, req.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000);
  });

  app.setErrorHandler((err, req, reply) => {
    const problem = toProblem(err as FastifyError, req);
    if (problem.status >= 500) req.log.error({ err, reqId: req.id }, 'request failed');
    return sendProblem(reply, problem);
  });
  app.setNotFoundHandler((req, reply) =>
    sendProblem(reply, problemOf('not_found', `no route ${req.method} ${req.url.split('?')[0]}`, req)),
  );

  app.get('/healthz', { schema: { hide: true } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { schema: { hide: true } }, async (_req, reply) => {
    const r = await deps.readiness();
    return reply.code(r.ready ? 200 : 503).send(r);
  });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  adminRoutes(app, deps.db, deps.settings);
  configurationRoutes(app, deps.db);
  certificateRoutes(app, deps.db, deps.settings);
  clientCertificateRoutes(app, deps.db, deps.settings);
  intakeKeyRoutes(app, deps.db, deps.settings);
  approvalRoutes(app, deps.db, deps.onDecision);
  if (deps.audit) auditRoutes(app, deps.db, deps.audit);
  diffRoutes(app, deps.db);
  await consoleRoutes(app);
  if (deps.queueDashboard) await queueDashboardRoutes(app, deps.db, deps.queueDashboard);
  return app;
}
