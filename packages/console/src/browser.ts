import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium } from 'playwright-core';

/**
 * Test-only: Debian's Chromium (apt-get install chromium) driven by
 * playwright-core, which never downloads a browser of its own. The flags keep
 * Chromium off the network: without them it calls home at start-up.
 */
export const CHROMIUM_PATH = '/usr/bin/chromium';

export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];

/** Installs Debian's chromium when missing and we are root; returns a reason when it cannot be had. */
export function ensureChromium(): { ok: true } | { ok: false; reason: string } {
  if (existsSync(CHROMIUM_PATH)) return { ok: true };
  if (process.getuid?.() !== 0) {
    return {
      ok: false,
      reason: `${CHROMIUM_PATH} is missing and installing it needs root (apt-get install -y chromium)`,
    };
  }
  try {
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    execFileSync('apt-get', ['update', '-qq'], { stdio: 'ignore', env, timeout: 300_000 });
    execFileSync('apt-get', ['install', '-y', '-qq', 'chromium'], { stdio: 'ignore', env, timeout: 600_000 });
  } catch (err) {
    return { ok: false, reason: `apt-get install -y chromium failed: ${(err as Error).message}` };
  }
  return existsSync(CHROMIUM_PATH)
    ? { ok: true }
    : { ok: false, reason: 'chromium installed but not at /usr/bin/chromium' };
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: CHROMIUM_FLAGS });
}

const PACKAGE_DIR = fileURLToPath(new URL('..', import.meta.url));

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

/**
 * Builds the console when dist is missing or older than its sources, so a
 * browser test never runs against a stale bundle. CI builds it first anyway
 * (`pnpm build:console`); this keeps a bare `vitest` run honest.
 */
export function ensureConsoleBuilt(): void {
  const index = join(PACKAGE_DIR, 'dist', 'index.html');
  const sources = Math.max(
    newestMtime(join(PACKAGE_DIR, 'web')),
    statSync(join(PACKAGE_DIR, 'index.html')).mtimeMs,
    newestMtime(join(PACKAGE_DIR, '..', 'client', 'src')),
  );
  if (existsSync(index) && statSync(index).mtimeMs >= sources) return;
  execFileSync('pnpm', ['--filter', '@countersign/console', 'build'], {
    cwd: PACKAGE_DIR,
    stdio: 'ignore',
    timeout: 300_000,
  });
}

export type { Browser, Download, Page } from 'playwright-core';
