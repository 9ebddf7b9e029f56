import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Where the built console lives (`pnpm build:console` writes it). The api
 * serves it under /ui only when it has been built, so a server without a
 * front-end build still starts and answers the API.
 */
export const CONSOLE_DIST = fileURLToPath(new URL('../dist', import.meta.url));

/** The URL prefix the api serves the console under. */
export const CONSOLE_PREFIX = '/ui/';

export function consoleBuilt(dir: string = CONSOLE_DIST): boolean {
  return existsSync(join(dir, 'index.html'));
}
