import { randomUUID, X509Certificate } from 'node:crypto';
import { open, rm, writeFile } from 'node:fs/promises';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { generateKeyAndCsr } from '@countersign/ca/csr-generate';
import {
  ApiError,
  type Approval,
  type ApprovalDiff,
  type ApprovalState,
  type AuditCheckpoint,
  CountersignClient,
  expiryText,
  humanDuration,
  type Job,
  namesText,
  type Principal,
  type Profile,
  relativeTime,
  votesSummary,
} from '@countersign/client';
import { parseDuration } from '@countersign/domain';
import { configPath, readStored, removeStored, resolveConfig, writeStored } from './cli-config.ts';
import {
  CliFailure,
  CliUsageError,
  ENROLLMENT_KEY_HINT,
  EXIT,
  EXIT_CODES_HELP,
  type Io,
  processIo,
  renderFields,
  renderTable,
  reportApiError,
} from './cli-output.ts';

/**
 * The approver and requester commands: they talk to the HTTP API through the
 * typed client, never to the database. Every command answers --help, prints
 * the server's problem detail plainly, and exits with the codes in EXIT.
 */
type Options = NonNullable<ParseArgsConfig['options']>;
type Values = Record<string, string | boolean | (string | boolean)[] | undefined>;

interface Context {
  readonly io: Io;
  readonly client: CountersignClient;
  readonly url: string;
}

interface Spec {
  readonly usage: string;
  readonly options?: Options;
  readonly positionals?: { min: number; max: number };
  /** Commands that need no API (login, logout) run without a client. */
  readonly offline?: boolean;
  run(ctx: Context, values: Values, positionals: string[]): Promise<number>;
}

const HELP_OPTION: Options = { help: { type: 'boolean', short: 'h' } };
export const USER_AGENT = 'countersign-cli/0.1';

export function command(spec: Spec, io: Io = processIo) {
  return async (argv: string[]): Promise<number> => {
    let values: Values;
    let positionals: string[];
    try {
      const parsed = parseArgs({
        args: argv,
        options: { ...HELP_OPTION, ...spec.options },
        allowPositionals: true,
        strict: true,
      });
      values = parsed.values as Values;
      positionals = parsed.positionals;
    } catch (err) {
      io.err(`countersign: ${err instanceof Error ? err.message : String(err)}\n\n${spec.usage}`);
      return EXIT.usage;
    }
    if (values.help) {
      io.out(`${spec.usage}\n${EXIT_CODES_HELP}`);
      return EXIT.ok;
    }
    const { min, max } = spec.positionals ?? { min: 0, max: 0 };
    if (positionals.length < min || positionals.length > max) {
      const what = positionals.length < min ? 'missing argument' : `unexpected argument "${positionals[max]}"`;
      io.err(`countersign: ${what}\n\n${spec.usage}`);
      return EXIT.usage;
    }
    let url: string | null = null;
    try {
      const cfg = await resolveConfig();
      for (const w of cfg.warnings) io.err(`countersign: warning: ${w}\n`);
      url = cfg.url;
      if (spec.offline) {
        return await spec.run(
          { io, client: new CountersignClient({ baseUrl: '' }), url: url ?? '' },
          values,
          positionals,
        );
      }
      if (!cfg.url || !cfg.apiKey) {
        io.err(
          `countersign: not signed in: no ${cfg.url ? 'API key' : 'API URL'} configured.\n` +
            `  Run 'countersign login --url URL' (stores ${cfg.path}, mode 0600),\n` +
            '  or set COUNTERSIGN_URL and COUNTERSIGN_API_KEY.\n',
        );
        return EXIT.auth;
      }
      const client = new CountersignClient({ baseUrl: cfg.url, apiKey: cfg.apiKey, userAgent: USER_AGENT });
      return await spec.run({ io, client, url: cfg.url }, values, positionals);
    } catch (err) {
      if (err instanceof ApiError) return reportApiError(io, err, { url });
      if (err instanceof CliUsageError) {
        io.err(`countersign: ${err.message}\n\n${spec.usage}`);
        return EXIT.usage;
      }
      if (err instanceof CliFailure) {
        io.err(`countersign: ${err.message}\n`);
        return err.exitCode;
      }
      throw err;
    }
  };
}

export const str = (v: Values[string]): string | undefined => (typeof v === 'string' ? v : undefined);
const strs = (v: Values[string]): string[] =>
  Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function requireId(value: string | undefined, what: string): string {
  if (!value || !UUID.test(value))
    throw new CliUsageError(`${what} must be an id like 0b8f3c1e-…, got "${value ?? ''}"`);
  return value.toLowerCase();
}

function durationOption(value: string | undefined, name: string, fallbackMs: number): number {
  if (value === undefined) return fallbackMs;
  const ms = parseDuration(value);
  if (ms === null || ms <= 0) throw new CliUsageError(`--${name} must be a duration like 30s, 10m or 2h`);
  return ms;
}

