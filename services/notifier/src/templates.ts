/**
 * Every mail Countersign sends, in one place. A template builds a small
 * document (intro, facts, commands) that is rendered both as plain text and
 * as HTML, so the two bodies never disagree. Mails carry ids, names and
 * commands, never secrets: the curl calls read the API key from the
 * reader's own $COUNTERSIGN_API_KEY.
 */
export interface MailSettings {
  /** COUNTERSIGN_PUBLIC_URL: where readers reach the API. */
  readonly publicUrl: string;
}

export interface Rendered {
  readonly subject: string;
  readonly text: string;
  readonly html: string;
}

export interface RequestFacts {
  readonly approvalId: string;
  readonly certificateId: string;
  readonly jobKind: string;
  readonly commonName: string;
  readonly domains: readonly string[];
  readonly profileName: string;
  readonly environment: string;
  readonly justification: string;
  /** "name <email>", or the system actor for automatic renewals. */
  readonly requester: string;
  readonly requestedAt: Date;
  readonly expiresAt: Date;
  readonly approvalsRequired: number;
  readonly votes: number;
}

export interface DecisionFacts {
  readonly state: string;
  readonly decidedBy: string;
  readonly decidedAt: Date | null;
  readonly note: string | null;
}

export interface IssuedFacts {
  readonly certificateId: string;
  readonly jobId: string;
  readonly jobKind: string;
  readonly commonName: string;
  readonly sans: readonly string[];
  readonly profileName: string;
  readonly serial: string;
  readonly fingerprint: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly issuer: string;
}

interface Doc {
  readonly subject: string;
  readonly heading: string;
  readonly intro: readonly string[];
  readonly facts: readonly (readonly [string, string])[];
  readonly commands: readonly { readonly caption: string; readonly code: string }[];
  readonly outro?: readonly string[];
}

const PREFIX = '[Countersign]';

export const formatTime = (d: Date): string =>
  `${d
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d{3}Z$/, '')} UTC`;

function formatWait(ms: number): string {
  const minutes = Math.max(0, Math.round(ms / 60_000));
  if (minutes < 120) return `${minutes} minute${minutes === 1 ? '' : 's'}`;
  const hours = Math.round(minutes / 60);
  if (hours < 48) return `${hours} hours`;
  return `${Math.round(hours / 24)} days`;
}

