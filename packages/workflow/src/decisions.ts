import {
  type ApprovalRow,
  type AuditEntry,
  addOutboxEvents,
  appendAuditMany,
  approvals,
  type Db,
  jobs,
  pgCode,
  pgConstraint,
  releaseApprovedJob,
  type Tx,
  UNIQUE_VIOLATION,
  type VoteRow,
} from '@countersign/db';
import {
  type Actor,
  actorOf,
  assertMayDecide,
  assertOwnCredential,
  type Caller,
  type Credential,
  type DecisionOutcome,
  DomainError,
  isAdmin,
  isBypassEnvironment,
  notFound,
  type Principal,
  quorumReached,
  readsOnlyOwn,
  SYSTEM_ACTORS,
  type TerminalApprovalState,
} from '@countersign/domain';

/**
 * The approval state machine's transitions (SPEC §1): vote/approve, reject,
 * void, expire and bypass. Each runs in one transaction that row-locks the
 * request, so concurrent decisions serialize and exactly one wins; the
 * decision, the job transition, the outbox event and the audit record commit
 * together or not at all.
 */
export interface DecisionResult {
  approval: ApprovalRow;
  votes: VoteRow[];
  /** Set when this call ended the request; callers count it in metrics after commit. */
  outcome: DecisionOutcome | null;
}

const alreadyDecided = (a: ApprovalRow) =>
  new DomainError('already_decided', `approval request is already ${a.state}`, { state: a.state });

/**
 * A request past its deadline is as good as expired even before the reaper
 * gets to it: it can no longer be approved or rejected (the database refuses too).
 */
function assertDecidable(a: ApprovalRow): void {
  if (a.state !== 'pending') throw alreadyDecided(a);
  if (a.expires_at.getTime() <= Date.now()) {
    throw new DomainError('already_decided', `approval request expired at ${a.expires_at.toISOString()}`, {
      state: 'expired',
    });
  }
}

/** Locks the request (hidden from requesters who may read only their own) with its profile's approvers. */
async function lockVisible(tx: Tx, p: Principal, approvalId: string) {
  const locked = await approvals.lockForDecision(tx, p.orgId, approvalId, p.id);
  if (!locked || (readsOnlyOwn(p) && locked.approval.requested_by !== p.id)) throw notFound('approval request');
  return locked;
}

function assertEligible(
  c: Caller,
  locked: { approval: ApprovalRow; approvers: string[]; relatedToRequester: boolean },
) {
  assertMayDecide(c, {
    requestedBy: locked.approval.requested_by,
    profileApprovers: locked.approvers,
    relatedToRequester: locked.relatedToRequester,
  });
}

const credentialRef = (c: Credential) => ({ kind: c.kind, id: c.id });

/** Ends the request and moves its job; shared by every terminal transition. */
async function finish(
  tx: Tx,
  a: ApprovalRow,
  state: TerminalApprovalState,
  actor: Actor,
  credential: Credential | null,
  note: string | null,
  extraAudit: AuditEntry[],
  action: AuditEntry['action'],
): Promise<ApprovalRow> {
  const decided = await approvals.markDecided(tx, {
    id: a.id,
    state,
    decidedBy: actor.id,
    decidedByType: actor.type,
    note,
    credential: credential ? credentialRef(credential) : null,
  });
  if (!decided) throw alreadyDecided(a);
  const audit: AuditEntry[] = [
    ...extraAudit,
    {
      orgId: a.org_id,
      actor,
      action,
      resourceType: 'approval',
      resourceId: a.id,
      details: {
        state,
        job_id: a.job_id,
        note,
        decided_at: decided.decided_at?.toISOString() ?? null,
        ...(credential ? { credential: credentialRef(credential) } : {}),
      },
    },
  ];
  if (state === 'approved') {
    // The release, its events and every record of the decision in one statement (releaseApprovedJob).
    audit.push({
      orgId: a.org_id,
      actor,
      action: 'job_released',
      resourceType: 'job',
      resourceId: a.job_id,
      details: { status: 'pending', approval_id: a.id },
    });
    const released = await releaseApprovedJob(tx, {
      orgId: a.org_id,
      jobId: a.job_id,
      events: [
        { topic: 'job.released', payload: { job_id: a.job_id } },
        { topic: 'approval.decided', payload: { approval_id: a.id, outcome: state } },
      ],
      audit,
      at: new Date(),
    });
    if (!released) throw new DomainError('conflict', 'the job of this request is no longer awaiting approval');
    return decided;
  }
  const reason = `approval ${state}`;
  const job = await jobs.cancelJob(tx, a.job_id, reason);
  if (job) {
    audit.push({
      orgId: a.org_id,
      actor,
      action: 'job_cancelled',
      resourceType: 'job',
      resourceId: job.id,
      details: { status: 'cancelled', error: reason, approval_id: a.id },
    });
  }
  await addOutboxEvents(tx, a.org_id, [{ topic: 'approval.decided', payload: { approval_id: a.id, outcome: state } }]);
  await appendAuditMany(tx, audit);
  return decided;
}

