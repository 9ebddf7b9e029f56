import { hostname } from 'node:os';
import { type ApiKeyInfo, CountersignClient, isPendingConfiguration, type Me, relativeTime } from '@countersign/client';
import {
  command,
  type Directory,
  directory,
  findPrincipalId,
  principalName,
  readSecretFromStdin,
  requireId,
  str,
  USER_AGENT,
} from './approver-commands.ts';
import { configPath, readStored, type StoredConfig, writeStored } from './cli-config.ts';
import { CliFailure, CliUsageError, EXIT, type Io, renderFields, renderTable } from './cli-output.ts';
import { CONFIG_HELP, group, printPending } from './config-commands.ts';

/**
 * Who you are to the API and which of your keys may decide (SPEC §1.6): an
 * enrollment key (made for you by an admin or the bootstrap) reads, requests
 * and mints your own key once; only your own key votes and decides.
 */

// ---------------------------------------------------------------------------
// enroll
// ---------------------------------------------------------------------------

/** The URL and the key, found the way `countersign login` finds them. */
async function urlAndKey(io: Io, values: Record<string, unknown>, what: string) {
  const stored = (await readStored(configPath())).config;
  const given = typeof values.url === 'string' ? values.url : undefined;
  const url = (given ?? process.env.COUNTERSIGN_URL ?? stored?.url ?? '').trim();
  if (!url) throw new CliUsageError('give the api URL with --url');
  if (!/^https?:\/\/[^/\s]+/i.test(url)) throw new CliUsageError(`--url must be an http(s) URL, got "${url}"`);
  let key: string;
  if (values['key-stdin']) key = await readSecretFromStdin(io, what);
  else if (process.env.COUNTERSIGN_API_KEY?.trim()) key = process.env.COUNTERSIGN_API_KEY.trim();
  else if (process.stdin.isTTY) key = await readSecretFromStdin(io, what);
  else throw new CliUsageError(`no ${what}: pipe it with --key-stdin or set COUNTERSIGN_API_KEY`);
  if (!key) throw new CliUsageError(`the ${what} is empty`);
  return { url, key };
}

function expiresAtOption(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const at = new Date(value);
  if (!/^\d{4}-\d{2}-\d{2}/.test(value) || Number.isNaN(at.getTime())) {
    throw new CliUsageError(`--expires-at must be a date and time like 2026-12-31T00:00:00Z, got "${value}"`);
  }
  if (at.getTime() <= Date.now()) throw new CliUsageError('--expires-at must be in the future');
  return at.toISOString();
}

/** A creator as a person reads it: a principal's name when this key may list them, else the id. */
async function creatorName(client: CountersignClient, me: Me, createdBy: string): Promise<string> {
  if (createdBy === me.id) return `${me.name} (you)`;
  if (createdBy === 'system-bootstrap') return 'the installation (countersign bootstrap or admin add)';
  if (createdBy.startsWith('system-')) return createdBy;
  try {
    const page = await client.listPrincipals({ limit: 500 });
    return page.items.find((p) => p.id === createdBy)?.name ?? createdBy;
  } catch {
    // Requesters may not list principals; the id is still an answer.
    return createdBy;
  }
}

const storedFor = (baseUrl: string, key: string, me: Me): StoredConfig => ({
  url: baseUrl,
  api_key: key,
  principal: { id: me.id, name: me.name, role: me.role },
  saved_at: new Date().toISOString(),
});

function envKeyWarning(io: Io): void {
  if (process.env.COUNTERSIGN_API_KEY?.trim()) {
    io.err(
      'countersign: warning: COUNTERSIGN_API_KEY is set and overrides the stored key; unset it so the CLI uses your own key.\n',
    );
  }
}

