import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadOrCreateLocalCa, localConnector } from '@countersign/ca';
import { DECISION_ACTIONS, OUTBOX_TOPICS, takeOutbox, verifyAuditChain } from '@countersign/db';
import { actorOf, type Caller, DomainError } from '@countersign/domain';
import { createLogger } from '@countersign/observability';
import { createRedis, enqueue, jobIds, openQueue, type TypedQueue } from '@countersign/queues';
import {
  createTestDatabase,
  csrFor,
  profileFields,
  randomQueuePrefix,
  type SeededOrg,
  type SeededPrincipal,
  seedOrg,
  seedPrincipal,
  type TestDatabase,
} from '@countersign/testing';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// The issuer's handler is the consumer of released jobs; the model drives it as a re-delivered message would.
import { issueJobHandler } from '../../../services/issuer/src/issue-job.handler.ts';
import { saveProfile } from './administration.ts';
import { approve, expireDue, reject, voidRequest } from './decisions.ts';
import { requestCertificate, requesterOf } from './requests.ts';

/**
 * Model-based test of the approval state machine (SPEC §1, §2) against the
 * real database and a real BullMQ queue. fast-check generates sequences of
 * submissions, votes, rejections and voids by every kind of principal
 * (requester, approvers, non-approvers, auditor, admin), each with its own key
 * or with the enrollment key an admin made for it (which never decides), by
 * principals related by creation to the requester (the admin created every
 * other principal here, so neither counts as the other's second person),
 * deadlines moved into
 * the past followed by the reaper's expireDue, publication of released jobs
 * to the issuance queue and (re-)deliveries of those messages and of stale
 * ones to the issuer's handler, and decisions fired concurrently. A small
 * independent model predicts every answer; after each step the system's rows
 * (request state, votes, decider, job status, certificate count), its outbox
 * and its audit records must agree with the model. Concurrent decisions must
 * match some serial order of the same calls (they are linearizable).
 *
 * MODEL_RUNS sets the number of runs (30 by default; raise it locally).
 */
const RUNS = Number(process.env.MODEL_RUNS ?? 30);
const settings = { approvalTimeoutMs: 3_600_000, escalationAfterMs: 600_000 };

type Who = 'admin' | 'op1' | 'op2' | 'op3' | 'requester' | 'auditor';
const WHO: readonly Who[] = ['admin', 'op1', 'op2', 'op3', 'requester', 'auditor'];
type ProfileKind = 'single' | 'mofn' | 'open';
/** single: 1 of (op1, op2); mofn: 2 of (op1, op2, op3); open: no approval. */
const APPROVERS: Record<ProfileKind, readonly Who[]> = {
  single: ['op1', 'op2'],
  mofn: ['op1', 'op2', 'op3'],
  open: [],
};
const REQUIRED: Record<ProfileKind, number> = { single: 1, mofn: 2, open: 0 };
const ROLE: Record<Who, string> = {
  admin: 'admin',
  op1: 'operator',
  op2: 'operator',
  op3: 'operator',
  requester: 'requester',
  auditor: 'auditor',
};
/** Who created whom: the admin (made by the bootstrap) created every other principal. */
const CREATOR: Record<Who, Who | null> = {
  admin: null,
  op1: 'admin',
  op2: 'admin',
  op3: 'admin',
  requester: 'admin',
  auditor: 'admin',
};
/** One created the other (directly or through principals it created): never each other's second person. */
const related = (a: Who, b: Who): boolean => a === b || CREATOR[a] === b || CREATOR[b] === a;
type DecisionKind = 'approve' | 'reject' | 'void';
type ApprovalState = 'pending' | 'approved' | 'rejected' | 'expired' | 'voided';
type JobStatus = 'awaiting_approval' | 'pending' | 'completed' | 'cancelled';

interface ModelRequest {
  jobId: string;
  approvalId: string | null;
  profile: ProfileKind;
  by: Who;
  state: ApprovalState | null;
  votes: Who[];
  decidedBy: Who | 'system-reaper' | null;
  job: JobStatus;
  versions: number;
  overdue: boolean;
  published: boolean;
}