// ---------------------------------------------------------------------------
// Names: approvers read names, the API answers ids.
// ---------------------------------------------------------------------------

export interface Directory {
  me: Principal;
  principals: Map<string, Principal>;
  profiles: Map<string, Profile>;
}

export async function directory(client: CountersignClient): Promise<Directory> {
  const [me, profiles, principals] = await Promise.all([
    client.me(),
    collect(client, (q) => client.listProfiles(q ?? {})),
    // Requesters may not list principals; they still see their own name.
    collect(client, (q) => client.listPrincipals(q ?? {})).catch((e: unknown) => {
      if (e instanceof ApiError && e.status === 403) return [] as Principal[];
      throw e;
    }),
  ]);
  const byId = new Map(principals.map((p) => [p.id, p]));
  byId.set(me.id, me);
  return { me, principals: byId, profiles: new Map(profiles.map((p) => [p.id, p])) };
}

async function collect<T>(
  client: CountersignClient,
  list: (q?: { limit: number; cursor?: string }) => Promise<{ items: T[]; next_cursor: string | null }>,
): Promise<T[]> {
  const out: T[] = [];
  for await (const items of client.pages(list, { limit: 500 }, 20)) out.push(...items);
  return out;
}

export const principalName = (d: Directory, id: string): string => {
  const p = d.principals.get(id);
  return p ? (p.id === d.me.id ? `${p.name} (you)` : p.name) : id;
};

function findProfile(d: Directory, nameOrId: string): Profile {
  const byId = d.profiles.get(nameOrId);
  if (byId) return byId;
  const matches = [...d.profiles.values()].filter((p) => p.name.toLowerCase() === nameOrId.toLowerCase());
  if (matches.length === 1 && matches[0]) return matches[0];
  const names = [...d.profiles.values()].map((p) => p.name).join(', ') || 'none';
  throw new CliUsageError(`no profile "${nameOrId}" (profiles: ${names})`);
}

export function findPrincipalId(d: Directory, nameOrId: string): string {
  if (nameOrId === 'me') return d.me.id;
  if (UUID.test(nameOrId)) return nameOrId.toLowerCase();
  const matches = [...d.principals.values()].filter((p) => p.name.toLowerCase() === nameOrId.toLowerCase());
  if (matches.length === 1 && matches[0]) return matches[0].id;
  throw new CliUsageError(`no principal named "${nameOrId}"; use an id or "me"`);
}

// ---------------------------------------------------------------------------
// login / logout / whoami
// ---------------------------------------------------------------------------

export async function readSecretFromStdin(io: Io, what = 'API key'): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) {
    const chunks: Buffer[] = [];
    for await (const c of stdin) chunks.push(c as Buffer);
    return Buffer.concat(chunks).toString('utf8').trim();
  }
  // Interactive: read without echo, so the key is neither shown nor kept in shell history.
  io.err(`${what} (input hidden): `);
  stdin.setRawMode(true);
  stdin.resume();
  return new Promise((resolve, reject) => {
    let key = '';
    const onData = (buf: Buffer) => {
      for (const ch of buf.toString('utf8')) {
        if (ch === '\r' || ch === '\n') {
          done();
          return resolve(key.trim());
        }
        if (ch === '\u0003') {
          done();
          return reject(new CliFailure('cancelled', EXIT.usage));
        }
        if (ch === '\u007f') key = key.slice(0, -1);
        else key += ch;
      }
    };
    const done = () => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      io.err('\n');
    };
    stdin.on('data', onData);
  });
}

const login = command({
  usage: `countersign login [--url URL] [--key-stdin]

Stores the API URL and an API key in ${configPath()} (mode 0600)
after checking them against the server. The key is read, in this order, from
--key-stdin (piped), COUNTERSIGN_API_KEY, or a hidden prompt. COUNTERSIGN_URL
and COUNTERSIGN_API_KEY, when set, always override the stored values.

Options:
  --url URL       the api, e.g. http://127.0.0.1:8080 (default: COUNTERSIGN_URL or the stored URL)
  --key-stdin     read the API key from standard input (e.g. from a secret manager)
`,
  options: { url: { type: 'string' }, 'key-stdin': { type: 'boolean' } },
  offline: true,
  run: async ({ io }, values) => {
    const path = configPath();
    const stored = (await readStored(path)).config;
    const url = (str(values.url) ?? process.env.COUNTERSIGN_URL ?? stored?.url ?? '').trim();
    if (!url) throw new CliUsageError('give the api URL with --url');
    if (!/^https?:\/\/[^/\s]+/i.test(url)) throw new CliUsageError(`--url must be an http(s) URL, got "${url}"`);
    let key: string;
    if (values['key-stdin']) key = await readSecretFromStdin(io);
    else if (process.env.COUNTERSIGN_API_KEY?.trim()) key = process.env.COUNTERSIGN_API_KEY.trim();
    else if (process.stdin.isTTY) key = await readSecretFromStdin(io);
    else throw new CliUsageError('no API key: pipe it with --key-stdin or set COUNTERSIGN_API_KEY');
    if (!key) throw new CliUsageError('the API key is empty');

    const client = new CountersignClient({ baseUrl: url, apiKey: key, userAgent: USER_AGENT });
    const me = await client.me();
    await writeStored(path, {
      url: client.baseUrl,
      api_key: key,
      principal: { id: me.id, name: me.name, role: me.role },
      saved_at: new Date().toISOString(),
    });
    io.out(`Signed in to ${client.baseUrl} as ${me.name} (${me.role}).\nKey stored in ${path} (mode 0600).\n`);
    if (me.credential && !me.credential.own) io.out(ENROLLMENT_KEY_HINT);
    return EXIT.ok;
  },
});