const base = (s: MailSettings): string => s.publicUrl.replace(/\/+$/, '');
/** Single-quoted for a POSIX shell. */
const shq = (v: string): string => `'${v.replace(/'/g, `'\\''`)}'`;

function requestFacts(f: RequestFacts): [string, string][] {
  return [
    ['Request', f.approvalId],
    ['Kind', f.jobKind === 'renewal' ? 'renewal of an existing certificate' : 'new certificate'],
    ['Common name', f.commonName],
    ['Domains', f.domains.join(', ')],
    ['Profile', f.profileName],
    ['Environment', f.environment],
    ['Requested by', f.requester],
    ['Requested at', formatTime(f.requestedAt)],
    ['Justification', f.justification],
    ['Approvals', `${f.votes} of ${f.approvalsRequired} required`],
    ['Expires at', formatTime(f.expiresAt)],
  ];
}

/** Review, approve and reject commands for the request at `path` (an approval or a configuration request). */
function decisionCommands(s: MailSettings, path: string) {
  const url = `${base(s)}${path}`;
  return [
    { caption: 'Review the request', code: `curl -H "Authorization: Bearer $COUNTERSIGN_API_KEY" ${shq(url)}` },
    {
      caption: 'Approve it',
      code: [
        `curl -X POST ${shq(`${url}/approve`)} \\`,
        `  -H "Authorization: Bearer $COUNTERSIGN_API_KEY" \\`,
        `  -H 'Content-Type: application/json' \\`,
        `  -d '{"note":"reviewed"}'`,
      ].join('\n'),
    },
    {
      caption: 'Or reject it (a note is required)',
      code: [
        `curl -X POST ${shq(`${url}/reject`)} \\`,
        `  -H "Authorization: Bearer $COUNTERSIGN_API_KEY" \\`,
        `  -H 'Content-Type: application/json' \\`,
        `  -d '{"note":"why it is rejected"}'`,
      ].join('\n'),
    },
  ];
}

export function renderSubmitted(s: MailSettings, f: RequestFacts): Rendered {
  return render({
    subject: `${PREFIX} Approval needed: ${f.commonName} (${f.profileName}, ${f.environment})`,
    heading: 'A certificate request is waiting for your approval',
    intro: [
      `${f.requester} asked for a certificate for ${f.domains.join(', ')} with profile ${f.profileName} (${f.environment}).`,
      'You receive this because you are an eligible approver. The requester can never approve their own request.',
    ],
    facts: requestFacts(f),
    commands: decisionCommands(s, `/api/v1/approvals/${f.approvalId}`),
    outro: [`Unless it is decided, the request expires at ${formatTime(f.expiresAt)} and nothing is issued.`],
  });
}

export function renderReminder(s: MailSettings, f: RequestFacts, round: number, now: Date): Rendered {
  return render({
    subject: `${PREFIX} Reminder ${round}: approval still needed for ${f.commonName} (${f.profileName}, ${f.environment})`,
    heading: `Reminder ${round}: a certificate request is still waiting`,
    intro: [
      `The request of ${f.requester} for ${f.domains.join(', ')} has been waiting for ${formatWait(now.getTime() - f.requestedAt.getTime())}.`,
      `It expires at ${formatTime(f.expiresAt)}; after that nothing is issued and it must be requested again.`,
    ],
    facts: requestFacts(f),
    commands: decisionCommands(s, `/api/v1/approvals/${f.approvalId}`),
  });
}

const DECISION_WORDS: Record<string, { word: string; next: string }> = {
  approved: { word: 'approved', next: 'The certificate is being issued; another mail follows when it is signed.' },
  rejected: { word: 'rejected', next: 'Nothing will be issued for this request.' },
  voided: { word: 'voided', next: 'An administrator withdrew the request; nothing will be issued for it.' },
  expired: {
    word: 'expired',
    next: 'No approver decided before the deadline, so nothing will be issued. Submit the request again if it is still needed.',
  },
};

export function renderDecided(s: MailSettings, f: RequestFacts, d: DecisionFacts): Rendered {
  const w = DECISION_WORDS[d.state] ?? { word: d.state, next: '' };
  const facts: [string, string][] = [
    ['Decision', w.word],
    ['Decided by', d.decidedBy],
    ['Decided at', d.decidedAt ? formatTime(d.decidedAt) : '-'],
    ['Note', d.note ?? '-'],
    ...requestFacts(f).filter(([k]) => k !== 'Expires at' && k !== 'Approvals'),
  ];
  const url = `${base(s)}/api/v1/approvals/${f.approvalId}`;
  return render({
    subject: `${PREFIX} Request ${w.word}: ${f.commonName} (${f.profileName})`,
    heading: `Your certificate request was ${w.word}`,
    intro: [`Your request for ${f.domains.join(', ')} was ${w.word} by ${d.decidedBy}.`, w.next].filter(Boolean),
    facts,
    commands: [
      { caption: 'See the request', code: `curl -H "Authorization: Bearer $COUNTERSIGN_API_KEY" ${shq(url)}` },
    ],
  });
}

export interface ConfigFacts {
  readonly requestId: string;
  readonly summary: string;
  readonly justification: string;
  /** "name <email>" of the admin who asked. */
  readonly requester: string;
  readonly requestedAt: Date;
  readonly expiresAt: Date;
}

function configFacts(f: ConfigFacts): [string, string][] {
  return [
    ['Request', f.requestId],
    ['Change', f.summary],
    ['Requested by', f.requester],
    ['Requested at', formatTime(f.requestedAt)],
    ['Justification', f.justification],
    ['Expires at', formatTime(f.expiresAt)],
  ];
}

export function renderConfigSubmitted(s: MailSettings, f: ConfigFacts): Rendered {
  return render({
    subject: `${PREFIX} Configuration change needs a second admin: ${f.summary.slice(0, 120)}`,
    heading: 'A change to the approval gate is waiting for a second admin',
    intro: [
      `${f.requester} asked for a change that could weaken the gate: ${f.summary}.`,
      'It takes effect only if another admin approves it. Approve only what you would have done yourself.',
    ],
    facts: configFacts(f),
    commands: decisionCommands(s, `/api/v1/configuration-requests/${f.requestId}`),
    outro: [`Unless it is decided, the request expires at ${formatTime(f.expiresAt)} and nothing changes.`],
  });
}

const CONFIG_WORDS: Record<string, string> = {
  approved: 'approved and applied',
  rejected: 'rejected; nothing changed',
  cancelled: 'cancelled; nothing changed',
  expired: 'expired without a decision; nothing changed',
};

export function renderConfigDecided(s: MailSettings, f: ConfigFacts, d: DecisionFacts): Rendered {
  const word = CONFIG_WORDS[d.state] ?? d.state;
  const url = `${base(s)}/api/v1/configuration-requests/${f.requestId}`;
  return render({
    subject: `${PREFIX} Configuration change ${d.state}: ${f.summary.slice(0, 120)}`,
    heading: `Your configuration change was ${d.state}`,
    intro: [`Your change (${f.summary}) was ${word} by ${d.decidedBy}.`],
    facts: [
      ['Decision', d.state],
      ['Decided by', d.decidedBy],
      ['Decided at', d.decidedAt ? formatTime(d.decidedAt) : '-'],
      ['Note', d.note ?? '-'],
      ...configFacts(f).filter(([k]) => k !== 'Expires at'),
    ],
    commands: [
      { caption: 'See the request', code: `curl -H "Authorization: Bearer $COUNTERSIGN_API_KEY" ${shq(url)}` },
    ],
  });
}

export function renderIssued(s: MailSettings, f: IssuedFacts): Rendered {
  const certUrl = `${base(s)}/api/v1/certificates/${f.certificateId}`;
  const file = `${f.commonName.replace(/^\*\./, 'wildcard.').replace(/[^A-Za-z0-9.-]/g, '_')}.pem`;
  return render({
    subject: `${PREFIX} Certificate issued: ${f.commonName} (serial ${f.serial})`,
    heading: 'Your certificate was issued',
    intro: [
      `The certificate for ${f.sans.join(', ')} was signed${f.jobKind === 'renewal' ? ' (renewal)' : ''} and is valid until ${formatTime(f.notAfter)}.`,
    ],
    facts: [
      ['Certificate', f.certificateId],
      ['Common name', f.commonName],
      ['Names', f.sans.join(', ')],
      ['Profile', f.profileName],
      ['Serial', f.serial],
      ['SHA-256 fingerprint', f.fingerprint],
      ['Not before', formatTime(f.notBefore)],
      ['Not after', formatTime(f.notAfter)],
      ['Issuer', f.issuer],
      ['Job', f.jobId],
    ],
    commands: [
      {
        caption: 'Fetch the PEM (leaf, then chain)',
        code: `curl -H "Authorization: Bearer $COUNTERSIGN_API_KEY" ${shq(`${certUrl}/pem`)} -o ${shq(file)}`,
      },
    ],
  });
}

function render(d: Doc): Rendered {
  const width = Math.max(...d.facts.map(([k]) => k.length));
  const text = [
    d.heading,
    '',
    ...d.intro,
    '',
    ...d.facts.map(([k, v]) => `${`${k}:`.padEnd(width + 2)}${v}`),
    ...d.commands.flatMap((c) => ['', `${c.caption}:`, '', ...c.code.split('\n').map((l) => `    ${l}`)]),
    ...(d.outro?.length ? ['', ...d.outro] : []),
    '',
    '-- ',
    'Countersign: certificate issuance behind human approval. This mail was sent automatically.',
    '',
  ].join('\n');
  const html = [
    '<!doctype html>',
    '<html><body style="font-family:sans-serif;font-size:14px;color:#111">',
    `<h2 style="font-size:18px">${esc(d.heading)}</h2>`,
    ...d.intro.map((p) => `<p>${esc(p)}</p>`),
    '<table cellpadding="4" style="border-collapse:collapse">',
    ...d.facts.map(
      ([k, v]) =>
        `<tr><th align="left" valign="top" style="color:#555;white-space:nowrap">${esc(k)}</th><td>${esc(v)}</td></tr>`,
    ),
    '</table>',
    ...d.commands.flatMap((c) => [
      `<p><strong>${esc(c.caption)}</strong></p>`,
      `<pre style="background:#f4f4f4;padding:8px;white-space:pre-wrap">${esc(c.code)}</pre>`,
    ]),
    ...(d.outro ?? []).map((p) => `<p>${esc(p)}</p>`),
    '<p style="color:#777;font-size:12px">Countersign: certificate issuance behind human approval. This mail was sent automatically.</p>',
    '</body></html>',
  ].join('\n');
  return { subject: oneLine(d.subject), text, html };
}

const oneLine = (s: string): string => s.replace(/[\r\n]+/g, ' ').slice(0, 250);

export function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