interface Model {
  requests: ModelRequest[];
  /** Outbox events of this run not yet published, as `topic:id`. */
  outbox: string[];
}

interface Real {
  run: number;
}

let tdb: TestDatabase;
let org: SeededOrg;
let principals: Record<Who, SeededPrincipal>;
let profileIds: Record<ProfileKind, string>;
let redis: ReturnType<typeof createRedis>;
let queue: TypedQueue<'issuance'>;
let issue: ReturnType<typeof issueJobHandler>;
let caDir: string;

beforeAll(async () => {
  tdb = await createTestDatabase();
  const db = tdb.handle.db;
  org = await seedOrg(db);
  const op3 = await seedPrincipal(db, org.admin, 'operator3', 'operator');
  principals = {
    admin: org.admin,
    op1: org.operator1,
    op2: org.operator2,
    op3,
    requester: org.requester,
    auditor: org.auditor,
  };
  const mofn = await saveProfile(db, org.admin, null, profileFields({ name: 'two-of-three', approvals_required: 2 }), [
    org.operator1.id,
    org.operator2.id,
    op3.id,
  ]);
  profileIds = { single: org.gated.id, mofn: mofn.id, open: org.open.id };
  redis = createRedis(tdb.redisUrl, 'producer');
  queue = openQueue('issuance', { connection: redis, prefix: randomQueuePrefix() });
  caDir = await mkdtemp(join(tmpdir(), 'approval-model-'));
  const ca = await loadOrCreateLocalCa({ dir: caDir });
  issue = issueJobHandler(db, new Map([['local', localConnector(ca)]]), createLogger('issuer-model', 'silent'));
});

afterAll(async () => {
  await queue?.close();
  redis?.disconnect();
  await tdb?.drop();
  if (caDir) await rm(caDir, { recursive: true, force: true });
});

const codeOf = (err: unknown): string => {
  if (err instanceof DomainError) return err.code;
  throw err;
};

const whoOfId = (id: string | null): Who | 'system-reaper' | null => {
  if (id === null) return null;
  if (id === 'system-reaper') return id;
  const found = WHO.find((w) => principals[w].id === id);
  if (!found) throw new Error(`unknown decider ${id}`);
  return found;
};

// ---------------------------------------------------------------------------------------------
// The model: what each call must answer and change, written from SPEC §1-§3, not from the code.

function decideInModel(m: Model, r: ModelRequest, kind: DecisionKind, who: Who, enrolled: boolean): string {
  if (r.approvalId === null || r.state === null) throw new Error('decisions are only generated for gated requests');
  // A requester sees only its own requests; everyone else in the org sees all of them.
  if (ROLE[who] === 'requester' && r.by !== who) return 'not_found';
  if (kind === 'void') {
    if (ROLE[who] !== 'admin') return 'forbidden';
    // Voiding is a decision too: only with the admin's own key.
    if (enrolled) return 'enrollment_credential';
    if (r.state !== 'pending') return 'already_decided';
    // Voiding is allowed past the deadline: an admin may close an overdue request before the reaper does.
    finishInModel(m, r, 'voided', who);
    return 'ok';
  }
  if (related(who, r.by)) return 'two_person_integrity';
  const eligible = ROLE[who] === 'admin' || (ROLE[who] === 'operator' && APPROVERS[r.profile].includes(who));
  if (!eligible) return 'forbidden';
  if (enrolled) return 'enrollment_credential';
  if (r.state !== 'pending' || r.overdue) return 'already_decided';
  if (kind === 'reject') {
    finishInModel(m, r, 'rejected', who);
    return 'ok';
  }
  if (r.votes.includes(who)) return 'already_voted';
  r.votes.push(who);
  if (r.votes.length >= REQUIRED[r.profile]) finishInModel(m, r, 'approved', who);
  return 'ok';
}

function finishInModel(m: Model, r: ModelRequest, state: ApprovalState, by: Who | 'system-reaper'): void {
  r.state = state;
  r.decidedBy = by;
  if (state === 'approved') {
    r.job = 'pending';
    m.outbox.push(`job.released:${r.jobId}`);
  } else {
    r.job = 'cancelled';
  }
  // The reaper's batch announces its expiries as one approvals.expired event (read back one id per entry).
  m.outbox.push(`${state === 'expired' ? 'approvals.expired' : 'approval.decided'}:${r.approvalId}`);
}

