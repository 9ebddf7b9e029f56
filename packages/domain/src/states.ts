/** Job lifecycle (SPEC §2). Only `pending` jobs are ever released to the issuer. */
export const JOB_STATUSES = ['awaiting_approval', 'pending', 'running', 'completed', 'failed', 'cancelled'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

/** A job in one of these states blocks another renewal of the same certificate. */
export const OPEN_JOB_STATUSES: readonly JobStatus[] = ['awaiting_approval', 'pending', 'running'];

const JOB_TRANSITIONS: Record<JobStatus, readonly JobStatus[]> = {
  awaiting_approval: ['pending', 'cancelled'],
  pending: ['running', 'completed', 'failed'],
  running: ['completed', 'failed', 'pending'],
  completed: [],
  failed: [],
  cancelled: [],
};

export const canTransitionJob = (from: JobStatus, to: JobStatus): boolean => JOB_TRANSITIONS[from].includes(to);

export const APPROVAL_STATES = ['pending', 'approved', 'rejected', 'expired', 'voided'] as const;
export type ApprovalState = (typeof APPROVAL_STATES)[number];
export type TerminalApprovalState = Exclude<ApprovalState, 'pending'>;

export const isTerminalApproval = (s: ApprovalState): s is TerminalApprovalState => s !== 'pending';

/** Outcome labels of `countersign_approval_decisions_total` (SPEC §7). */
export const DECISION_OUTCOMES = ['approved', 'rejected', 'expired', 'voided', 'bypassed'] as const;
export type DecisionOutcome = (typeof DECISION_OUTCOMES)[number];

export const JOB_KINDS = ['issuance', 'renewal'] as const;
export type JobKind = (typeof JOB_KINDS)[number];