const enroll = command({
  usage: `countersign enroll [--url URL] [--key-stdin] [--name NAME] [--expires-at TIME] [--json]

Turns the enrollment key an admin (or 'countersign bootstrap') gave you into a
key of your own. It shows whose enrollment key it is, mints your own key with
it, and stores the new key where 'countersign login' does
(${configPath()}, mode 0600).
Only your own key can approve or reject; an enrollment key mints once and is
spent afterwards. A key that already is your own is stored as 'login' would.

The enrollment key is read, in this order, from --key-stdin (piped),
COUNTERSIGN_API_KEY, or a hidden prompt.

Options:
  --url URL          the api, e.g. http://127.0.0.1:8080 (default: COUNTERSIGN_URL or the stored URL)
  --key-stdin        read the enrollment key from standard input
  --name NAME        a label for your new key (default: "countersign enroll on HOST")
  --expires-at TIME  when your new key stops working, e.g. 2026-12-31T00:00:00Z (default: never)
  --json             print the outcome as JSON (never the key)
`,
  options: {
    url: { type: 'string' },
    'key-stdin': { type: 'boolean' },
    name: { type: 'string' },
    'expires-at': { type: 'string' },
    json: { type: 'boolean' },
  },
  offline: true,
  run: async ({ io }, values) => {
    const expiresAt = expiresAtOption(str(values['expires-at']));
    const name = (str(values.name) ?? `countersign enroll on ${hostname()}`).trim().slice(0, 200);
    if (!name) throw new CliUsageError('--name must not be empty');
    const { url, key } = await urlAndKey(io, values, 'Enrollment key');
    const client = new CountersignClient({ baseUrl: url, apiKey: key, userAgent: USER_AGENT });
    const me = await client.me();
    const path = configPath();

    if (me.credential.own) {
      await writeStored(path, storedFor(client.baseUrl, key, me));
      if (values.json) {
        io.out(`${JSON.stringify({ principal: me, enrolled: false, already_own: true, stored_in: path }, null, 2)}\n`);
      } else {
        io.out(
          `This key is already ${me.name}'s own key (${me.role}): it can vote and decide, so there is nothing to enroll.\n` +
            `Signed in to ${client.baseUrl} as ${me.name}. Key stored in ${path} (mode 0600).\n`,
        );
      }
      envKeyWarning(io);
      return EXIT.ok;
    }

    const madeBy = await creatorName(client, me, me.credential.created_by);
    if (!values.json) {
      io.out(
        `Enrollment key of ${me.name} (${me.role}) at ${client.baseUrl}, made by ${madeBy}.\nMinting your own key…\n`,
      );
    }
    // A refusal here (already used, expired) is the server's to explain: reportApiError prints it.
    const created = await client.mintOwnApiKey({ name, ...(expiresAt ? { expires_at: expiresAt } : {}) });
    // The new key exists only in this answer: store it before anything else can fail.
    try {
      await writeStored(path, storedFor(client.baseUrl, created.key, me));
    } catch (err) {
      io.out(`Your own key (shown once; store it now):\n  ${created.key}\n`);
      throw new CliFailure(
        `could not store it in ${path} (${err instanceof Error ? err.message : String(err)}); store the key above yourself, e.g. with 'countersign login --key-stdin'`,
        EXIT.error,
      );
    }
    const check = await new CountersignClient({
      baseUrl: client.baseUrl,
      apiKey: created.key,
      userAgent: USER_AGENT,
    }).me();
    if (check.id !== me.id || !check.credential.own) {
      throw new CliFailure(
        `the server did not confirm key ${created.id} as ${me.name}'s own key; it is stored in ${path}, but check it with 'countersign keys list' and tell an admin`,
        EXIT.error,
      );
    }
    if (values.json) {
      io.out(
        `${JSON.stringify(
          {
            principal: check,
            enrolled: true,
            key_id: created.id,
            name: created.name,
            expires_at: created.expires_at,
            stored_in: path,
            enrollment_key_id: me.credential.id,
            enrollment_key: 'spent',
          },
          null,
          2,
        )}\n`,
      );
    } else {
      io.out(
        `Minted your own key ${created.id} ("${created.name ?? name}"${created.expires_at ? `, expires ${created.expires_at}` : ''}).\n` +
          `Stored in ${path} (mode 0600): the CLI now signs in with it, and it can vote and decide.\n` +
          `The enrollment key ${me.credential.id} is now spent: it cannot mint another key.\n` +
          `It still reads and requests as ${me.name} until revoked; revoke it now: countersign keys revoke ${me.credential.id}\n`,
      );
    }
    envKeyWarning(io);
    return EXIT.ok;
  },
});

// ---------------------------------------------------------------------------
// keys list / mint / revoke
// ---------------------------------------------------------------------------