/** A delivery of the job's message: signs once, and only a released job. */
function deliverInModel(m: Model, r: ModelRequest): 'issued' | 'skipped' {
  if (r.job !== 'pending' || r.versions > 0) return 'skipped';
  r.versions = 1;
  r.job = 'completed';
  m.outbox.push(`certificate.issued:${r.jobId}`);
  return 'issued';
}

const cloneModel = (m: Model): Model => structuredClone(m);

function permutations<T>(xs: readonly T[]): T[][] {
  if (xs.length <= 1) return [[...xs]];
  return xs.flatMap((x, i) => permutations([...xs.slice(0, i), ...xs.slice(i + 1)]).map((rest) => [x, ...rest]));
}

// ---------------------------------------------------------------------------------------------
// The system side.

/** The principal with its own key, or with the enrollment key the admin (or the bootstrap) made for it. */
function callerOf(who: Who, enrolled: boolean): Caller {
  const p = principals[who];
  if (!enrolled) return p;
  return {
    ...p,
    credential: { kind: 'api_key', id: p.enrollmentKeyId, own: false, createdBy: CREATOR[who] ?? 'system-bootstrap' },
  };
}

async function decideInSystem(kind: DecisionKind, who: Who, approvalId: string, enrolled: boolean): Promise<string> {
  const p = callerOf(who, enrolled);
  const db = tdb.handle.db;
  try {
    if (kind === 'approve') await approve(db, p, approvalId, 'model');
    else if (kind === 'reject') await reject(db, p, approvalId, 'model says no');
    else await voidRequest(db, p, approvalId, 'model voids');
    return 'ok';
  } catch (err) {
    return codeOf(err);
  }
}

interface SystemRequest {
  state: ApprovalState | null;
  votes: Who[];
  decidedBy: Who | 'system-reaper' | null;
  job: string;
  versions: number;
}

async function readRequest(r: ModelRequest): Promise<SystemRequest> {
  const { rows } = await tdb.superuser<{
    state: ApprovalState | null;
    decided_by: string | null;
    status: string;
    versions: number;
    voters: string[] | null;
  }>(
    `SELECT a.state, a.decided_by, j.status,
            (SELECT count(*) FROM certificate_versions v WHERE v.job_id = j.id)::int AS versions,
            (SELECT array_agg(voter_id::text ORDER BY voter_id) FROM approval_votes WHERE approval_id = a.id) AS voters
     FROM jobs j LEFT JOIN approval_requests a ON a.job_id = j.id WHERE j.id = $1`,
    [r.jobId],
  );
  const row = rows[0];
  if (!row) throw new Error(`job ${r.jobId} is gone`);
  return {
    state: row.state,
    votes: (row.voters ?? []).map((id) => whoOfId(id) as Who).sort(),
    decidedBy: whoOfId(row.decided_by),
    job: row.status,
    versions: row.versions,
  };
}

const modelView = (r: ModelRequest): SystemRequest => ({
  state: r.state,
  votes: [...r.votes].sort(),
  decidedBy: r.decidedBy,
  job: r.job,
  versions: r.versions,
});