const logout = command({
  usage: `countersign logout

Deletes the stored URL and API key (${configPath()}). The key itself stays
valid on the server; ask an admin to revoke it if it may have leaked.
`,
  offline: true,
  run: async ({ io }) => {
    const path = configPath();
    io.out((await removeStored(path)) ? `Removed ${path}.\n` : `Not signed in (no ${path}).\n`);
    return EXIT.ok;
  },
});

const whoami = command({
  usage: `countersign whoami [--json]

Shows the principal the configured API key belongs to, and where the URL and
key were read from.
`,
  options: { json: { type: 'boolean' } },
  run: async ({ io, client, url }, values) => {
    const me = await client.me();
    if (values.json) io.out(`${JSON.stringify(me, null, 2)}\n`);
    else
      io.out(
        renderFields([
          ['principal', `${me.name} (${me.role})`],
          ['id', me.id],
          ['api', url],
        ]),
      );
    return EXIT.ok;
  },
});

// ---------------------------------------------------------------------------
// approvals list / show, approve / reject / void
// ---------------------------------------------------------------------------

const STATES: readonly ApprovalState[] = ['pending', 'approved', 'rejected', 'expired', 'voided'];

const approvalsList = command({
  usage: `countersign approvals list [--state STATE|all] [--profile NAME] [--requester NAME|me]
                             [--certificate ID] [--limit N] [--cursor C] [--all] [--json]

The approval queue, newest first. Shows pending requests unless --state says otherwise.

Options:
  --state S        pending (default), approved, rejected, expired, voided, or all
  --profile P      only this profile (name or id)
  --requester R    only requests by this principal (name, id, or "me")
  --certificate ID only requests for this certificate
  --limit N        rows per page (1-500, default 50)
  --cursor C       continue from a previous page's cursor
  --all            follow every page
  --json           print the requests as JSON (the API's shape) instead of a table
`,
  options: {
    state: { type: 'string' },
    profile: { type: 'string' },
    requester: { type: 'string' },
    certificate: { type: 'string' },
    limit: { type: 'string' },
    cursor: { type: 'string' },
    all: { type: 'boolean' },
    json: { type: 'boolean' },
  },
  run: async ({ io, client }, values) => {
    const stateArg = str(values.state) ?? 'pending';
    if (stateArg !== 'all' && !STATES.includes(stateArg as ApprovalState)) {
      throw new CliUsageError(`--state must be one of ${STATES.join(', ')} or all`);
    }
    const limit = str(values.limit) === undefined ? 50 : Number(values.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 500)
      throw new CliUsageError('--limit must be a whole number from 1 to 500');
    const d = await directory(client);
    const query = {
      limit,
      ...(stateArg !== 'all' ? { state: stateArg as ApprovalState } : {}),
      ...(str(values.profile) ? { profile_id: findProfile(d, str(values.profile) ?? '').id } : {}),
      ...(str(values.requester) ? { requested_by: findPrincipalId(d, str(values.requester) ?? '') } : {}),
      ...(str(values.certificate) ? { certificate_id: requireId(str(values.certificate), '--certificate') } : {}),
      ...(str(values.cursor) ? { cursor: str(values.cursor) } : {}),
    };
    const items: Approval[] = [];
    let next: string | null = null;
    if (values.all) {
      for await (const page of client.pages(client.listApprovals, query)) items.push(...page);
    } else {
      const page = await client.listApprovals(query);
      items.push(...page.items);
      next = page.next_cursor;
    }
    if (values.json) {
      io.out(`${JSON.stringify({ items, next_cursor: next }, null, 2)}\n`);
      return EXIT.ok;
    }
    if (items.length === 0) {
      io.out(`No ${stateArg === 'all' ? '' : `${stateArg} `}approval requests.\n`);
      return EXIT.ok;
    }
    const now = new Date();
    const rows = items.map((a) => [
      a.id,
      a.state,
      principalName(d, a.requested_by),
      d.profiles.get(a.profile_id)?.name ?? a.profile_id,
      a.environment,
      namesText(a.domains, 2),
      votesSummary(a),
      relativeTime(a.requested_at, now),
      expiryText(a, now),
      a.justification.replace(/\s+/g, ' '),
    ]);
    const width = process.stdout.isTTY ? process.stdout.columns : undefined;
    io.out(
      renderTable(
        ['ID', 'STATE', 'REQUESTER', 'PROFILE', 'ENV', 'DOMAINS', 'VOTES', 'REQUESTED', 'EXPIRES', 'JUSTIFICATION'],
        rows,
        width ? { maxWidth: width, shrinkable: [9, 5, 3, 2] } : {},
      ),
    );
    io.out(
      `${items.length} request${items.length === 1 ? '' : 's'}${next ? `; more with --cursor ${next} (or --all)` : ''}\n`,
    );
    return EXIT.ok;
  },
});