function keyState(k: ApiKeyInfo, now: Date): string {
  if (k.revoked_at) return `revoked ${relativeTime(k.revoked_at, now)}`;
  if (k.expires_at && new Date(k.expires_at).getTime() <= now.getTime())
    return `expired ${relativeTime(k.expires_at, now)}`;
  return k.expires_at ? `active, expires ${relativeTime(k.expires_at, now)}` : 'active';
}

function keyPurpose(k: ApiKeyInfo, now: Date): string {
  if (k.purpose === 'own') return 'own';
  return k.enrollment_used_at ? `enrollment (spent ${relativeTime(k.enrollment_used_at, now)})` : 'enrollment (unused)';
}

const actorName = (d: Directory, id: string): string =>
  id === 'system-bootstrap' ? 'installation' : id.startsWith('system-') ? id : principalName(d, id);

const keysList = command({
  usage: `countersign keys list [--principal NAME|ID|me] [--json]

The API keys of a principal (yours unless --principal names another; admins and
auditors may list anyone's), newest first, never their secrets. PURPOSE says
which may decide: "own" keys vote and decide; "enrollment" keys, made for the
principal by someone else, read, request and mint the principal's own key once.
The key this command signed in with is marked with *.
`,
  options: { principal: { type: 'string' }, json: { type: 'boolean' } },
  run: async ({ io, client }, values) => {
    const d = await directory(client);
    const me = d.me as Me;
    const principalId = findPrincipalId(d, str(values.principal) ?? 'me');
    const { items } = await client.listApiKeys(principalId);
    if (values.json) {
      io.out(`${JSON.stringify({ items }, null, 2)}\n`);
      return EXIT.ok;
    }
    const who = principalName(d, principalId);
    if (items.length === 0) {
      io.out(`${who} has no API keys.\n`);
      return EXIT.ok;
    }
    const now = new Date();
    const current = me.credential?.kind === 'api_key' ? me.credential.id : null;
    const rows = items.map((k) => [
      `${k.id}${k.id === current ? ' *' : ''}`,
      keyPurpose(k, now),
      k.name ?? '',
      actorName(d, k.created_by),
      relativeTime(k.created_at, now),
      keyState(k, now),
    ]);
    io.out(`API keys of ${who}:\n`);
    io.out(renderTable(['ID', 'PURPOSE', 'NAME', 'CREATED BY', 'CREATED', 'STATE'], rows));
    if (items.some((k) => k.id === current)) io.out('* the key this command signed in with\n');
    const usable = items.some((k) => k.purpose === 'own' && !k.revoked_at);
    if (principalId === me.id && !usable) {
      io.out("You have no own key yet: run 'countersign enroll' with your enrollment key to mint one.\n");
    }
    return EXIT.ok;
  },
});