/** Rows, outbox and audit of every request of this run agree with the model. */
async function assertAgree(m: Model): Promise<void> {
  for (const r of m.requests) expect(await readRequest(r), `request ${r.jobId}`).toEqual(modelView(r));
  const known = new Map<string, string>();
  for (const r of m.requests) {
    known.set(r.jobId, r.jobId);
    if (r.approvalId) known.set(r.approvalId, r.approvalId);
  }
  const { rows } = await tdb.superuser<{ topic: string; id: string }>(
    `SELECT topic, coalesce(payload->>'approval_id', payload->>'job_id') AS id FROM outbox WHERE topic <> 'approvals.expired'
     UNION ALL
     SELECT topic, jsonb_array_elements_text(payload->'approval_ids') FROM outbox WHERE topic = 'approvals.expired'`,
  );
  const outbox = rows
    .filter((x) => known.has(x.id))
    .map((x) => `${x.topic}:${x.id}`)
    .sort();
  expect(outbox, 'outbox').toEqual([...m.outbox].sort());

  const audit = await tdb.superuser<{ resource_id: string; action: string; n: number }>(
    `SELECT resource_id, action, count(*)::int AS n FROM audit_records WHERE org_id = $1
       AND action = ANY($2::text[]) GROUP BY resource_id, action`,
    [org.orgId, [...DECISION_ACTIONS, 'approval_vote_cast', 'certificate_issued']],
  );
  const count = (id: string, action: string) =>
    audit.rows.find((x) => x.resource_id === id && x.action === action)?.n ?? 0;
  const decisionAction: Record<string, string> = {
    approved: 'approval_approved',
    rejected: 'approval_rejected',
    voided: 'approval_voided',
    expired: 'approval_expired',
  };
  for (const r of m.requests) {
    if (!r.approvalId || !r.state) continue;
    const decisions = DECISION_ACTIONS.map((a) => [a, count(r.approvalId as string, a)] as const).filter(([, n]) => n);
    expect(decisions, `decision records of ${r.approvalId}`).toEqual(
      r.state === 'pending' ? [] : [[decisionAction[r.state], 1]],
    );
    expect(count(r.approvalId, 'approval_vote_cast'), `vote records of ${r.approvalId}`).toBe(r.votes.length);
  }
}

// ---------------------------------------------------------------------------------------------
// Commands.

const gatedOf = (m: Model) => m.requests.filter((r) => r.approvalId !== null);
const pick = <T>(xs: readonly T[], i: number): T => xs[i % xs.length] as T;

class Submit implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly who: Who,
    readonly profile: ProfileKind,
  ) {}
  check = () => true;
  async run(m: Model): Promise<void> {
    const p = principals[this.who];
    const cn = `m${Math.random().toString(36).slice(2, 10)}.example.test`;
    const { csrPem } = await csrFor(cn);
    const call = requestCertificate(tdb.handle.db, settings, requesterOf(p, actorOf(p)), {
      profile_id: profileIds[this.profile],
      common_name: cn,
      csr: csrPem,
      justification: 'model',
    });
    if (this.who === 'auditor') {
      // An auditor reads only: refused, and nothing written.
      await expect(call).rejects.toMatchObject({ code: 'forbidden' });
      return;
    }
    const res = await call;
    const gated = this.profile !== 'open';
    expect(res.approval !== null).toBe(gated);
    m.requests.push({
      jobId: res.job.id,
      approvalId: res.approval?.id ?? null,
      profile: this.profile,
      by: this.who,
      state: gated ? 'pending' : null,
      votes: [],
      decidedBy: null,
      job: gated ? 'awaiting_approval' : 'pending',
      versions: 0,
      overdue: false,
      published: false,
    });
    m.outbox.push(gated ? `approval.submitted:${res.approval?.id}` : `job.released:${res.job.id}`);
    await assertAgree(m);
  }
  toString = () => `submit(${this.who}, ${this.profile})`;
}

class Decide implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly kind: DecisionKind,
    readonly who: Who,
    readonly target: number,
    readonly enrolled: boolean,
  ) {}
  check = (m: Readonly<Model>) => gatedOf(m as Model).length > 0;
  async run(m: Model): Promise<void> {
    const r = pick(gatedOf(m), this.target);
    const expected = decideInModel(m, r, this.kind, this.who, this.enrolled);
    const got = await decideInSystem(this.kind, this.who, r.approvalId as string, this.enrolled);
    expect(got, `${this} on ${r.profile} request by ${r.by}`).toBe(expected);
    await assertAgree(m);
  }
  toString = () => `${this.kind}(${this.who}${this.enrolled ? ' with enrollment key' : ''}, #${this.target})`;
}

