import { createHash, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import { type Db, identity } from '@countersign/db';
import { DomainError } from '@countersign/domain';
import type { createRedis, Queue } from '@countersign/queues';
import { authenticateApiKey } from '@countersign/workflow';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { problemOf, sendProblem } from '../problem.ts';

/**
 * The BullMQ dashboard (bull-board) at /admin/queues, for org admins only.
 *
 * A browser cannot add a bearer header to every asset and XHR the board makes,
 * so an admin presents an API key once (POST /admin/queues/login, from the
 * form served there) and gets an opaque session cookie: HttpOnly, SameSite=Strict,
 * scoped to /admin/queues, Secure behind https. The session lives in Redis
 * (only a hash of the cookie is stored), so every api replica honours it and a
 * logout or expiry ends it everywhere. Every request re-reads the API key the
 * session came from, so revoking the key, disabling the principal or demoting
 * it closes the dashboard at once. Scripts may instead send
 * `Authorization: Bearer <admin key>` on each request.
 */
type Redis = ReturnType<typeof createRedis>;

export const DASHBOARD_PATH = '/admin/queues';
export const SESSION_COOKIE = 'countersign_queues_session';
const DEFAULT_SESSION_TTL_SECONDS = 30 * 60;

/**
 * Where the board's static assets are. Named here rather than left to
 * bull-board's own lookup so that the bundle can carry bull-board's code (and
 * share the bundle's bullmq: loaded from node_modules beside it, a second copy
 * of bullmq cost the api ~30 MB of memory) while the assets stay on disk.
 * Looked up only when the dashboard is mounted: the api runs without it.
 */
const boardUiDir = () => dirname(createRequire(import.meta.url).resolve('@bull-board/ui/package.json'));

export interface QueueDashboardDeps {
  /** The queues shown on the board (opened by main.ts on its producer connection). */
  readonly queues: readonly Queue[];
  /** Where sessions are kept; every api replica shares it. */
  readonly redis: Redis;
  /** Key prefix for sessions; the queue prefix keeps them in the deployment's hash slot. */
  readonly keyPrefix: string;
  /** Sets the Secure flag on the cookie (the api is reached over https). */
  readonly secureCookie: boolean;
  /** COUNTERSIGN_PUBLIC_URL: a proxy may rewrite Host, so its origin is accepted too. */
  readonly publicUrl?: string;
  readonly sessionTtlSeconds?: number;
}

interface Session {
  readonly key_id: string;
  readonly principal_id: string;
  readonly org_id: string;
}

const sessionKey = (prefix: string, token: string) =>
  `${prefix}:dashboard-session:${createHash('sha256').update(token).digest('hex')}`;

function readCookie(req: FastifyRequest, name: string): string | null {
  const header = req.headers.cookie;
  if (!header) return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return null;
}

function cookie(value: string, maxAge: number, secure: boolean): string {
  return [
    `${SESSION_COOKIE}=${value}`,
    `Path=${DASHBOARD_PATH}`,
    `Max-Age=${maxAge}`,
    'HttpOnly',
    'SameSite=Strict',
    ...(secure ? ['Secure'] : []),
  ].join('; ');
}

const LOGIN_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Countersign queues: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem}
input,button{font:inherit;padding:.5rem;width:100%;box-sizing:border-box;margin:.25rem 0}</style></head>
<body><h1>Queue dashboard</h1><p>Sign in with an <strong>admin</strong> API key. The key is sent once;
the browser then holds a short-lived session cookie.</p>
<form method="post" action="${DASHBOARD_PATH}/login">
<label for="key">API key</label><input id="key" name="key" type="password" autocomplete="off" required>
<button type="submit">Sign in</button></form></body></html>`;

const HTML_HEADERS = {
  'content-security-policy':
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
  'x-frame-options': 'DENY',
  'cache-control': 'no-store',
  'referrer-policy': 'no-referrer',
};

/**
 * The board may only be driven from its own origin (defence in depth: the
 * SameSite=Strict cookie already stays home). No Origin header means a
 * non-browser client, which cannot ride a victim's cookie.
 */
function crossOrigin(req: FastifyRequest, publicUrl: string | undefined): boolean {
  const origin = req.headers.origin;
  if (origin === undefined) return false;
  try {
    const host = new URL(origin).host;
    return host !== req.headers.host && (publicUrl === undefined || host !== new URL(publicUrl).host);
  } catch {
    return true;
  }
}

export async function queueDashboardRoutes(app: FastifyInstance, db: Db, deps: QueueDashboardDeps): Promise<void> {
  const ttl = deps.sessionTtlSeconds ?? DEFAULT_SESSION_TTL_SECONDS;

  /** A Redis outage is a clear 503 naming the way around it, never a 500. */
  const sessions = async <T>(op: () => Promise<T>): Promise<T> => {
    try {
      return await op();
    } catch (err) {
      app.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'queue dashboard session store failed');
      throw new DomainError('unavailable', 'the session store (Redis) is unavailable; retry, or send a bearer key');
    }
  };

  const requireAdmin = (role: string) => {
    if (role !== 'admin') throw new DomainError('forbidden', 'the queue dashboard is for admins only');
  };

  /** Who is calling: a bearer admin key, or a live session whose key is still valid and still an admin's. */
  const authorize = async (req: FastifyRequest): Promise<void> => {
    const header = req.headers.authorization;
    if (header !== undefined) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
      if (!m?.[1]) throw new DomainError('unauthenticated', 'use Authorization: Bearer <api key>');
      requireAdmin((await authenticateApiKey(db, m[1])).role);
      return;
    }
    const token = readCookie(req, SESSION_COOKIE);
    const raw = token ? await sessions(() => deps.redis.get(sessionKey(deps.keyPrefix, token))) : null;
    if (!raw) throw new DomainError('unauthenticated', `sign in at ${DASHBOARD_PATH}/login with an admin API key`);
    const session = JSON.parse(raw) as Session;
    const key = await identity.findApiKeyForAuth(db, session.key_id);
    const live =
      key !== undefined &&
      key.principal_id === session.principal_id &&
      key.revoked_at === null &&
      key.disabled_at === null &&
      (key.expires_at === null || key.expires_at > new Date());
    if (!live) {
      if (token) await deps.redis.del(sessionKey(deps.keyPrefix, token)).catch(() => 0);
      throw new DomainError('unauthenticated', 'the API key behind this session is no longer valid; sign in again');
    }
    requireAdmin(key.role);
  };

  const deny = (req: FastifyRequest, reply: FastifyReply, err: DomainError) => {
    // A person opening the board in a browser gets the sign-in form (with the 401); anything else gets problem+json.
    const wantsHtml = req.method === 'GET' && String(req.headers.accept ?? '').includes('text/html');
    if (err.code === 'unauthenticated' && wantsHtml) {
      return reply.code(401).headers(HTML_HEADERS).type('text/html; charset=utf-8').send(LOGIN_PAGE);
    }
    return sendProblem(reply, problemOf(err.code, err.message, req));
  };

  // One encapsulated scope: the guard below covers every dashboard route and nothing else.
  await app.register(async (scope) => {
    scope.addContentTypeParser(
      'application/x-www-form-urlencoded',
      { parseAs: 'string', bodyLimit: 4096 },
      (_req, body, done) => done(null, Object.fromEntries(new URLSearchParams(String(body)))),
    );

    scope.get(`${DASHBOARD_PATH}/login`, { schema: { hide: true } }, async (_req, reply) =>
      reply.headers(HTML_HEADERS).type('text/html; charset=utf-8').send(LOGIN_PAGE),
    );

    scope.post(`${DASHBOARD_PATH}/login`, { schema: { hide: true } }, async (req, reply) => {
      if (crossOrigin(req, deps.publicUrl))
        return deny(req, reply, new DomainError('forbidden', 'cross-origin sign-in refused'));
      const body = (req.body ?? {}) as Record<string, unknown>;
      const key = typeof body.key === 'string' ? body.key.trim() : '';
      if (!key) return deny(req, reply, new DomainError('validation_failed', 'send the admin API key as "key"'));
      let principal: Awaited<ReturnType<typeof authenticateApiKey>>;
      try {
        principal = await authenticateApiKey(db, key);
        requireAdmin(principal.role);
      } catch (err) {
        if (err instanceof DomainError) {
          req.log.warn({ code: err.code, reqId: req.id }, 'queue dashboard sign-in refused');
          return deny(req, reply, err);
        }
        throw err;
      }
      const token = randomBytes(32).toString('base64url');
      const session: Session = { key_id: principal.keyId, principal_id: principal.id, org_id: principal.orgId };
      try {
        await sessions(() => deps.redis.set(sessionKey(deps.keyPrefix, token), JSON.stringify(session), 'EX', ttl));
      } catch (err) {
        if (err instanceof DomainError) return deny(req, reply, err);
        throw err;
      }
      req.log.info({ principal_id: principal.id, reqId: req.id }, 'queue dashboard session opened');
      reply.header('set-cookie', cookie(token, ttl, deps.secureCookie));
      return reply.code(303).header('location', `${DASHBOARD_PATH}/`).send();
    });

    scope.post(`${DASHBOARD_PATH}/logout`, { schema: { hide: true } }, async (req, reply) => {
      const token = readCookie(req, SESSION_COOKIE);
      // The cookie is cleared even if Redis is down; the stored session then simply expires.
      if (token) await deps.redis.del(sessionKey(deps.keyPrefix, token)).catch(() => 0);
      reply.header('set-cookie', cookie('', 0, deps.secureCookie));
      return reply.code(303).header('location', `${DASHBOARD_PATH}/login`).send();
    });

    // The board itself, behind the guard.
    await scope.register(async (board) => {
      board.addHook('onRequest', async (req, reply) => {
        if (req.method !== 'GET' && req.method !== 'HEAD' && crossOrigin(req, deps.publicUrl)) {
          return deny(req, reply, new DomainError('forbidden', 'cross-origin request refused'));
        }
        try {
          await authorize(req);
        } catch (err) {
          if (err instanceof DomainError) return deny(req, reply, err);
          throw err;
        }
        reply.header('x-frame-options', 'DENY');
        reply.header('cache-control', 'no-store');
      });
      const adapter = new FastifyAdapter();
      adapter.setBasePath(DASHBOARD_PATH);
      createBullBoard({
        queues: deps.queues.map((q) => new BullMQAdapter(q)),
        serverAdapter: adapter,
        options: { uiBasePath: boardUiDir(), uiConfig: { boardTitle: 'Countersign queues' } },
      });
      await board.register(adapter.registerPlugin(), { prefix: DASHBOARD_PATH });
    });
  });
}
