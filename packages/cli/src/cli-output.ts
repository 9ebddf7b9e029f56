import type { ApiError } from '@countersign/client';

/**
 * Exit codes of the approver commands, so scripts can tell "the server said
 * no" from "I typed it wrong" from "my key is bad":
 */
export const EXIT = {
  ok: 0,
  /** The API refused or failed (not found, conflict, validation, 5xx), the server is unreachable, or a job failed. */
  error: 1,
  /** Bad command line: unknown option, missing argument. Nothing was sent. */
  usage: 2,
  /** No API key configured, or the server did not accept it (401). */
  auth: 3,
  /** The principal may not do this (403), including the two-person-integrity and enrollment-credential refusals. */
  forbidden: 4,
  /** `wait` gave up before the job finished (--timeout). */
  timeout: 5,
} as const;

export const EXIT_CODES_HELP = `Exit codes:
  0  success
  1  the API refused or failed (not found, conflict, bad input, server error), the
     server is unreachable, the job failed or was cancelled, or the audit chain is broken
  2  usage error (unknown option, missing argument); nothing was sent
  3  not signed in, or the API key was not accepted (401)
  4  forbidden (403), including two-person integrity: a requester cannot decide
     their own request; and enrollment_credential: a key someone else made for you
     cannot vote or decide until you mint your own ('countersign enroll')
  5  'wait' timed out before the job finished
`;

/** After signing in with a key someone else made for the principal. */
export const ENROLLMENT_KEY_HINT =
  "Hint: this is an enrollment key: it can request but not approve; run 'countersign enroll' to mint your own key.\n";

/** A mistake on the command line; the command's usage is printed with it. */
export class CliUsageError extends Error {}

/** A failure to report as-is with a given exit code (no stack, no usage). */
export class CliFailure extends Error {
  constructor(
    message: string,
    readonly exitCode: number,
  ) {
    super(message);
  }
}

export interface Io {
  out(text: string): void;
  err(text: string): void;
}

export const processIo: Io = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
};

/** Prints an API error the way a person at a terminal wants it, and picks the exit code. */
export function reportApiError(io: Io, e: ApiError, ctx: { url: string | null }): number {
  const lines = [`countersign: ${e.detail}`];
  if (e.errors.length > 0 && !e.errors.every((x) => e.detail.includes(x.message))) {
    for (const fe of e.errors) lines.push(`  ${fe.path}: ${fe.message}`);
  }
  const meta = e.status > 0 ? `${e.code}, HTTP ${e.status}` : e.code;
  lines.push(`  (${meta}${e.requestId ? `, request id ${e.requestId}` : ''})`);
  let code: number = EXIT.error;
  if (e.code === 'unreachable') {
    lines.push(`  hint: is the api running at ${ctx.url}? Set COUNTERSIGN_URL or run 'countersign login --url URL'.`);
  } else if (e.status === 401) {
    code = EXIT.auth;
    lines.push(`  hint: run 'countersign login' or set COUNTERSIGN_API_KEY.`);
  } else if (e.status === 403) {
    code = EXIT.forbidden;
    if (e.code === 'two_person_integrity') {
      lines.push(
        e.path.includes('configuration-requests')
          ? '  another admin has to decide it: one you did not create and that did not create you.'
          : '  another approver of this profile has to decide it.',
      );
    } else if (e.code === 'enrollment_credential') {
      lines.push("  hint: run 'countersign enroll' with this key to mint your own, then use that one.");
    }
  } else if (e.routeMissing) {
    lines.push(`  hint: the server at ${ctx.url} does not offer ${e.method} ${e.path}; it may be an older release.`);
  }
  io.err(`${lines.join('\n')}\n`);
  return code;
}

/** A plain text table; columns shrink (with …) only when a width is given. */
export function renderTable(
  headers: string[],
  rows: string[][],
  opts: { maxWidth?: number; shrinkable?: number[] } = {},
): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const gap = 2;
  if (opts.maxWidth) {
    const total = () => widths.reduce((a, b) => a + b, 0) + gap * (widths.length - 1);
    for (const i of opts.shrinkable ?? []) {
      const over = total() - opts.maxWidth;
      if (over <= 0) break;
      widths[i] = Math.max(headers[i]?.length ?? 4, 12, (widths[i] ?? 0) - over);
    }
  }
  const cell = (text: string, w: number) =>
    text.length > w ? `${text.slice(0, Math.max(0, w - 1))}…` : text.padEnd(w);
  const line = (cells: string[]) =>
    cells
      .map((c, i) => cell(c, widths[i] ?? 0))
      .join(' '.repeat(gap))
      .trimEnd();
  return `${[line(headers), ...rows.map(line)].join('\n')}\n`;
}

/** "key: value" lines with aligned values. */
export function renderFields(fields: [string, string][]): string {
  const w = Math.max(...fields.map(([k]) => k.length));
  return `${fields.map(([k, v]) => `${`${k}:`.padEnd(w + 2)}${v}`).join('\n')}\n`;
}
