import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CONSOLE_DIST, CONSOLE_PREFIX, consoleBuilt } from '@countersign/console';
import fastifyStatic from '@fastify/static';
import type { FastifyInstance, FastifyReply } from 'fastify';

/**
 * Serves the approver web console (packages/console, built by
 * `pnpm build:console`) under /ui. Served only when the build exists, so an
 * api without a front-end build still starts. The policy header keeps the
 * page to its own origin: the console makes no request anywhere else.
 */
const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

export async function consoleRoutes(app: FastifyInstance, dir: string = CONSOLE_DIST): Promise<boolean> {
  if (!consoleBuilt(dir)) {
    app.log.info({ dir }, 'web console not built (pnpm build:console); /ui is not served');
    return false;
  }
  const secure = (reply: FastifyReply, path: string) => {
    reply.header('content-security-policy', CONTENT_SECURITY_POLICY);
    reply.header('x-content-type-options', 'nosniff');
    reply.header('referrer-policy', 'no-referrer');
    reply.header('x-frame-options', 'DENY');
    // Built assets carry a content hash in their name; the page itself must always be fresh.
    reply.header('cache-control', /[\\/]assets[\\/]/.test(path) ? 'public, max-age=31536000, immutable' : 'no-cache');
  };
  await app.register(fastifyStatic, {
    root: dir,
    prefix: CONSOLE_PREFIX,
    decorateReply: false,
    index: false,
    wildcard: true,
    schemaHide: true,
    setHeaders: secure,
  });
  // The page itself at /ui and /ui/ (the router ignores trailing slashes, so one route serves both);
  // read per request so a rebuilt console is picked up without a restart.
  app.get('/ui', { schema: { hide: true } }, async (_req, reply) => {
    secure(reply, 'index.html');
    return reply.type('text/html; charset=utf-8').send(await readFile(join(dir, 'index.html')));
  });
  return true;
}