function describeDiff(diff: ApprovalDiff): string {
  const lines: string[] = [];
  if (!diff.current) {
    lines.push(
      diff.kind === 'renewal'
        ? 'Renews a certificate that was never issued: nothing to compare.'
        : 'New certificate: nothing to compare.',
    );
    lines.push(`  names: ${diff.proposed.names.join(', ')}`);
    lines.push(`  key:   ${diff.proposed.key.algorithm} ${diff.proposed.key.spki_sha256.slice(0, 16)}…`);
    lines.push(`  valid: ${diff.proposed.validity_days} days once issued`);
    return `${lines.join('\n')}\n`;
  }
  lines.push(`Against the certificate it renews (serial ${diff.current.serial}):`);
  for (const n of diff.names_added) lines.push(`  + ${n}   (added)`);
  for (const n of diff.names_removed) lines.push(`  - ${n}   (removed)`);
  for (const n of diff.names_kept) lines.push(`    ${n}`);
  if (diff.common_name_changed)
    lines.push(`  common name: ${diff.current.common_name} -> ${diff.proposed.common_name}`);
  lines.push(
    diff.key_change === 'reused'
      ? `  key:   reused (${diff.proposed.key.algorithm} ${diff.proposed.key.spki_sha256.slice(0, 16)}…)`
      : `  key:   CHANGED ${diff.current.key.algorithm} ${diff.current.key.spki_sha256.slice(0, 16)}… -> ${diff.proposed.key.algorithm} ${diff.proposed.key.spki_sha256.slice(0, 16)}…`,
  );
  lines.push(
    `  valid: ${diff.current_validity_days ?? '?'} days (until ${diff.current.not_after}) -> ${diff.proposed.validity_days} days once issued`,
  );
  return `${lines.join('\n')}\n`;
}

const approvalsShow = command({
  usage: `countersign approvals show ID [--json]

One approval request: who asked, for which names, why, the votes so far, the
job's status and, for a renewal, what changes against the certificate it renews
(names added and removed, key reused or changed, validity).
`,
  options: { json: { type: 'boolean' } },
  positionals: { min: 1, max: 1 },
  run: async ({ io, client }, values, [idArg]) => {
    const id = requireId(idArg, 'ID');
    const [a, diff, d] = await Promise.all([client.getApproval(id), client.getApprovalDiff(id), directory(client)]);
    const job = await client.getJob(a.job_id);
    if (values.json) {
      io.out(`${JSON.stringify({ approval: a, diff, job }, null, 2)}\n`);
      return EXIT.ok;
    }
    const now = new Date();
    const profile = d.profiles.get(a.profile_id);
    const fields: [string, string][] = [
      ['request', a.id],
      ['state', a.state],
      ['kind', diff.kind],
      ['requester', `${principalName(d, a.requested_by)} (${a.requester_type})`],
      ['profile', `${profile?.name ?? a.profile_id} (${a.environment})`],
      ['domains', a.domains.join(', ')],
      ['justification', a.justification],
      ['requested', `${a.requested_at} (${relativeTime(a.requested_at, now)})`],
      ['expires', a.state === 'pending' ? `${a.expires_at} (${expiryText(a, now)})` : a.expires_at],
      ['votes', `${votesSummary(a)} approvals`],
      ['job', `${job.id} (${job.status}${job.error ? `: ${job.error}` : ''})`],
      ['certificate', a.certificate_id],
    ];
    if (a.decided_at) {
      fields.push([
        'decided',
        `${a.state} by ${principalName(d, a.decided_by ?? '')} at ${a.decided_at}${a.decision_note ? `: ${a.decision_note}` : ''}`,
      ]);
    }
    io.out(renderFields(fields));
    for (const v of a.votes) {
      io.out(`  vote: ${principalName(d, v.voter_id)} at ${v.voted_at}${v.note ? `: ${v.note}` : ''}\n`);
    }
    io.out(`\n${describeDiff(diff)}`);
    if (a.state === 'pending' && a.requested_by === d.me.id) {
      io.out('\nYou requested this: another approver has to decide it (two-person integrity).\n');
    }
    return EXIT.ok;
  },
});

