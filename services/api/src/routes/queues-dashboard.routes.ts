import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { FastifyAdapter } from '@bull-board/fastify';
import { ConfigError, type QueueDashboardConfig } from '@countersign/config';
import type { Db } from '@countersign/db';
import { DomainError } from '@countersign/domain';
import type { createRedis, Queue } from '@countersign/queues';
import { parseApiKey } from '@countersign/workflow';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { problemOf, sendProblem } from '../problem.ts';
import { boardRoute, redactName, redactPayload, redactProgress } from './queues-dashboard.redaction.ts';

/**
 * The BullMQ dashboard (bull-board) at /admin/queues: the installation's, not an org's.
 *
 * The queues carry every org's work, so no org credential opens the board, an org admin's API key
 * included: only the installation operator's token does, configured for the deployment
 * (COUNTERSIGN_QUEUE_DASHBOARD_TOKEN_SHA256 or _FILE; unset, the board is not mounted at all). The
 * api keeps only the token's SHA-256 and compares in constant time.
 *
 * A browser cannot add a bearer header to every asset and XHR the board makes, so the operator
 * presents the token once (POST /admin/queues/login, from the form served there) and gets an opaque
 * session cookie: HttpOnly, SameSite=Strict, scoped to /admin/queues, Secure behind https. The
 * session lives in Redis (only a hash of the cookie is its key), so every api replica honours it and
 * a logout or expiry ends it everywhere; it is bound to the configured token, so rotating the token
 * ends every session. Scripts may instead send `Authorization: Bearer <operator token>`.
 *
 * The board is read-only unless the operator enables writes (COUNTERSIGN_QUEUE_DASHBOARD_WRITES):
 * bull-board's read-only mode hides the buttons, and the server refuses every state-changing route
 * itself, so nothing depends on the UI. Job payloads are shown redacted (queues-dashboard.redaction.ts).
 */
type Redis = ReturnType<typeof createRedis>;

export const DASHBOARD_PATH = '/admin/queues';
export const SESSION_COOKIE = 'countersign_queues_session';
const DEFAULT_SESSION_TTL_SECONDS = 30 * 60;
/** A token file shorter than this is refused: the token is the whole of the board's protection. */
const MIN_TOKEN_LENGTH = 32;

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
  /** SHA-256 (64 hex digits) of the installation operator's token: the one credential that opens the board. */
  readonly tokenSha256: string;
  /** Allow the board's state-changing routes (pause, retry, add, clean ...); false: read-only. */
  readonly writes: boolean;
}

/** The SHA-256 the configuration holds for an operator token: hex of the token's UTF-8 bytes. */
export const operatorTokenSha256 = (token: string): string => createHash('sha256').update(token, 'utf8').digest('hex');

/**
 * The operator token's SHA-256 from the configuration: as given, or read from the token file (a
 * mounted secret). Only main.ts calls this; a bad file stops the api naming the variable.
 */
export function operatorTokenSha256Of(token: QueueDashboardConfig['token']): string {
  if ('sha256' in token) return token.sha256;
  const variable = 'COUNTERSIGN_QUEUE_DASHBOARD_TOKEN_FILE';
  let text: string;
  try {
    text = readFileSync(token.file, 'utf8');
  } catch (err) {
    throw new ConfigError(variable, `cannot be read (${token.file}): ${err instanceof Error ? err.message : err}`);
  }
  // A trailing newline is how editors and `echo` leave a file; it is not part of the token.
  const value = text.replace(/\r?\n$/, '');
  if (value.length < MIN_TOKEN_LENGTH || /\s/.test(value)) {
    throw new ConfigError(
      variable,
      `must hold one token of at least ${MIN_TOKEN_LENGTH} characters without spaces (${token.file}); \`countersign dashboard token\` makes one`,
    );
  }
  return operatorTokenSha256(value);
}