/** Several decisions on one request at once: exactly one terminal winner, and the result of some serial order. */
class Concurrent implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly calls: readonly { kind: DecisionKind; who: Who; enrolled: boolean }[],
    readonly target: number,
  ) {}
  check = (m: Readonly<Model>) => gatedOf(m as Model).length > 0;
  async run(m: Model): Promise<void> {
    const index = m.requests.indexOf(pick(gatedOf(m), this.target));
    const r = m.requests[index] as ModelRequest;
    const got = await Promise.all(
      this.calls.map((c) => decideInSystem(c.kind, c.who, r.approvalId as string, c.enrolled)),
    );
    const actual = await readRequest(r);
    const orders = permutations(this.calls.map((c, i) => ({ ...c, i })));
    const candidates = orders.map((order) => {
      const clone = cloneModel(m);
      const cr = clone.requests[index] as ModelRequest;
      const answers: string[] = new Array(this.calls.length);
      for (const c of order) answers[c.i] = decideInModel(clone, cr, c.kind, c.who, c.enrolled);
      return { clone, answers, view: modelView(cr) };
    });
    const match = candidates.find(
      (c) => JSON.stringify(c.answers) === JSON.stringify(got) && JSON.stringify(c.view) === JSON.stringify(actual),
    );
    expect(
      match,
      `${this}: answers ${JSON.stringify(got)} and state ${JSON.stringify(actual)} match no serial order: ${JSON.stringify(candidates.map((c) => [c.answers, c.view]))}`,
    ).toBeDefined();
    if (match) {
      m.requests = match.clone.requests;
      m.outbox = match.clone.outbox;
    }
    await assertAgree(m);
  }
  toString = () =>
    `concurrently(${this.calls.map((c) => `${c.kind} ${c.who}${c.enrolled ? '*' : ''}`).join(', ')}, #${this.target})`;
}

/** The deadline passes (set in the past as superuser); decisions are refused from then on. */
class Backdate implements fc.AsyncCommand<Model, Real> {
  constructor(readonly target: number) {}
  check = (m: Readonly<Model>) => gatedOf(m as Model).some((r) => r.state === 'pending' && !r.overdue);
  async run(m: Model): Promise<void> {
    const r = pick(
      gatedOf(m).filter((x) => x.state === 'pending' && !x.overdue),
      this.target,
    );
    await tdb.superuser(`UPDATE approval_requests SET expires_at = now() - interval '1 second' WHERE id = $1`, [
      r.approvalId,
    ]);
    r.overdue = true;
    await assertAgree(m);
  }
  toString = () => `deadline-passes(#${this.target})`;
}

/** The reaper's expiry run: every overdue pending request expires, as system-reaper. */
class ExpireDue implements fc.AsyncCommand<Model, Real> {
  check = () => true;
  async run(m: Model): Promise<void> {
    const expired = await expireDue(tdb.handle.db, new Date(), 1_000);
    const expected = m.requests.filter((r) => r.state === 'pending' && r.overdue);
    for (const r of expected) finishInModel(m, r, 'expired', 'system-reaper');
    const mine = new Set(m.requests.map((r) => r.approvalId));
    expect(
      expired
        .map((a) => a.id)
        .filter((id) => mine.has(id))
        .sort(),
    ).toEqual(expected.map((r) => r.approvalId).sort());
    await assertAgree(m);
  }
  toString = () => 'expire-due';
}

/** The approval relay's job: released jobs from the outbox onto the issuance queue, under their deterministic ids. */
class Publish implements fc.AsyncCommand<Model, Real> {
  check = () => true;
  async run(m: Model): Promise<void> {
    await tdb.handle.db.transaction().execute(async (tx) => {
      for (;;) {
        const { rows } = await takeOutbox(tx, { limit: 500, topics: OUTBOX_TOPICS });
        if (!rows.some((r) => r.taken)) return;
        for (const row of rows) {
          if (row.topic !== 'job.released') continue;
          const { job_id } = row.payload as { job_id: string };
          await enqueue(queue, 'issuance', { job_id }, { jobId: jobIds.issuance(job_id) });
        }
      }
    });
    for (const e of m.outbox) {
      if (!e.startsWith('job.released:')) continue;
      const r = m.requests.find((x) => x.jobId === e.slice('job.released:'.length));
      if (r) r.published = true;
    }
    m.outbox = [];
    await assertAgree(m);
  }
  toString = () => 'publish';
}

