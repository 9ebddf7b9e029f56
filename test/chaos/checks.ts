import { DECISION_ACTIONS, verifyAllChains } from '@countersign/db';
import type { SinkMessage } from '@countersign/devstack';
import type pg from 'pg';
import type { DriverRecord } from './driver.ts';
import type { FaultRecord } from './faults.ts';
import {
  creationRelation,
  GATE_CATEGORIES,
  type GateCategory,
  type GateFigures,
  gateViolations,
  loadGateRows,
} from './gate-checks.ts';

/**
 * The verdict of a run, read from the database (as superuser) and the SMTP
 * sink after quiescence, never from the services' own answers:
 * 1. no accepted request lost, none created twice;
 * 2. no certificate for a request that was not approved;
 * 3. exactly one certificate per approved (or ungated) job;
 * 4. every approved job issued within 60 s after the last fault;
 * 5. each mail delivered exactly once per (event, recipient);
 * 6. the audit chain verifies, with exactly one decision record per decided request;
 * 7. database sessions stay bounded (one LISTEN session per approval relay);
 * 8. no single person (SPEC §1.6, gate-checks.ts): every vote and every decision by a user or service was
 *    made with the decider's own credential, live at the time (never an enrollment credential), and never
 *    by a principal related by creation to the requester; every approved configuration request was approved
 *    by another admin, unrelated, with its own credential;
 * 9. what was approved is what was issued: the names recorded with each certificate version and the names
 *    of its signed leaf are the names its approval request showed (or, ungated, the job's);
 * plus the decisions the clients saw accepted are the ones recorded.
 */
export interface CheckInput {
  readonly su: pg.Pool;
  readonly record: DriverRecord;
  readonly faults: readonly FaultRecord[];
  readonly lastFaultEnd: number;
  readonly messages: readonly SinkMessage[];
  readonly principalNames: ReadonlyMap<string, string>;
  /** Service processes of each kind (approval: 2 in the full profile), for the session bound. */
  readonly processesOf: ReadonlyMap<string, number>;
}

export interface CheckResult {
  readonly violations: string[];
  readonly figures: {
    approvals: Record<string, number>;
    jobs: Record<string, number>;
    certificates: number;
    approvedToIssuedMs: { p50: number; p95: number; max: number };
    /** Latest issuance measured from max(release, end of the last fault). */
    maxIssuedAfterLastFaultMs: number;
    mails: {
      sent: number;
      skipped: number;
      sinkMessages: number;
      /** Extra copies (same Message-ID) after a notifier died or stopped mid-send. */
      resendsSameMessageId: number;
      /** Extra copies (same Message-ID) after an SMTP transaction got no reply, counted on the delivery record. */
      resendsUnanswered?: number;
    };
    audit: { records: number; decisionRecords: number };
    /** What checks 8 and 9 looked at (absent in reports from before them). */
    gate?: GateFigures;
  };
}

export const ISSUE_AFTER_FAULT_LIMIT_MS = 60_000;
/** The notifier's claim lease in a chaos run: 4 x COUNTERSIGN_SMTP_TIMEOUT (5 s). */
export const NOTIFIER_LEASE_MS = 20_000;
const LIMIT_SHOWN = 20;

const quantile = (sorted: number[], q: number) =>
  sorted.length ? (sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0) : 0;

const EXPECTED_DECISION_ACTION: Record<string, string> = {
  approved: 'approval_approved',
  rejected: 'approval_rejected',
  voided: 'approval_voided',
  expired: 'approval_expired',
};

