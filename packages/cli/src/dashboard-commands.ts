import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';

/**
 * `countersign dashboard token`: makes the installation operator's token for the queue dashboard
 * (/admin/queues) and prints the SHA-256 to configure as COUNTERSIGN_QUEUE_DASHBOARD_TOKEN_SHA256, so
 * the deployment's environment holds no secret. No org's API key opens the dashboard: the queues are
 * shared by every org. Works offline; it talks to nothing.
 */
const HELP = `countersign dashboard token [--out FILE] [--json]

Makes a random operator token for the queue dashboard (/admin/queues) and prints
its SHA-256, the value of COUNTERSIGN_QUEUE_DASHBOARD_TOKEN_SHA256 for the api.
The token is shown once: keep it in your password manager or secret store.

  --out FILE   write the token to FILE (mode 0600, refused if FILE exists), for
               COUNTERSIGN_QUEUE_DASHBOARD_TOKEN_FILE; the token is then not printed
  --json       print {"token"|"file", "sha256"} as JSON
`;

/** The SHA-256 the api compares against: hex of the token's UTF-8 bytes (as `printf %s TOKEN | sha256sum`). */
export const dashboardTokenSha256 = (token: string): string => createHash('sha256').update(token, 'utf8').digest('hex');

/** 256 random bits; the prefix tells a reader what the string is, and no org API key (`cs_…`) looks like it. */
export function newDashboardToken(): { token: string; sha256: string } {
  const token = `csqd_${randomBytes(32).toString('base64url')}`;
  return { token, sha256: dashboardTokenSha256(token) };
}

export async function dashboardToken(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      help: { type: 'boolean', short: 'h' },
      out: { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const { token, sha256 } = newDashboardToken();
  if (values.out) {
    // 'wx': never overwrite a token someone may already be using.
    await writeFile(values.out, `${token}\n`, { mode: 0o600, flag: 'wx' });
    process.stdout.write(
      values.json
        ? `${JSON.stringify({ file: values.out, sha256 })}\n`
        : `token written to ${values.out} (mode 0600)\n\nConfigure the api with one of:\n  COUNTERSIGN_QUEUE_DASHBOARD_TOKEN_FILE=${values.out}\n  COUNTERSIGN_QUEUE_DASHBOARD_TOKEN_SHA256=${sha256}\n`,
    );
    return 0;
  }
  process.stdout.write(
    values.json
      ? `${JSON.stringify({ token, sha256 })}\n`
      : `token   ${token}\nsha256  ${sha256}\n\nConfigure the api with:\n  COUNTERSIGN_QUEUE_DASHBOARD_TOKEN_SHA256=${sha256}\nand sign in at <COUNTERSIGN_PUBLIC_URL>/admin/queues/login with the token (scripts: Authorization: Bearer <token>).\nThe token is shown only now.\n`,
  );
  return 0;
}
