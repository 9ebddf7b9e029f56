import { CONFIG_REQUEST_CHECKS, type ConfigRequest, expiryText, relativeTime } from '@countersign/client';
import { command, type Directory, directory, principalName, requireId, str } from './approver-commands.ts';
import { CliUsageError, EXIT, type Io, renderFields, renderTable } from './cli-output.ts';

/**
 * Configuration requests (SPEC §1.6): once an org is two-person ready, every
 * change that could weaken the gate waits for a second admin. Admins decide
 * here, with their own key, never on a request they made or one made by an
 * admin they created (or that created them); auditors read.
 */

const STATES: readonly ConfigRequest['state'][] = ['pending', 'approved', 'rejected', 'expired', 'cancelled'];

const actorName = (d: Directory, id: string | null): string =>
  !id ? '—' : id.startsWith('system-') ? id : principalName(d, id);

/** What the 202 of a gated change means, printed where the change was asked for. */
export function printPending(io: Io, r: ConfigRequest): void {
  io.out(
    `This change waits for a second admin: configuration request ${r.id}\n` +
      `  ${r.summary}\n` +
      `  expires ${expiryText(r)}; another admin approves it with: countersign config approve ${r.id}\n` +
      `  (you can withdraw it with: countersign config cancel ${r.id} --reason TEXT)\n`,
  );
}

function decisionText(r: ConfigRequest): string {
  switch (r.state) {
    case 'approved':
      return `Approved and applied: ${r.summary}\n`;
    case 'rejected':
      return `Rejected: nothing changes (${r.summary}).\n`;
    case 'cancelled':
      return `Cancelled: nothing changes (${r.summary}).\n`;
    default:
      return `Configuration request is ${r.state}.\n`;
  }
}

const configList = command({
  usage: `countersign config list [--state STATE|all] [--limit N] [--cursor C] [--all] [--json]

Configuration requests, newest first: changes that could weaken the gate, waiting
for (or decided by) a second admin. Pending ones unless --state says otherwise.
Admins and auditors only.

Options:
  --state S    pending (default), approved, rejected, expired, cancelled, or all
  --limit N    rows per page (1-500, default 50)
  --cursor C   continue from a previous page's cursor
  --all        follow every page
  --json       print the requests as JSON (the API's shape) instead of a table
`,
  options: {
    state: { type: 'string' },
    limit: { type: 'string' },
    cursor: { type: 'string' },
    all: { type: 'boolean' },
    json: { type: 'boolean' },
  },
  run: async ({ io, client }, values) => {
    const stateArg = str(values.state) ?? 'pending';
    if (stateArg !== 'all' && !STATES.includes(stateArg as ConfigRequest['state'])) {
      throw new CliUsageError(`--state must be one of ${STATES.join(', ')} or all`);
    }
    const limit = str(values.limit) === undefined ? 50 : Number(values.limit);
    if (!Number.isInteger(limit) || limit < 1 || limit > 500)
      throw new CliUsageError('--limit must be a whole number from 1 to 500');
    const query = {
      limit,
      ...(stateArg !== 'all' ? { state: stateArg as ConfigRequest['state'] } : {}),
      ...(str(values.cursor) ? { cursor: str(values.cursor) } : {}),
    };
    const items: ConfigRequest[] = [];
    let next: string | null = null;
    if (values.all) {
      for await (const page of client.pages(client.listConfigRequests, query)) items.push(...page);
    } else {
      const page = await client.listConfigRequests(query);
      items.push(...page.items);
      next = page.next_cursor;
    }
    if (values.json) {
      io.out(`${JSON.stringify({ items, next_cursor: next }, null, 2)}\n`);
      return EXIT.ok;
    }
    if (items.length === 0) {
      io.out(`No ${stateArg === 'all' ? '' : `${stateArg} `}configuration requests.\n`);
      return EXIT.ok;
    }
    const d = await directory(client);
    const now = new Date();
    const rows = items.map((r) => [
      r.id,
      r.state,
      r.kind,
      r.summary.replace(/\s+/g, ' '),
      actorName(d, r.requested_by),
      relativeTime(r.requested_at, now),
      expiryText(r, now),
      r.justification.replace(/\s+/g, ' '),
    ]);
    const width = process.stdout.isTTY ? process.stdout.columns : undefined;
    io.out(
      renderTable(
        ['ID', 'STATE', 'KIND', 'SUMMARY', 'REQUESTER', 'REQUESTED', 'EXPIRES', 'JUSTIFICATION'],
        rows,
        width ? { maxWidth: width, shrinkable: [7, 3] } : {},
      ),
    );
    io.out(
      `${items.length} request${items.length === 1 ? '' : 's'}${next ? `; more with --cursor ${next} (or --all)` : ''}\n`,
    );
    return EXIT.ok;
  },
});