const sessionKey = (prefix: string, session: string) =>
  `${prefix}:dashboard-session:${createHash('sha256').update(session).digest('hex')}`;

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
<body><h1>Queue dashboard</h1><p>The queues are shared by every org: sign in with the installation's
<strong>queue dashboard operator token</strong> (an org's API key does not open it). The token is sent once;
the browser then holds a short-lived session cookie.</p>
<form method="post" action="${DASHBOARD_PATH}/login">
<label for="token">Operator token</label><input id="token" name="token" type="password" autocomplete="off" required>
<button type="submit">Sign in</button></form></body></html>`;

const HTML_HEADERS = {
  'content-security-policy':
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
  'x-frame-options': 'DENY',
  'cache-control': 'no-store',
  'referrer-policy': 'no-referrer',
};

const ORG_KEY_REFUSED =
  "an org's API key never opens the queue dashboard: the queues are shared by every org, so it takes the installation's operator token";
const READ_ONLY = 'the queue dashboard is read-only: the operator has not set COUNTERSIGN_QUEUE_DASHBOARD_WRITES=true';
const UNREVIEWED = 'this dashboard route has not been reviewed for what it shows, so it is not served';

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

/** Why a request to a board route is refused before it runs, or null when it may run. */
function refusal(method: string, path: string, writes: boolean): string | null {
  const reading = method === 'GET' || method === 'HEAD';
  if (!reading && !writes) return READ_ONLY;
  if (!path.startsWith('/api/')) return reading ? null : UNREVIEWED;
  const route = boardRoute(method, path);
  if (route === undefined) return UNREVIEWED;
  if (route.kind === 'refused') return `refused: ${route.why}`;
  return null;
}

type BoardOptions = NonNullable<Parameters<typeof createBullBoard>[0]['options']>;
type BoardHooks = NonNullable<BoardOptions['handlerHooks']>;
type BoardResult = Awaited<ReturnType<NonNullable<BoardHooks['after']>>>;

/**
 * bull-board's own hooks: the same refusals again, beneath Fastify's (so a route reached some other
 * way is still refused), and every answer passed through its route's redaction.
 */
function boardHooks(writes: boolean): BoardHooks {
  const forbidden = (message: string): BoardResult => ({
    status: 403,
    body: { error: { key: 'ERRORS.FORBIDDEN' }, message },
  });
  return {
    before: ({ method, route }) => {
      const why = refusal(method.toUpperCase(), route, writes);
      return why === null ? { allow: true } : { allow: false, status: 403, message: why };
    },
    after: ({ method, route }, result) => {
      const entry = boardRoute(method, route);
      if (entry === undefined || entry.kind === 'refused') return forbidden(UNREVIEWED);
      // Error answers carry bull-board's message keys and ids, never a job.
      if ((result.status ?? 200) >= 400) return result;
      return { ...result, body: entry.redact(result.body) as BoardResult['body'] };
    },
  };
}

/** Mounts the board. The database is not consulted: no org identity, whatever its role, opens it. */
export async function queueDashboardRoutes(app: FastifyInstance, _db: Db, deps: QueueDashboardDeps): Promise<void> {
  if (!/^[0-9a-f]{64}$/.test(deps.tokenSha256)) {
    throw new Error('queue dashboard: tokenSha256 must be 64 lowercase hex digits');
  }
  const ttl = deps.sessionTtlSeconds ?? DEFAULT_SESSION_TTL_SECONDS;
  const expected = Buffer.from(deps.tokenSha256, 'hex');
  // What a session records of the token it was opened with: neither the token nor its hash, and no
  // longer equal once the configured token changes.
  const binding = createHash('sha256').update(`countersign queue dashboard session\0${deps.tokenSha256}`).digest();

  /** A Redis outage is a clear 503 naming the way around it, never a 500. */
  const sessions = async <T>(op: () => Promise<T>): Promise<T> => {
    try {
      return await op();
    } catch (err) {
      app.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'queue dashboard session store failed');
      throw new DomainError('unavailable', 'the session store (Redis) is unavailable; retry, or send the bearer token');
    }
  };

  /** Is this the operator token? Refuses anything else, and says so plainly to an org key. */
  const checkToken = (req: FastifyRequest, presented: string): void => {
    const digest = createHash('sha256').update(presented, 'utf8').digest();
    if (timingSafeEqual(digest, expected)) return;
    if (parseApiKey(presented) !== null) {
      req.log.warn({ reqId: req.id }, 'queue dashboard refused an org API key');
      throw new DomainError('forbidden', ORG_KEY_REFUSED);
    }
    throw new DomainError('unauthenticated', 'this is not the queue dashboard operator token');
  };

  const sessionIsCurrent = (raw: string): boolean => {
    try {
      const stored = Buffer.from(String((JSON.parse(raw) as { binding?: unknown }).binding ?? ''), 'hex');
      return stored.length === binding.length && timingSafeEqual(stored, binding);
    } catch {
      return false;
    }
  };

  /** Who is calling: the bearer operator token, or a live session opened with the token configured now. */
  const authorize = async (req: FastifyRequest): Promise<void> => {
    const header = req.headers.authorization;
    if (header !== undefined) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
      if (!m?.[1]) throw new DomainError('unauthenticated', 'use Authorization: Bearer <operator token>');
      checkToken(req, m[1]);
      return;
    }
    const session = readCookie(req, SESSION_COOKIE);
    const raw = session ? await sessions(() => deps.redis.get(sessionKey(deps.keyPrefix, session))) : null;
    if (!raw) {
      throw new DomainError('unauthenticated', `sign in at ${DASHBOARD_PATH}/login with the operator token`);
    }
    if (!sessionIsCurrent(raw)) {
      if (session) await deps.redis.del(sessionKey(deps.keyPrefix, session)).catch(() => 0);
      throw new DomainError(
        'unauthenticated',
        'the operator token has changed since this session began; sign in again',
      );
    }
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
      const presented = typeof body.token === 'string' ? body.token.trim() : '';
      if (!presented) {
        return deny(
          req,
          reply,
          new DomainError('validation_failed', 'send the queue dashboard operator token as "token"'),
        );
      }
      try {
        checkToken(req, presented);
      } catch (err) {
        if (err instanceof DomainError) {
          req.log.warn({ code: err.code, reqId: req.id }, 'queue dashboard sign-in refused');
          return deny(req, reply, err);
        }
        throw err;
      }
      const session = randomBytes(32).toString('base64url');
      const stored = JSON.stringify({ binding: binding.toString('hex'), opened_at: new Date().toISOString() });
      try {
        await sessions(() => deps.redis.set(sessionKey(deps.keyPrefix, session), stored, 'EX', ttl));
      } catch (err) {
        if (err instanceof DomainError) return deny(req, reply, err);
        throw err;
      }
      req.log.info({ reqId: req.id, ip: req.ip }, 'queue dashboard session opened with the operator token');
      reply.header('set-cookie', cookie(session, ttl, deps.secureCookie));
      return reply.code(303).header('location', `${DASHBOARD_PATH}/`).send();
    });

    scope.post(`${DASHBOARD_PATH}/logout`, { schema: { hide: true } }, async (req, reply) => {
      const session = readCookie(req, SESSION_COOKIE);
      // The cookie is cleared even if Redis is down; the stored session then simply expires.
      if (session) await deps.redis.del(sessionKey(deps.keyPrefix, session)).catch(() => 0);
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
        // The matched route, not the raw URL: an encoded path still meets the rule of the route it reaches.
        const why = refusal(req.method, (req.routeOptions.url ?? '').slice(DASHBOARD_PATH.length), deps.writes);
        if (why !== null) return deny(req, reply, new DomainError('forbidden', why));
        reply.header('x-frame-options', 'DENY');
        reply.header('cache-control', 'no-store');
      });
      const adapter = new FastifyAdapter();
      adapter.setBasePath(DASHBOARD_PATH);
      createBullBoard({
        queues: deps.queues.map((q) => {
          const shown = new BullMQAdapter(q, { readOnlyMode: !deps.writes, allowRetries: deps.writes });
          shown.setFormatter('data', redactPayload);
          shown.setFormatter('returnValue', (v: unknown) => (v === undefined || v === null ? v : redactPayload(v)));
          // bull-board hands the name formatter the whole job.
          shown.setFormatter('name', (job: { name?: unknown } | undefined) => redactName(job?.name));
          shown.setFormatter('progress', redactProgress);
          return shown;
        }),
        serverAdapter: adapter,
        options: {
          uiBasePath: boardUiDir(),
          uiConfig: {
            boardTitle: 'Countersign queues',
            environment: deps.writes
              ? { label: 'writes enabled', color: '#b45309', textColor: '#ffffff' }
              : { label: 'read-only', color: '#475569', textColor: '#ffffff' },
          },
          handlerHooks: boardHooks(deps.writes),
        },
      });
      await board.register(adapter.registerPlugin(), { prefix: DASHBOARD_PATH });
    });
  });
}