export async function runChecks(input: CheckInput): Promise<CheckResult> {
  const { su, record } = input;
  const violations: string[] = [];
  const add = (category: string, items: string[]) => {
    if (items.length === 0) return;
    violations.push(
      `${category}: ${items.length} — ${items.slice(0, LIMIT_SHOWN).join('; ')}${items.length > LIMIT_SHOWN ? '; …' : ''}`,
    );
  };
  const q = async <T extends pg.QueryResultRow>(text: string, values: unknown[] = []) =>
    (await su.query<T>(text, values)).rows;

  // The clients' own observations first.
  add('client-visible anomalies', record.anomalies);

  // 1. No accepted request lost; none created twice.
  const jobs = await q<{
    id: string;
    certificate_id: string;
    status: string;
    requires_approval: boolean;
    requested_by: string;
    released_at: Date | null;
    approval_id: string | null;
    state: string | null;
    approvals_required: number | null;
    decided_at: Date | null;
    decided_by: string | null;
    expires_at: Date | null;
  }>(
    `SELECT j.id, j.certificate_id, j.status, j.requires_approval, j.requested_by, j.released_at,
            a.id AS approval_id, a.state, a.approvals_required, a.decided_at, a.decided_by, a.expires_at
     FROM jobs j LEFT JOIN approval_requests a ON a.job_id = j.id`,
  );
  const jobById = new Map(jobs.map((j) => [j.id, j]));
  const lost: string[] = [];
  for (const a of record.accepted) {
    const j = jobById.get(a.jobId);
    if (!j) lost.push(`op ${a.index} (${a.channel}) job ${a.jobId} missing`);
    else if (j.certificate_id !== a.certificateId || j.approval_id !== a.approvalId) {
      lost.push(`op ${a.index}: job ${a.jobId} does not match the answer the client got`);
    }
  }
  add('accepted requests lost', lost);
  const acceptedJobs = new Set(record.accepted.map((a) => a.jobId));
  const keys = await q<{ key: string; job_id: string | null }>(
    `SELECT key, response_body->'job'->>'id' AS job_id FROM idempotency_keys`,
  );
  const keyOfJob = new Map<string, string[]>();
  for (const k of keys) if (k.job_id) keyOfJob.set(k.job_id, [...(keyOfJob.get(k.job_id) ?? []), k.key]);
  const phantom = jobs
    .filter((j) => !acceptedJobs.has(j.id))
    .map(
      (j) =>
        `job ${j.id} (${j.status}) ${keyOfJob.has(j.id) ? `of key ${keyOfJob.get(j.id)?.join(',')} whose client never got it` : 'with no idempotency key'}`,
    );
  add('jobs no client was answered for (created twice or behind a give-up)', phantom);
  const keyCount = new Map<string, number>();
  for (const k of keys) keyCount.set(k.key, (keyCount.get(k.key) ?? 0) + 1);
  add(
    'idempotency keys answered more than once',
    [...keyCount].filter(([, n]) => n > 1).map(([k, n]) => `${k} x${n}`),
  );

  // 2 and 3. Certificates only for approved (or ungated) jobs, exactly one each.
  const versions = await q<{ id: string; job_id: string; created_at: Date }>(
    'SELECT id, job_id, created_at FROM certificate_versions',
  );
  const versionsOfJob = new Map<string, { id: string; created_at: Date }[]>();
  for (const v of versions) versionsOfJob.set(v.job_id, [...(versionsOfJob.get(v.job_id) ?? []), v]);
  const unapproved: string[] = [];
  const notExactlyOne: string[] = [];
  const late: string[] = [];
  const latencies: number[] = [];
  let maxAfterFault = 0;
  for (const j of jobs) {
    const vs = versionsOfJob.get(j.id) ?? [];
    const releasable = !j.requires_approval || j.state === 'approved';
    if (!releasable && vs.length > 0) {
      unapproved.push(`job ${j.id} (approval ${j.approval_id} ${j.state}) has ${vs.length} certificate(s)`);
    }
    if (releasable && vs.length !== 1) {
      notExactlyOne.push(`job ${j.id} (${j.status}, approval ${j.state ?? 'none'}) has ${vs.length} certificates`);
    }
    if (releasable && vs.length === 1 && j.status !== 'completed') {
      notExactlyOne.push(`job ${j.id} has its certificate but is ${j.status}`);
    }
    const v = vs[0];
    const released = j.released_at?.getTime();
    if (releasable && v && released !== undefined) {
      const issued = v.created_at.getTime();
      latencies.push(issued - released);
      const after = issued - Math.max(released, input.lastFaultEnd);
      maxAfterFault = Math.max(maxAfterFault, after);
      if (after > ISSUE_AFTER_FAULT_LIMIT_MS) {
        late.push(`job ${j.id} issued ${Math.round(after / 1000)} s after max(release, last fault)`);
      }
    }
  }
  add('certificates for requests that were not approved', unapproved);
  add('approved jobs without exactly one certificate', notExactlyOne);
  add(`approved jobs issued more than ${ISSUE_AFTER_FAULT_LIMIT_MS / 1000} s after the last fault`, late);

  // Terminal states are consistent: expiry only past the deadline, nothing overdue still pending.
  const now = Date.now();
  add(
    'pending requests past their deadline after quiescence',
    jobs
      .filter((j) => j.state === 'pending' && j.expires_at && j.expires_at.getTime() < now - 5_000)
      .map((j) => `approval ${j.approval_id}`),
  );
  add(
    'requests expired before their deadline',
    jobs
      .filter((j) => j.state === 'expired' && j.decided_at && j.expires_at && j.decided_at < j.expires_at)
      .map((j) => `approval ${j.approval_id}`),
  );
  const votes = await q<{ approval_id: string; voter_id: string; requested_by: string }>(
    'SELECT approval_id, voter_id::text, requested_by FROM approval_votes',
  );
  const votesOf = new Map<string, string[]>();
  for (const v of votes) votesOf.set(v.approval_id, [...(votesOf.get(v.approval_id) ?? []), v.voter_id]);
  add(
    'approved without the quorum of distinct votes',
    jobs
      .filter(
        (j) => j.state === 'approved' && (votesOf.get(j.approval_id ?? '')?.length ?? 0) < (j.approvals_required ?? 1),
      )
      .map((j) => `approval ${j.approval_id}`),
  );
  add('votes or decisions by the requester', [
    ...votes.filter((v) => v.voter_id === v.requested_by).map((v) => `vote on ${v.approval_id}`),
    ...jobs
      .filter((j) => (j.state === 'approved' || j.state === 'rejected') && j.decided_by === j.requested_by)
      .map((j) => `decision on ${j.approval_id}`),
  ]);

  // 8 and 9. No single person; what was approved is what was issued.
  const gate = gateViolations(await loadGateRows(q));
  for (const [category, items] of Object.entries(gate.found) as [GateCategory, string[]][]) {
    add(GATE_CATEGORIES[category], items);
  }

  // The decisions the clients saw accepted are recorded.
  const byApproval = new Map(jobs.filter((j) => j.approval_id).map((j) => [j.approval_id as string, j]));
  const decisionLost: string[] = [];
  for (const d of record.decisions) {
    if (d.status !== 200) continue;
    const j = byApproval.get(d.approvalId);
    const voter = [...input.principalNames].find(([, n]) => n === d.by)?.[0];
    if (!j) decisionLost.push(`approval ${d.approvalId} missing`);
    else if (d.kind === 'approve' && !votesOf.get(d.approvalId)?.includes(voter ?? '')) {
      decisionLost.push(`op ${d.index}: vote by ${d.by} on ${d.approvalId} answered 200 but is not recorded`);
    } else if (d.kind === 'approve' && d.state === 'approved' && j.state !== 'approved') {
      decisionLost.push(`op ${d.index}: approval of ${d.approvalId} answered 200 approved, recorded ${j.state}`);
    } else if (d.kind === 'reject' && !(j.state === 'rejected' && j.decided_by === voter)) {
      decisionLost.push(`op ${d.index}: rejection of ${d.approvalId} by ${d.by} answered 200, recorded ${j.state}`);
    } else if (d.kind === 'void' && !(j.state === 'voided' && j.decided_by === voter)) {
      decisionLost.push(`op ${d.index}: void of ${d.approvalId} answered 200, recorded ${j.state}`);
    }
  }
  add('decisions answered 200 but not recorded as answered', decisionLost);

  // 5. Mail: exactly once per (event, recipient) for every event the database says happened.
  const mail = await checkMail(input, q, jobs, versions);
  violations.push(...mail.violations);

  // 7. Database sessions stay bounded: a process holds its pool and, for the relay, one LISTEN session,
  // however often its sessions were terminated or PostgreSQL restarted (a relay once doubled its LISTEN
  // sessions on every loss until PostgreSQL refused all clients).
  const listening = await q<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'countersign-approval-listen'`,
  );
  const relays = input.processesOf.get('approval') ?? 0;
  if ((listening[0]?.n ?? 0) > relays) {
    violations.push(`${listening[0]?.n} LISTEN sessions for ${relays} approval relay processes`);
  }

  // 6. Audit chain verifies; one decision record per decided request, matching its state.
  const chains = await verifyAllChains({ pool: su });
  if (!chains.ok) {
    violations.push(
      `audit chain does not verify: ${chains.failures.map((f) => `org ${f.org_id} first bad seq ${f.first_bad_seq}`).join('; ')}`,
    );
  }
  const decisionRecords = await q<{ resource_id: string; action: string }>(
    `SELECT resource_id, action FROM audit_records WHERE action = ANY($1::text[])`,
    [DECISION_ACTIONS],
  );
  const recordsOf = new Map<string, string[]>();
  for (const r of decisionRecords) recordsOf.set(r.resource_id, [...(recordsOf.get(r.resource_id) ?? []), r.action]);
  const auditBad: string[] = [];
  for (const j of jobs) {
    if (!j.approval_id || !j.state) continue;
    const recs = recordsOf.get(j.approval_id) ?? [];
    if (j.state === 'pending' && recs.length > 0) auditBad.push(`pending ${j.approval_id} has ${recs.join(',')}`);
    if (j.state !== 'pending' && (recs.length !== 1 || recs[0] !== EXPECTED_DECISION_ACTION[j.state])) {
      auditBad.push(`${j.state} ${j.approval_id} has [${recs.join(',')}]`);
    }
  }
  add('decided requests without exactly one matching decision record', auditBad);

  const count = (xs: (string | null)[]) => {
    const out: Record<string, number> = {};
    for (const x of xs) if (x) out[x] = (out[x] ?? 0) + 1;
    return out;
  };
  latencies.sort((a, b) => a - b);
  return {
    violations,
    figures: {
      approvals: count(jobs.map((j) => j.state)),
      jobs: count(jobs.map((j) => j.status)),
      certificates: versions.length,
      approvedToIssuedMs: {
        p50: quantile(latencies, 0.5),
        p95: quantile(latencies, 0.95),
        max: latencies.at(-1) ?? 0,
      },
      maxIssuedAfterLastFaultMs: maxAfterFault,
      mails: mail.figures,
      audit: { records: chains.checked, decisionRecords: decisionRecords.length },
      gate: gate.figures,
    },
  };
}

type Query = <T extends pg.QueryResultRow>(text: string, values?: unknown[]) => Promise<T[]>;

/**
 * Which mails the database says are owed, independently of the notifier:
 * a new request to every eligible approver (its profile's operators and
 * admins, and every org admin) except the requester and the principals
 * related to it by creation (they may not decide it); a decision and an issued
 * certificate to the requester. The notifier may skip a request's mail when
 * it was decided before the mail went out; it records that, and then nothing
 * may arrive. Everything else arrives exactly once. A second copy with the
 * same Message-ID is tolerated only around a notifier being killed or stopped
 * (SMTP had the message, the delivery record did not yet; or a paused
 * notifier resumed a send whose claim had lapsed): no mail protocol can tell
 * those apart, and the shared Message-ID lets the mail store drop the copy.
 */
async function checkMail(
  input: CheckInput,
  q: Query,
  jobs: { id: string; requested_by: string; approval_id: string | null; state: string | null }[],
  versions: { id: string; job_id: string }[],
) {
  const violations: string[] = [];
  const principals = await q<{
    id: string;
    email: string | null;
    role: string;
    disabled_at: Date | null;
    created_by: string;
  }>('SELECT id::text, email, role, disabled_at, created_by FROM principals');
  const related = creationRelation(principals);
  const emailOf = new Map(principals.map((p) => [p.id, p.email?.toLowerCase() ?? null]));
  const admins = principals.filter((p) => p.role === 'admin' && !p.disabled_at).map((p) => p.id);
  const approvers = await q<{ profile_id: string; principal_id: string; role: string }>(
    `SELECT pa.profile_id, pa.principal_id::text, p.role FROM profile_approvers pa JOIN principals p ON p.id = pa.principal_id
     WHERE p.disabled_at IS NULL`,
  );
  const approvals = await q<{ id: string; profile_id: string; requested_by: string; state: string }>(
    'SELECT id, profile_id, requested_by, state FROM approval_requests',
  );
  const expected = new Map<string, { event: string; recipient: string; mayBeSkipped: boolean }>();
  const owe = (event: string, principalId: string, mayBeSkipped: boolean) => {
    const recipient = emailOf.get(principalId);
    if (recipient) expected.set(`${event} ${recipient}`, { event, recipient, mayBeSkipped });
  };
  for (const a of approvals) {
    const eligible = new Set([
      ...approvers
        .filter((x) => x.profile_id === a.profile_id && (x.role === 'operator' || x.role === 'admin'))
        .map((x) => x.principal_id),
      ...admins,
    ]);
    eligible.delete(a.requested_by);
    for (const id of eligible) if (!related(id, a.requested_by)) owe(`approval_submitted-${a.id}`, id, true);
    if (a.state !== 'pending') owe(`approval_decided-${a.id}`, a.requested_by, false);
  }
  const requesterOfJob = new Map(jobs.map((j) => [j.id, j.requested_by]));
  for (const v of versions) owe(`certificate_issued-${v.id}`, requesterOfJob.get(v.job_id) ?? '', false);

  const deliveries = await q<{
    event_key: string;
    recipient: string;
    status: string;
    last_error: string | null;
    unanswered_attempts: number;
  }>('SELECT event_key, recipient, status, last_error, unanswered_attempts FROM notification_deliveries');
  const deliveryOf = new Map(deliveries.map((d) => [`${d.event_key} ${d.recipient}`, d]));
  const received = new Map<string, SinkMessage[]>();
  for (const m of input.messages) {
    const event = m.headers['x-countersign-event'] ?? '(no event header)';
    for (const to of m.envelope.to) {
      const k = `${event} ${to.toLowerCase()}`;
      received.set(k, [...(received.get(k) ?? []), m]);
    }
  }
  const missing: string[] = [];
  const wronglySkipped: string[] = [];
  const duplicates: string[] = [];
  const unexpected: string[] = [];
  const failed = deliveries.filter((d) => d.status === 'failed' || d.status === 'pending');
  let resends = 0;
  let resendsUnanswered = 0;
  const notifierFaults = input.faults.filter(
    (f) => (f.kind === 'kill' || f.kind === 'stop') && f.target.startsWith('notifier'),
  );
  for (const [k, e] of expected) {
    const d = deliveryOf.get(k);
    const got = received.get(k) ?? [];
    if (d?.status === 'skipped') {
      if (!e.mayBeSkipped || !d.last_error?.startsWith('request is already')) {
        wronglySkipped.push(`${k} (${d.last_error})`);
      }
      if (got.length > 0) unexpected.push(`${k}: recorded skipped but ${got.length} arrived`);
      continue;
    }
    if (got.length === 0) {
      missing.push(`${k} (delivery ${d ? d.status : 'never recorded'})`);
      continue;
    }
    if (got.length > 1) {
      const ids = new Set(got.map((m) => m.messageId));
      const first = Date.parse(got[0]?.at ?? '');
      // Killed or stopped right after the server took it (before the record), or stopped with the claim in hand
      // and resumed after another notifier took the lapsed claim over and sent it first.
      const explained = notifierFaults.some(
        (f) => f.startedAt >= first - NOTIFIER_LEASE_MS - 2_000 && f.startedAt <= first + 3_000,
      );
      // Or the server stored it but its reply never came (RFC 1047): the record counts each such attempt.
      const unanswered = d?.unanswered_attempts ?? 0;
      if (ids.size === 1 && explained) resends += got.length - 1;
      else if (ids.size === 1 && unanswered >= got.length - 1) resendsUnanswered += got.length - 1;
      else
        duplicates.push(
          `${k} x${got.length} (${ids.size} Message-IDs${explained ? '' : ', no notifier fault at the time'}, ${unanswered} unanswered attempts recorded)`,
        );
    }
  }
  for (const [k, got] of received) if (!expected.has(k)) unexpected.push(`${k} x${got.length}`);
  const add = (category: string, items: string[]) => {
    if (items.length)
      violations.push(
        `${category}: ${items.length} — ${items.slice(0, LIMIT_SHOWN).join('; ')}${items.length > LIMIT_SHOWN ? '; …' : ''}`,
      );
  };
  add('mails never delivered', missing);
  add('mails delivered more than once', duplicates);
  add('mails nobody was owed', unexpected);
  add('mails skipped without a reason to', wronglySkipped);
  add(
    'deliveries failed or left pending',
    failed.map((d) => `${d.event_key} ${d.recipient} ${d.status} ${d.last_error ?? ''}`),
  );
  return {
    violations,
    figures: {
      sent: deliveries.filter((d) => d.status === 'sent').length,
      skipped: deliveries.filter((d) => d.status === 'skipped').length,
      sinkMessages: input.messages.length,
      resendsSameMessageId: resends,
      resendsUnanswered,
    },
  };
}