const configShow = command({
  usage: `countersign config show ID [--json]

One configuration request: what it changes (exactly as it will be applied),
who asked and why, its expiry, and what to check before approving it.
`,
  options: { json: { type: 'boolean' } },
  positionals: { min: 1, max: 1 },
  run: async ({ io, client }, values, [idArg]) => {
    const r = await client.getConfigRequest(requireId(idArg, 'ID'));
    if (values.json) {
      io.out(`${JSON.stringify(r, null, 2)}\n`);
      return EXIT.ok;
    }
    const d = await directory(client);
    const now = new Date();
    const fields: [string, string][] = [
      ['request', r.id],
      ['state', r.state],
      ['kind', r.kind],
      ['summary', r.summary],
      ['target', r.target_id],
      ['requester', actorName(d, r.requested_by)],
      ['justification', r.justification],
      ['requested', `${r.requested_at} (${relativeTime(r.requested_at, now)})`],
      ['expires', r.state === 'pending' ? `${r.expires_at} (${expiryText(r, now)})` : r.expires_at],
    ];
    if (r.decided_at) {
      fields.push([
        'decided',
        `${r.state} by ${actorName(d, r.decided_by)} at ${r.decided_at}${r.decision_note ? `: ${r.decision_note}` : ''}`,
      ]);
    }
    io.out(renderFields(fields));
    io.out(`\nThe change, as it will be applied:\n${indent(JSON.stringify(r.change, null, 2))}\n`);
    if (r.state === 'pending') {
      io.out(`\nBefore you approve: ${CONFIG_REQUEST_CHECKS[r.kind] ?? 'read the change above with its requester.'}\n`);
      if (r.requested_by === d.me.id) {
        io.out('You asked for this change: another admin has to approve it (two-person integrity).\n');
      }
    }
    return EXIT.ok;
  },
});

const indent = (text: string): string =>
  text
    .split('\n')
    .map((l) => `  ${l}`)
    .join('\n');

const configApprove = command({
  usage: `countersign config approve ID [--note TEXT]

Approves a configuration request and applies the change in the same step. Only
another admin than the requester, signed in with its own key (not an enrollment
key), and neither created by the requester nor its creator (exit code 4 otherwise).
Read it first: 'countersign config show ID'.

Options:
  --note TEXT   why you approve (kept in the audit ledger)
`,
  options: { note: { type: 'string' } },
  positionals: { min: 1, max: 1 },
  run: async ({ io, client }, values, [idArg]) => {
    const note = str(values.note)?.trim();
    const r = await client.approveConfigRequest(requireId(idArg, 'ID'), note || undefined);
    io.out(decisionText(r));
    return EXIT.ok;
  },
});

const configReject = command({
  usage: `countersign config reject ID --note TEXT

Rejects a configuration request; nothing changes. A note is required: the
requesting admin reads it.
`,
  options: { note: { type: 'string' } },
  positionals: { min: 1, max: 1 },
  run: async ({ io, client }, values, [idArg]) => {
    const note = str(values.note)?.trim();
    if (!note) throw new CliUsageError('--note is required: say why the change is rejected');
    const r = await client.rejectConfigRequest(requireId(idArg, 'ID'), note);
    io.out(decisionText(r));
    return EXIT.ok;
  },
});

const configCancel = command({
  usage: `countersign config cancel ID --reason TEXT

Withdraws a pending configuration request (your own, or any as an admin);
nothing changes. A reason is required.
`,
  options: { reason: { type: 'string' } },
  positionals: { min: 1, max: 1 },
  run: async ({ io, client }, values, [idArg]) => {
    const reason = str(values.reason)?.trim();
    if (!reason) throw new CliUsageError('--reason is required');
    const r = await client.cancelConfigRequest(requireId(idArg, 'ID'), reason);
    io.out(decisionText(r));
    return EXIT.ok;
  },
});

export const CONFIG_HELP = `  config list         configuration requests waiting for a second admin (--state, --json)
  config show ID      one request: the change as it will be applied, and what to check
  config approve ID   approve and apply it (another admin, with an own key; --note)
  config reject ID    reject it (--note required)
  config cancel ID    withdraw it (--reason required)
`;

/** `countersign keys`, `countersign config`: the bare group word prints where to look. */
export function group(name: string, subcommands: string[]) {
  const usage = `countersign ${name} ${subcommands.join('|')} ...\n\n${subcommands
    .map((s) => `Run 'countersign ${name} ${s} --help'.`)
    .join('\n')}\n`;
  return async (argv: string[]): Promise<number> => {
    if (argv.includes('--help') || argv.includes('-h')) {
      process.stdout.write(usage);
      return EXIT.ok;
    }
    process.stderr.write(
      `countersign: ${argv[0] ? `unknown subcommand "${argv[0]}"` : 'missing subcommand'}\n\n${usage}`,
    );
    return EXIT.usage;
  };
}

export const configCommands: Record<string, (argv: string[]) => Promise<number>> = {
  config: group('config', ['list', 'show', 'approve', 'reject', 'cancel']),
  'config list': configList,
  'config show': configShow,
  'config approve': configApprove,
  'config reject': configReject,
  'config cancel': configCancel,
};
