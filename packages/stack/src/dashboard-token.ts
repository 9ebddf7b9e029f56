import { createHash, randomBytes } from 'node:crypto';
import { chmod, readFile, writeFile } from 'node:fs/promises';

/**
 * The local stack's operator token for the queue dashboard (/admin/queues): made on the first start,
 * kept in the data directory (mode 0600) and reused, so a browser session survives a restart of the
 * stack. The api is given only its SHA-256 (COUNTERSIGN_QUEUE_DASHBOARD_TOKEN_SHA256), as a deployment
 * would configure it; `countersign dashboard token` makes one the same way.
 */
export interface DashboardToken {
  readonly token: string;
  /** Hex of the token's UTF-8 bytes: what the api compares against. */
  readonly sha256: string;
  readonly created: boolean;
}

const MIN_LENGTH = 32;

export async function loadOrCreateDashboardToken(file: string): Promise<DashboardToken> {
  let token = '';
  try {
    token = (await readFile(file, 'utf8')).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  let created = false;
  if (token === '') {
    token = `csqd_${randomBytes(32).toString('base64url')}`;
    await writeFile(file, `${token}\n`, { mode: 0o600 });
    created = true;
  } else if (token.length < MIN_LENGTH || /\s/.test(token)) {
    throw new Error(`${file} does not hold a usable queue dashboard token; delete it and a new one is made`);
  }
  // A copy restored with looser permissions is tightened again.
  await chmod(file, 0o600);
  return { token, sha256: createHash('sha256').update(token, 'utf8').digest('hex'), created };
}