/** Casts an approving vote; approves the request once `approvals_required` distinct approvers voted. */
export async function approve(db: Db, p: Caller, approvalId: string, note: string | null): Promise<DecisionResult> {
  return db.transaction().execute(async (tx) => {
    const locked = await lockVisible(tx, p, approvalId);
    const a = locked.approval;
    assertEligible(p, locked);
    assertDecidable(a);
    const actor = actorOf(p);
    let votes: VoteRow[];
    try {
      votes = await approvals.castVote(tx, {
        approvalId: a.id,
        orgId: a.org_id,
        voterId: p.id,
        voterType: actor.type,
        requestedBy: a.requested_by,
        note,
        credential: credentialRef(p.credential),
      });
    } catch (err) {
      if (pgCode(err) === UNIQUE_VIOLATION && pgConstraint(err) === 'approval_votes_pkey') {
        throw new DomainError('already_voted', 'you have already voted on this request');
      }
      throw err;
    }
    const voteAudit: AuditEntry = {
      orgId: a.org_id,
      actor,
      action: 'approval_vote_cast',
      resourceType: 'approval',
      resourceId: a.id,
      details: {
        state: 'pending',
        note,
        votes: votes.length,
        approvals_required: a.approvals_required,
        credential: credentialRef(p.credential),
      },
    };
    if (!quorumReached(votes.length, a.approvals_required)) {
      await appendAuditMany(tx, [voteAudit]);
      return { approval: a, votes, outcome: null };
    }
    const decided = await finish(tx, a, 'approved', actor, p.credential, note, [voteAudit], 'approval_approved');
    return { approval: decided, votes, outcome: 'approved' };
  });
}

export async function reject(db: Db, p: Caller, approvalId: string, note: string): Promise<DecisionResult> {
  return db.transaction().execute(async (tx) => {
    const locked = await lockVisible(tx, p, approvalId);
    const a = locked.approval;
    assertEligible(p, locked);
    assertDecidable(a);
    const decided = await finish(tx, a, 'rejected', actorOf(p), p.credential, note, [], 'approval_rejected');
    return { approval: decided, votes: await approvals.listVotes(tx, [a.id]), outcome: 'rejected' };
  });
}

export async function voidRequest(db: Db, p: Caller, approvalId: string, reason: string): Promise<DecisionResult> {
  return db.transaction().execute(async (tx) => {
    const { approval: a } = await lockVisible(tx, p, approvalId);
    if (!isAdmin(p)) throw new DomainError('forbidden', 'only an admin may void an approval request');
    assertOwnCredential(p, 'void a request');
    if (a.state !== 'pending') throw alreadyDecided(a);
    const decided = await finish(tx, a, 'voided', actorOf(p), p.credential, reason, [], 'approval_voided');
    return { approval: decided, votes: await approvals.listVotes(tx, [a.id]), outcome: 'voided' };
  });
}

/**
 * Expires up to `limit` requests past their deadline, as `system-reaper`, in
 * one set-based statement: the requests, their jobs (cancelled with
 * 'approval expired'), one audit record each and one `approvals.expired`
 * outbox event per org for the batch (approvals.expireBatch).
 * Safe to run late, twice or on several reapers at once: rows are claimed with
 * SKIP LOCKED and each change is compare-and-set.
 */
export async function expireDue(db: Db, now: Date, limit: number): Promise<approvals.ExpiredApproval[]> {
  return db.transaction().execute((tx) => approvals.expireBatch(tx, now, limit, SYSTEM_ACTORS.reaper));
}

/**
 * Auto-approves a pending request as `system-bypass` (COUNTERSIGN_APPROVAL_BYPASS,
 * dev/CI only) when its profile allows the bypass, which no production
 * profile can (the database refuses it too). Returns null when there was
 * nothing to do (already decided, or the profile does not allow it).
 */
export async function bypass(db: Db, approvalId: string): Promise<DecisionResult | null> {
  return db.transaction().execute(async (tx) => {
    const found = await approvals.findApprovalById(tx, approvalId);
    if (!found) return null;
    const a = await approvals.lockApproval(tx, found.org_id, approvalId);
    if (!a || a.state !== 'pending' || !isBypassEnvironment(a.environment) || a.expires_at.getTime() <= Date.now())
      return null;
    if (!(await approvals.profileAllowsBypass(tx, a.profile_id))) return null;
    const decided = await finish(
      tx,
      a,
      'approved',
      SYSTEM_ACTORS.bypass,
      null,
      'approval bypassed (COUNTERSIGN_APPROVAL_BYPASS)',
      [],
      'approval_bypassed',
    );
    return { approval: decided, votes: [], outcome: 'bypassed' };
  });
}