const keysMint = command({
  usage: `countersign keys mint [--name NAME] [--expires-at TIME] [--json]
countersign keys mint --for NAME|ID [--name NAME] [--expires-at TIME] [--justification TEXT] [--json]

Without --for: mints a new key of your own with the key you are signed in with
(to rotate, or on a second machine). An enrollment key mints once. The key is
printed once and not stored: 'countersign login --key-stdin' stores it.

With --for (admins): an enrollment key for another principal, to hand to that
person, who runs 'countersign enroll' with it. It can read, request and mint
their own key, never decide. Once the org is two-person ready this waits for
another admin: you get a configuration request, and the key, shown now, works
only once another admin approves it.

Options:
  --name NAME           a label for the key
  --expires-at TIME     when it stops working, e.g. 2026-12-31T00:00:00Z (default: never)
  --for P               another principal (name or id): make an enrollment key for it
  --justification TEXT  with --for: why, for the admin who approves it
  --json                print the API's answer as JSON (it holds the key)
`,
  options: {
    name: { type: 'string' },
    'expires-at': { type: 'string' },
    for: { type: 'string' },
    justification: { type: 'string' },
    json: { type: 'boolean' },
  },
  run: async ({ io, client }, values) => {
    const expiresAt = expiresAtOption(str(values['expires-at']));
    const name = str(values.name)?.trim();
    const body = { ...(name ? { name } : {}), ...(expiresAt ? { expires_at: expiresAt } : {}) };
    const forArg = str(values.for);
    if (!forArg) {
      if (str(values.justification)) throw new CliUsageError('--justification goes with --for');
      const created = await client.mintOwnApiKey(body);
      if (values.json) {
        io.out(`${JSON.stringify(created, null, 2)}\n`);
        return EXIT.ok;
      }
      io.out(
        `New own key ${created.id}${created.name ? ` ("${created.name}")` : ''}: it can vote and decide. Shown once; store it now:\n` +
          `  ${created.key}\n` +
          "It is not stored by this command: 'countersign login --key-stdin' stores it.\n",
      );
      return EXIT.ok;
    }
    const d = await directory(client);
    const target = findPrincipalId(d, forArg);
    const justification = str(values.justification)?.trim();
    const answer = await client.createApiKey(target, { ...body, ...(justification ? { justification } : {}) });
    if (values.json) {
      io.out(`${JSON.stringify(answer, null, 2)}\n`);
      return EXIT.ok;
    }
    const who = principalName(d, target);
    if (isPendingConfiguration(answer)) {
      printPending(io, answer.configuration_request);
      if (answer.key) {
        io.out(
          `The enrollment key for ${who}, shown once; it works once another admin approves the request:\n` +
            `  ${answer.key}\n` +
            `Until ${who} enrolls with it, you hold a key that acts as ${who}: hand it over only on a channel ${who} alone reads.\n`,
        );
      }
      return EXIT.ok;
    }
    if (answer.purpose === 'own') {
      io.out(`New own key ${answer.id}: it can vote and decide. Shown once; store it now:\n  ${answer.key}\n`);
      return EXIT.ok;
    }
    io.out(
      `Enrollment key ${answer.id} for ${who}, shown once; hand it over on a channel only ${who} reads:\n` +
        `  ${answer.key}\n` +
        `${who} runs 'countersign enroll' with it to mint an own key. It can read and request, never decide.\n`,
    );
    return EXIT.ok;
  },
});

const keysRevoke = command({
  usage: `countersign keys revoke ID

Revokes an API key at once: your own keys, or (admins) any key in the org.
Revoke your enrollment key once you have enrolled. Revoking the key you are
signed in with signs you out.
`,
  positionals: { min: 1, max: 1 },
  run: async ({ io, client }, _values, [idArg]) => {
    const id = requireId(idArg, 'ID');
    const me = await client.me();
    await client.revokeApiKey(id);
    io.out(`Revoked API key ${id}.\n`);
    if (me.credential?.id === id) {
      io.out("That was the key this command signed in with: it no longer works. Run 'countersign login' again.\n");
    }
    return EXIT.ok;
  },
});

// ---------------------------------------------------------------------------
// org
// ---------------------------------------------------------------------------

const org = command({
  usage: `countersign org [--json]

Your org, and whether it is two-person ready: two enabled admins, neither
created by the other. Until then one admin can change the configuration alone
(new admins and operators, approvers, profiles, keys for others); once ready,
every such change waits for a second admin ('countersign config list').
`,
  options: { json: { type: 'boolean' } },
  run: async ({ io, client }, values) => {
    const o = await client.getOrg();
    if (values.json) {
      io.out(`${JSON.stringify(o, null, 2)}\n`);
      return EXIT.ok;
    }
    io.out(
      renderFields([
        ['org', `${o.name} (${o.id})`],
        ['two-person ready', o.two_person_ready ? 'yes' : 'NO'],
        ['enabled admins', String(o.enabled_admins)],
      ]),
    );
    if (o.warning) io.out(`warning: ${o.warning}\n`);
    else io.out("Changes that could weaken the gate wait for a second admin: 'countersign config list'.\n");
    return EXIT.ok;
  },
});

export const IDENTITY_HELP = `Your identity and the org's configuration (talk to the API):
  enroll              turn an enrollment key into your own key (the one that decides); stored like login
  keys list           your API keys, own or enrollment (--principal P: another's)
  keys mint           a new own key, shown once; --for P: an enrollment key for someone else (admin)
  keys revoke ID      revoke a key
  org                 is the org two-person ready (two independent admins)?
${CONFIG_HELP}`;

export const identityCommands: Record<string, (argv: string[]) => Promise<number>> = {
  enroll,
  keys: group('keys', ['list', 'mint', 'revoke']),
  'keys list': keysList,
  'keys mint': keysMint,
  'keys revoke': keysRevoke,
  org,
};