function decisionSummary(a: Approval): string {
  switch (a.state) {
    case 'approved':
      return `Approved (${votesSummary(a)} votes). The job is released for issuance.\n`;
    case 'pending':
      return `Vote recorded (${votesSummary(a)}); waiting for ${a.approvals_required - a.votes.length} more approver(s).\n`;
    case 'rejected':
      return 'Rejected. The job is cancelled; nothing will be issued.\n';
    case 'voided':
      return 'Voided. The job is cancelled; nothing will be issued.\n';
    default:
      return `Request is ${a.state}.\n`;
  }
}

const approveCmd = command({
  usage: `countersign approve ID [--note TEXT]

Casts your approval of a pending request. It becomes approved once the
profile's required number of distinct approvers voted. The requester can never
approve their own request (two-person integrity; exit code 4).

Options:
  --note TEXT   why you approve (kept in the audit ledger)
`,
  options: { note: { type: 'string' } },
  positionals: { min: 1, max: 1 },
  run: async ({ io, client }, values, [idArg]) => {
    const note = str(values.note);
    const a = await client.approve(requireId(idArg, 'ID'), note ? { note } : {});
    io.out(decisionSummary(a));
    return EXIT.ok;
  },
});

const rejectCmd = command({
  usage: `countersign reject ID --note TEXT

Rejects a pending request; its job is cancelled and nothing is issued.
A note is required: the requester reads it.
`,
  options: { note: { type: 'string' } },
  positionals: { min: 1, max: 1 },
  run: async ({ io, client }, values, [idArg]) => {
    const note = str(values.note)?.trim();
    if (!note) throw new CliUsageError('--note is required: say why the request is rejected');
    const a = await client.reject(requireId(idArg, 'ID'), { note });
    io.out(decisionSummary(a));
    return EXIT.ok;
  },
});

const voidCmd = command({
  usage: `countersign void ID --reason TEXT

Voids a pending request (admins only); its job is cancelled. A reason is required.
`,
  options: { reason: { type: 'string' } },
  positionals: { min: 1, max: 1 },
  run: async ({ io, client }, values, [idArg]) => {
    const reason = str(values.reason)?.trim();
    if (!reason) throw new CliUsageError('--reason is required');
    const a = await client.voidApproval(requireId(idArg, 'ID'), { reason });
    io.out(decisionSummary(a));
    return EXIT.ok;
  },
});

// ---------------------------------------------------------------------------
// request / renew / wait
// ---------------------------------------------------------------------------

const fileSafe = (cn: string) => cn.replace(/^\*\./, 'wildcard.').replace(/[^a-zA-Z0-9.-]/g, '_');