/** A published message delivered `copies` times at once (re-delivery, two issuers): one certificate at most. */
class Deliver implements fc.AsyncCommand<Model, Real> {
  constructor(
    readonly target: number,
    readonly copies: number,
  ) {}
  check = (m: Readonly<Model>) => m.requests.some((r) => r.published);
  async run(m: Model): Promise<void> {
    const r = pick(
      m.requests.filter((x) => x.published),
      this.target,
    );
    const message = await queue.getJob(jobIds.issuance(r.jobId));
    expect(message?.data, 'the released job has its message on the issuance queue').toEqual({ job_id: r.jobId });
    const outcomes = await Promise.all(
      Array.from({ length: this.copies }, () => issue((message?.data as { job_id: string }).job_id)),
    );
    const expected = Array.from({ length: this.copies }, () => deliverInModel(m, r)).sort();
    expect(outcomes.map((o) => o.status).sort()).toEqual(expected);
    await assertAgree(m);
  }
  toString = () => `deliver(#${this.target} x${this.copies})`;
}

/** A message for any job of the run, released or not (stale, duplicated, forged): the row decides, not the message. */
class DeliverStale implements fc.AsyncCommand<Model, Real> {
  constructor(readonly target: number) {}
  check = (m: Readonly<Model>) => m.requests.length > 0;
  async run(m: Model): Promise<void> {
    const r = pick(m.requests, this.target);
    const outcome = await issue(r.jobId);
    expect(outcome.status, `stale delivery for a ${r.job} job`).toBe(deliverInModel(m, r));
    await assertAgree(m);
  }
  toString = () => `deliver-stale(#${this.target})`;
}

const who = fc.constantFrom(...WHO);
const target = fc.nat({ max: 50 });
// Races are mostly between principals who may decide: that is where a second winner could hide.
const racer = fc.constantFrom<Who>('op1', 'op2', 'op3', 'admin', 'admin', 'requester');
// Mostly own keys; one call in five uses the enrollment key, which must never decide.
const enrolled = fc.constantFrom(false, false, false, false, true);
const decision = fc.record({
  kind: fc.constantFrom<DecisionKind>('approve', 'approve', 'reject', 'void'),
  who: racer,
  enrolled,
});
const submit = fc
  .tuple(
    fc.constantFrom<Who>('requester', 'requester', 'op1', 'op3', 'admin', 'auditor'),
    fc.constantFrom<ProfileKind>('single', 'mofn', 'mofn', 'open'),
  )
  .map(([w, p]) => new Submit(w, p));
const decide = fc
  .tuple(fc.constantFrom<DecisionKind>('approve', 'approve', 'reject', 'void'), who, target, enrolled)
  .map(([k, w, t, e]) => new Decide(k, w, t, e));
const concurrent = fc
  .tuple(fc.array(decision, { minLength: 2, maxLength: 3 }), target)
  .map(([calls, t]) => new Concurrent(calls, t));
const deliver = fc.tuple(target, fc.integer({ min: 1, max: 3 })).map(([t, n]) => new Deliver(t, n));
// fc.commands picks uniformly among these: repeats weigh submissions and decisions up.
const commands = [
  submit,
  submit,
  submit,
  decide,
  decide,
  decide,
  concurrent,
  concurrent,
  target.map((t) => new Backdate(t)),
  fc.constant(null).map(() => new ExpireDue()),
  fc.constant(null).map(() => new Publish()),
  deliver,
  deliver,
  target.map((t) => new DeliverStale(t)),
];

describe('approval state machine: model against the real database and queue', () => {
  it(`agrees with the model after every step (${RUNS} runs)`, { timeout: 600_000 }, async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.commands(commands, { maxCommands: 40, size: 'max' }), async (cmds) => {
        run++;
        await fc.asyncModelRun(() => ({ model: { requests: [], outbox: [] }, real: { run } }), cmds);
        if (process.env.MODEL_DEBUG) console.info(cmds.toString());
      }),
      { numRuns: RUNS, endOnFailure: false },
    );
    // And after all of it the org's audit chain still verifies.
    const report = await verifyAuditChain(tdb.handle, org.orgId);
    expect(report.ok, JSON.stringify(report)).toBe(true);
  });
});