/** Creates the key file 0600, refusing to replace an existing key unless forced. */
async function writePrivateKey(path: string, pem: string, force: boolean): Promise<void> {
  if (force) await rm(path, { force: true });
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(path, 'wx', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new CliUsageError(`${path} already exists; choose another --key-out or pass --force to replace it`);
    }
    throw new CliFailure(`cannot write the private key to ${path}: ${(err as Error).message}`, EXIT.error);
  }
  try {
    await fh.writeFile(pem);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

const KEY_TYPES = ['ecdsa-p256', 'rsa'] as const;

function keyType(v: string | undefined): (typeof KEY_TYPES)[number] {
  const t = v ?? 'ecdsa-p256';
  if (!(KEY_TYPES as readonly string[]).includes(t))
    throw new CliUsageError(`--key-type must be ${KEY_TYPES.join(' or ')}`);
  return t as (typeof KEY_TYPES)[number];
}

function printSubmitted(io: Io, job: Job, approval: Approval | null, certificateId: string): void {
  const fields: [string, string][] = [
    ['certificate', certificateId],
    ['job', `${job.id} (${job.status})`],
  ];
  if (approval) {
    fields.push([
      'approval',
      `${approval.id} (${approval.state}, needs ${approval.approvals_required} approval${approval.approvals_required === 1 ? '' : 's'}, expires ${expiryText(approval)})`,
    ]);
  } else {
    fields.push(['approval', 'not required by this profile']);
  }
  io.out(renderFields(fields));
}

const WAIT_OPTIONS: Options = {
  wait: { type: 'boolean' },
  out: { type: 'string' },
  timeout: { type: 'string' },
  interval: { type: 'string' },
};

const request = command({
  usage: `countersign request --profile P --cn NAME [--san NAME ...] --justification TEXT
                    [--key-out FILE] [--csr-out FILE] [--key-type ecdsa-p256|rsa] [--force]
                    [--idempotency-key K] [--wait [--out FILE]] [--json]

Asks for a new certificate. The key pair and the CSR are generated here; only
the CSR is sent, so the private key never leaves this machine. The key is
written with mode 0600 (default ./NAME.key.pem) and never overwritten unless
--force is given.

Options:
  --profile P          trust profile, by name or id
  --cn NAME            common name (also sent as the first DNS name)
  --san NAME           another DNS name; repeat for more
  --justification T    why (required by profiles that need approval; approvers read it)
  --key-out FILE       where to write the private key (default ./NAME.key.pem)
  --csr-out FILE       also keep the CSR
  --key-type T         ecdsa-p256 (default) or rsa (2048)
  --idempotency-key K  retrying with the same key returns the first answer (default: random)
  --wait               then wait for issuance and write the chain (see 'countersign wait --help')
  --out FILE           with --wait: where to write the PEM chain (default ./NAME.pem)
  --json               print the API's answer as JSON
`,
  options: {
    profile: { type: 'string' },
    cn: { type: 'string' },
    san: { type: 'string', multiple: true },
    justification: { type: 'string' },
    'key-out': { type: 'string' },
    'csr-out': { type: 'string' },
    'key-type': { type: 'string' },
    force: { type: 'boolean' },
    'idempotency-key': { type: 'string' },
    json: { type: 'boolean' },
    ...WAIT_OPTIONS,
  },
  run: async (ctx, values) => {
    const { io, client } = ctx;
    const cn = str(values.cn)?.trim().toLowerCase();
    const profileArg = str(values.profile);
    if (!profileArg) throw new CliUsageError('--profile is required');
    if (!cn) throw new CliUsageError('--cn is required');
    const sans = [...new Set(strs(values.san).map((s) => s.trim().toLowerCase()))].filter((s) => s && s !== cn);
    const type = keyType(str(values['key-type']));
    const d = await directory(client);
    const profile = findProfile(d, profileArg);
    const justification = str(values.justification)?.trim();
    if (profile.requires_approval && !justification) {
      throw new CliUsageError(
        `--justification is required: profile ${profile.name} needs approval and approvers read it`,
      );
    }
    const keyPath = str(values['key-out']) ?? `${fileSafe(cn)}.key.pem`;
    const generated = await generateKeyAndCsr({ commonName: cn, dnsNames: [cn, ...sans], keyAlgorithm: type });
    await writePrivateKey(keyPath, generated.privateKeyPem, values.force === true);
    let result: Awaited<ReturnType<CountersignClient['requestCertificate']>>;
    try {
      result = await client.requestCertificate(
        {
          profile_id: profile.id,
          common_name: cn,
          sans,
          csr: generated.csrPem,
          ...(justification ? { justification } : {}),
        },
        { idempotencyKey: str(values['idempotency-key']) ?? `cli-${randomUUID()}` },
      );
    } catch (err) {
      // The key belongs to a CSR the server refused; keeping it would only confuse.
      await rm(keyPath, { force: true });
      throw err;
    }
    const csrOut = str(values['csr-out']);
    if (csrOut) await writeFile(csrOut, generated.csrPem);
    if (values.json) {
      io.out(`${JSON.stringify({ ...result, key_path: keyPath }, null, 2)}\n`);
    } else {
      io.out(`Private key written to ${keyPath} (mode 0600); it never left this machine.\n`);
      printSubmitted(io, result.job, result.approval, result.certificate.id);
    }
    if (values.wait) return waitForJob(ctx, result.job.id, values, `${fileSafe(cn)}.pem`);
    if (!values.json) io.out(`Next: countersign wait ${result.job.id} --out ${fileSafe(cn)}.pem\n`);
    return EXIT.ok;
  },
});

const renew = command({
  usage: `countersign renew CERT --justification TEXT [--new-key [--key-out FILE] [--key-type T] [--force]]
                  [--idempotency-key K] [--wait [--out FILE]] [--json]

Asks for a renewal of certificate CERT (an id). Without --new-key the previous
public key is reused; with it, a new key and CSR for the same names are made
here and the key is written with mode 0600.

Options:
  --justification T    why (approvers read it)
  --new-key            rotate the key
  --key-out FILE       with --new-key: where to write it (default ./NAME.key.pem)
  --wait, --out FILE   wait for issuance and write the chain
  --json               print the API's answer as JSON
`,
  options: {
    justification: { type: 'string' },
    'new-key': { type: 'boolean' },
    'key-out': { type: 'string' },
    'key-type': { type: 'string' },
    force: { type: 'boolean' },
    'idempotency-key': { type: 'string' },
    json: { type: 'boolean' },
    ...WAIT_OPTIONS,
  },
  positionals: { min: 1, max: 1 },
  run: async (ctx, values, [certArg]) => {
    const { io, client } = ctx;
    const id = requireId(certArg, 'CERT');
    const cert = await client.getCertificate(id);
    const justification = str(values.justification)?.trim();
    let keyPath: string | null = null;
    let csr: string | undefined;
    if (values['new-key']) {
      keyPath = str(values['key-out']) ?? `${fileSafe(cert.common_name)}.key.pem`;
      const g = await generateKeyAndCsr({
        commonName: cert.common_name,
        dnsNames: [...new Set([cert.common_name, ...cert.sans])],
        keyAlgorithm: keyType(str(values['key-type'])),
      });
      await writePrivateKey(keyPath, g.privateKeyPem, values.force === true);
      csr = g.csrPem;
    }
    let result: Awaited<ReturnType<CountersignClient['renewCertificate']>>;
    try {
      result = await client.renewCertificate(
        id,
        { ...(justification ? { justification } : {}), ...(csr ? { csr } : {}) },
        { idempotencyKey: str(values['idempotency-key']) ?? `cli-${randomUUID()}` },
      );
    } catch (err) {
      if (keyPath) await rm(keyPath, { force: true });
      throw err;
    }
    if (values.json) {
      io.out(`${JSON.stringify({ ...result, key_path: keyPath }, null, 2)}\n`);
    } else {
      io.out(
        keyPath ? `New private key written to ${keyPath} (mode 0600).\n` : 'Renewing with the current public key.\n',
      );
      printSubmitted(io, result.job, result.approval, id);
    }
    if (values.wait) return waitForJob(ctx, result.job.id, values, `${fileSafe(cert.common_name)}.pem`);
    if (!values.json) io.out(`Next: countersign wait ${result.job.id} --out ${fileSafe(cert.common_name)}.pem\n`);
    return EXIT.ok;
  },
});

const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const STATUS_WORDS: Record<string, string> = {
  awaiting_approval: 'awaiting approval',
  pending: 'approved, queued for issuance',
  running: 'being signed',
  completed: 'issued',
  failed: 'failed',
  cancelled: 'cancelled',
};

async function waitForJob(ctx: Context, jobId: string, values: Values, defaultOut: string): Promise<number> {
  const { io, client } = ctx;
  const timeoutMs = durationOption(str(values.timeout), 'timeout', 30 * 60_000);
  const intervalMs = durationOption(str(values.interval), 'interval', 2_000);
  const tty = process.stderr.isTTY === true;
  const started = Date.now();
  let lastLine = '';
  let frame = 0;
  let job = await client.getJob(jobId);
  let approval: Approval | null = null;
  for (;;) {
    if (job.status === 'awaiting_approval' || (job.status === 'cancelled' && job.requires_approval)) {
      const page = await client.listApprovals({ certificate_id: job.certificate_id, limit: 20 });
      approval = page.items.find((a) => a.job_id === job.id) ?? approval;
    }
    const detail =
      job.status === 'awaiting_approval' && approval
        ? ` (${votesSummary(approval)} votes, expires ${expiryText(approval)})`
        : '';
    const line = `job ${job.id}: ${STATUS_WORDS[job.status] ?? job.status}${detail}`;
    if (tty) {
      const spin = SPINNER[frame++ % SPINNER.length] ?? '*';
      io.err(`\r\x1b[2K${spin} ${line}  ${humanDuration(Date.now() - started)}`);
    } else if (line !== lastLine) {
      io.err(`${line}\n`);
    }
    lastLine = line;
    if (['completed', 'failed', 'cancelled'].includes(job.status)) break;
    if (Date.now() - started >= timeoutMs) {
      if (tty) io.err('\n');
      throw new CliFailure(
        `gave up after ${humanDuration(timeoutMs)}: job ${job.id} is still ${STATUS_WORDS[job.status] ?? job.status}; run 'countersign wait ${job.id}' again later`,
        EXIT.timeout,
      );
    }
    await new Promise((r) => setTimeout(r, intervalMs));
    job = await client.getJob(jobId);
  }
  if (tty) io.err('\n');
  if (job.status === 'failed') {
    throw new CliFailure(`job ${job.id} failed: ${job.error ?? 'no reason recorded'}`, EXIT.error);
  }
  if (job.status === 'cancelled') {
    const why = approval?.decided_at
      ? `the request was ${approval.state}${approval.decision_note ? `: ${approval.decision_note}` : ''}`
      : (job.error ?? 'the request was cancelled');
    throw new CliFailure(`job ${job.id} was cancelled, nothing was issued: ${why}`, EXIT.error);
  }
  const [pem, cert] = await Promise.all([
    client.getCertificatePem(job.certificate_id),
    client.getCertificate(job.certificate_id),
  ]);
  const version = cert.versions?.find((v) => v.job_id === job.id);
  const leaf = new X509Certificate(pem);
  const bareSerial = (s: string) => s.toLowerCase().replace(/^0+/, '');
  if (version && bareSerial(leaf.serialNumber) !== bareSerial(version.serial)) {
    io.err(
      `countersign: warning: a newer version of this certificate exists; writing the current one (serial ${leaf.serialNumber})\n`,
    );
  }
  const out = str(values.out) ?? defaultOut;
  if (out === '-') {
    io.out(pem);
  } else {
    await writeFile(out, pem, { mode: 0o644 });
    io.out(
      `Issued: serial ${version?.serial ?? leaf.serialNumber}, valid until ${leaf.validTo}.\nWrote the PEM chain (leaf, then issuing chain) to ${out}.\n`,
    );
  }
  return EXIT.ok;
}

const wait = command({
  usage: `countersign wait JOB [--out FILE|-] [--timeout 30m] [--interval 2s]

Waits for a job to finish, showing its progress (votes and expiry while it
awaits approval), then writes the certificate's PEM chain: leaf first, then
the issuing chain. Exits 1 if the job failed or its request was rejected,
voided or expired, and 5 if --timeout passes first.

Options:
  --out FILE     where to write the chain (default ./NAME.pem; "-" for standard output)
  --timeout D    give up after D (default 30m)
  --interval D   poll every D (default 2s)
`,
  options: { out: { type: 'string' }, timeout: { type: 'string' }, interval: { type: 'string' } },
  positionals: { min: 1, max: 1 },
  run: async (ctx, values, [jobArg]) => {
    const id = requireId(jobArg, 'JOB');
    // Validate the options before the first request, so a typo fails fast with exit 2.
    durationOption(str(values.timeout), 'timeout', 1);
    durationOption(str(values.interval), 'interval', 1);
    const job = await ctx.client.getJob(id);
    return waitForJob(ctx, id, values, `${fileSafe(job.common_name)}.pem`);
  },
});

// ---------------------------------------------------------------------------
// audit verify (online)
// ---------------------------------------------------------------------------

export const AUDIT_VERIFY_USAGE = `countersign audit verify [--json]

Asks the api to verify the org's audit hash chain and shows the result with
the latest signed checkpoint. Exits 1 when the chain is broken, naming the
first bad record. (Admins and auditors only.)
`;

async function latestCheckpoint(client: CountersignClient): Promise<AuditCheckpoint | null> {
  try {
    let best: AuditCheckpoint | null = null;
    for await (const items of client.pages(client.listAuditCheckpoints, { limit: 500 }, 20)) {
      for (const c of items) if (!best || BigInt(c.seq) > BigInt(best.seq)) best = c;
    }
    return best;
  } catch (e) {
    if (e instanceof ApiError && e.routeMissing) return null;
    throw e;
  }
}

export const auditVerifyOnline = command({
  usage: AUDIT_VERIFY_USAGE,
  options: { json: { type: 'boolean' } },
  run: async ({ io, client }, values) => {
    const result = await client.verifyAudit();
    const checkpoint = await latestCheckpoint(client);
    if (values.json) {
      io.out(`${JSON.stringify({ ...result, latest_checkpoint: checkpoint }, null, 2)}\n`);
    } else if (result.ok) {
      io.out(
        `Audit chain OK: ${result.checked} record${Number(result.checked) === 1 ? '' : 's'} checked; head seq ${result.head.seq}, hash ${result.head.hash}.\n`,
      );
    } else {
      io.out(
        `Audit chain BROKEN at record ${result.first_bad_seq}${result.reason ? `: ${result.reason}` : ''} (${result.checked} checked).\n`,
      );
    }
    if (!values.json) {
      io.out(
        checkpoint
          ? `Latest checkpoint: seq ${checkpoint.seq} at ${checkpoint.at}, head ${checkpoint.head_hash}, signed by key ${checkpoint.key_id}.\n`
          : 'No signed checkpoint yet.\n',
      );
    }
    return result.ok ? EXIT.ok : EXIT.error;
  },
});

const approvalsGroup = async (argv: string[]): Promise<number> => {
  const usage =
    "countersign approvals list|show ...\n\nRun 'countersign approvals list --help' or 'countersign approvals show --help'.\n";
  if (argv.includes('--help') || argv.includes('-h')) {
    processIo.out(usage);
    return EXIT.ok;
  }
  processIo.err(`countersign: ${argv[0] ? `unknown subcommand "${argv[0]}"` : 'missing subcommand'}\n\n${usage}`);
  return EXIT.usage;
};

export const APPROVER_HELP = `Approver and requester commands (talk to the API):
  login            store the API URL and key (~/.config/countersign/config.json, 0600)
  logout           forget them
  whoami           show who the key belongs to
  approvals list   the approval queue as a table (filters, --json)
  approvals show   one request, its votes and what a renewal changes
  approve ID       approve (--note)          reject ID   reject (--note required)
  void ID          void (admin, --reason)
  request          new certificate: key and CSR made locally, key written 0600
  renew CERT       renew (reuse the key, or --new-key)
  wait JOB         wait for issuance, then write the PEM chain
  audit verify     verify the audit hash chain (online)

${EXIT_CODES_HELP}`;

export const approverCommands: Record<string, (argv: string[]) => Promise<number>> = {
  login,
  logout,
  whoami,
  approvals: approvalsGroup,
  'approvals list': approvalsList,
  'approvals show': approvalsShow,
  approve: approveCmd,
  reject: rejectCmd,
  void: voidCmd,
  request,
  renew,
  wait,
  'audit verify': auditVerifyOnline,
};
