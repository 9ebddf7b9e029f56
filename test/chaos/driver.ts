import { generateKeyAndCsr } from '@countersign/ca/csr-generate';
import { type IntakeSigner, signRenewalRequest } from '@countersign/client/queue';
import {
  createRedis,
  enqueue,
  openQueue,
  type PayloadOf,
  type RenewalRequest,
  type RenewalRequestResult,
} from '@countersign/queues';
import type { Redis } from 'ioredis';
import type { Channel, OpPlan, PrincipalName, ProfileKind, Step, Submitter } from './plan.ts';

/**
 * The client side of a chaos run: submits each planned request over HTTP or
 * the renewal-requests queue and then plays its decisions. A client whose call
 * fails (connection refused while the api restarts, a 5xx while PostgreSQL is
 * down, a queue job lost to a Redis wipe) retries with the same Idempotency-Key
 * / idempotency_key, so "accepted" means it got a 2xx (or a completed queue
 * job) at least once. Everything it saw is recorded for the checks.
 */
export interface Principal {
  readonly id: string;
  /** The principal's own key (it minted it itself): the one it votes and decides with. */
  readonly key: string;
  readonly email: string;
  /**
   * An enrollment key an admin made for it (spent or not): it reads and requests, and must never decide.
   * Held by the approvers, for the `enrollment` noise.
   */
  readonly enrollmentKey?: string | undefined;
}
export type Principals = Record<PrincipalName, Principal>;
/**
 * The service account each submitter files its queue requests through (the intake takes only messages
 * signed by a service principal): it requests, and makes the refused self-decisions, of its queue ops.
 */
export type IntakeAccounts = Record<Submitter, Principal & { readonly signer: IntakeSigner }>;
export type ProfileIds = Record<ProfileKind, string>;

export interface Accepted {
  readonly index: number;
  readonly key: string;
  readonly channel: Channel;
  readonly submitter: Submitter;
  readonly profile: ProfileKind;
  readonly renewal: boolean;
  readonly certificateId: string;
  readonly jobId: string;
  readonly approvalId: string | null;
  readonly at: number;
  /** Attempts it took (HTTP calls, or queue jobs enqueued). */
  readonly attempts: number;
}

export interface DecisionCall {
  readonly index: number;
  readonly approvalId: string;
  readonly kind: 'approve' | 'reject' | 'void';
  readonly by: PrincipalName;
  /** noise: a refusal is the expected answer. */
  readonly role: 'step' | 'self' | 'outsider' | 'double-vote' | 'enrollment' | 'related';
  /** With which credential: the caller's own key, or (the `enrollment` noise) its enrollment key. */
  readonly credential: 'own' | 'enrollment';
  readonly status: number;
  readonly code: string | null;
  /** The request's state in a 200 answer. */
  readonly state: string | null;
  /** An earlier attempt got no answer: the server may have acted on it, so a 409 proves nothing. */
  readonly ambiguous: boolean;
  readonly at: number;
}

export interface DriverRecord {
  accepted: Accepted[];
  refused: { index: number; channel: Channel; reason: string }[];
  decisions: DecisionCall[];
  /** Client-visible broken promises (an unexpected status, a self-approval that passed, a call that never got an answer). */
  anomalies: string[];
  httpRetries: number;
  queueResubmits: number;
}

export interface DriverOptions {
  readonly apiUrl: string;
  readonly redisUrl: string;
  readonly queuePrefix: string;
  readonly seed: number;
  readonly principals: Principals;
  readonly intake: IntakeAccounts;
  readonly profiles: ProfileIds;
  readonly domain: string;
  readonly concurrency: number;
  /** How long one call may keep retrying before the client gives up (an availability violation). */
  readonly callDeadlineMs: number;
  readonly log: (line: string) => void;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface HttpAnswer {
  status: number;
  body: unknown;
  attempts: number;
  ambiguous: boolean;
}

class GaveUp extends Error {}

const codeOf = (body: unknown): string | null =>
  typeof body === 'object' && body !== null && 'code' in body && typeof body.code === 'string' ? body.code : null;

export class Driver {
  readonly record: DriverRecord = {
    accepted: [],
    refused: [],
    decisions: [],
    anomalies: [],
    httpRetries: 0,
    queueResubmits: 0,
  };
  private readonly redis: Redis;
  private readonly queue: ReturnType<typeof openQueue<'renewal-requests'>>;
  private done = 0;

  constructor(private readonly o: DriverOptions) {
    this.redis = createRedis(o.redisUrl, 'producer');
    this.redis.on('error', () => {});
    this.queue = openQueue('renewal-requests', { connection: this.redis, prefix: o.queuePrefix });
    this.queue.on('error', () => {});
  }

  async close(): Promise<void> {
    await this.queue.close().catch(() => {});
    this.redis.disconnect();
  }

  get completed(): number {
    return this.done;
  }

  /** Runs every op, `concurrency` at a time, in plan order. */
  async run(ops: readonly OpPlan[]): Promise<void> {
    let next = 0;
    const worker = async () => {
      for (;;) {
        const op = ops[next++];
        if (!op) return;
        try {
          await this.runOp(op);
        } catch (err) {
          this.record.anomalies.push(`op ${op.index}: ${err instanceof Error ? err.message : String(err)}`);
        }
        this.done++;
      }
    };
    await Promise.all(Array.from({ length: this.o.concurrency }, worker));
  }

  /** One HTTP call, retried on no answer, 5xx and 429 until the deadline. */
  private async http(key: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
    const deadline = Date.now() + this.o.callDeadlineMs;
    let ambiguous = false;
    let last = '';
    for (let attempt = 1; ; attempt++) {
      try {
        const res = await fetch(`${this.o.apiUrl}${path}`, {
          method,
          headers: {
            authorization: `Bearer ${key}`,
            ...(body === undefined ? {} : { 'content-type': 'application/json' }),
            ...headers,
          },
          body: body === undefined ? undefined : JSON.stringify(body),
          signal: AbortSignal.timeout(15_000),
        });
        const text = await res.text();
        const parsed: unknown = text && res.headers.get('content-type')?.includes('json') ? JSON.parse(text) : text;
        if (res.status < 500 && res.status !== 429)
          return { status: res.status, body: parsed, attempts: attempt, ambiguous } satisfies HttpAnswer;
        // A 5xx may come after the server committed (e.g. the connection died on the way back).
        ambiguous = true;
        last = `${res.status} ${text.slice(0, 200)}`;
      } catch (err) {
        ambiguous = true;
        last =
          err instanceof Error
            ? `${err.message}${err.cause instanceof Error ? `: ${err.cause.message}` : ''}`
            : String(err);
      }
      this.record.httpRetries++;
      if (Date.now() > deadline)
        throw new GaveUp(`${method} ${path}: no answer within ${this.o.callDeadlineMs} ms (last: ${last})`);
      await sleep(Math.min(2_000, 100 * 2 ** Math.min(attempt, 5)) * (0.5 + Math.random() / 2));
    }
  }

  private async csr(cn: string): Promise<string> {
    return (await generateKeyAndCsr({ commonName: cn, dnsNames: [cn] })).csrPem;
  }

  private renewalTarget(op: OpPlan): Accepted | undefined {
    if (!op.renew) return undefined;
    // Only certificates issued a while ago: a renewal of one still in flight is renewal_in_progress.
    // And requested through the same channel: a queue op's requester is the submitter's service account.
    const candidates = this.record.accepted.filter(
      (a) =>
        a.submitter === op.submitter &&
        a.channel === op.channel &&
        a.profile === op.profile &&
        Date.now() - a.at > 3_000,
    );
    return candidates[op.index % Math.max(1, candidates.length)];
  }

  private async runOp(op: OpPlan): Promise<void> {
    const target = this.renewalTarget(op);
    const submitted = op.channel === 'http' ? await this.submitHttp(op, target) : await this.submitQueue(op, target);
    if (!submitted) return;
    this.record.accepted.push(submitted);
    if (!submitted.approvalId) return;
    const approvalId = submitted.approvalId;
    await sleep(op.decideAfterMs);
    if ((op.noise === 'self' || op.noise === 'outsider') && op.noiseBy) {
      await this.decide(op, approvalId, { kind: 'approve', by: op.noiseBy }, op.noise);
    }
    if ((op.noise === 'enrollment' || op.noise === 'related') && op.noiseBy) {
      await this.decide(op, approvalId, { kind: op.noiseKind, by: op.noiseBy }, op.noise);
    }
    for (const [i, step] of op.steps.entries()) {
      if (i > 0) await sleep(op.stepGapMs);
      await this.play(op, approvalId, step);
      if (i === 0 && op.noise === 'double-vote' && op.noiseBy) {
        await this.decide(op, approvalId, { kind: 'approve', by: op.noiseBy }, 'double-vote');
      }
    }
  }

  private async play(op: OpPlan, approvalId: string, step: Step): Promise<void> {
    if (step.kind === 'concurrent') {
      await Promise.all(step.steps.map((s) => this.play(op, approvalId, s)));
      return;
    }
    await this.decide(op, approvalId, step, 'step');
  }

  private async decide(
    op: OpPlan,
    approvalId: string,
    step: Exclude<Step, { kind: 'concurrent' }>,
    role: DecisionCall['role'],
  ): Promise<void> {
    // A self-decision is made by whoever requested: for a queue op, the submitter's service account.
    const who = role === 'self' && op.channel === 'queue' ? this.o.intake[op.submitter] : this.o.principals[step.by];
    const credential = role === 'enrollment' ? 'enrollment' : 'own';
    const key = credential === 'enrollment' ? who.enrollmentKey : who.key;
    if (!key) throw new Error(`op ${op.index}: ${step.by} holds no enrollment key for the enrollment noise`);
    const body =
      step.kind === 'approve'
        ? { note: `chaos ${op.key}` }
        : step.kind === 'reject'
          ? { note: `chaos reject ${op.key}` }
          : { reason: `chaos void ${op.key}` };
    let r: HttpAnswer;
    try {
      r = await this.http(key, 'POST', `/api/v1/approvals/${approvalId}/${step.kind}`, body);
    } catch (err) {
      this.record.anomalies.push(`op ${op.index} ${step.kind} by ${step.by}: ${(err as Error).message}`);
      return;
    }
    const code = codeOf(r.body);
    const state =
      r.status === 200 && typeof r.body === 'object' && r.body !== null && 'state' in r.body
        ? String(r.body.state)
        : null;
    this.record.decisions.push({
      index: op.index,
      approvalId,
      kind: step.kind,
      by: step.by,
      role,
      credential,
      status: r.status,
      code,
      state,
      ambiguous: r.ambiguous,
      at: Date.now(),
    });
    const what = `op ${op.index} (${op.profile}) ${role} ${step.kind} by ${step.by}: ${r.status} ${code ?? state ?? ''}`;
    if (role === 'self' && !(r.status === 403 && code === 'two_person_integrity')) {
      this.record.anomalies.push(`${what}: a self-decision must be 403 two_person_integrity`);
    } else if (role === 'enrollment' && !(r.status === 403 && code === 'enrollment_credential')) {
      this.record.anomalies.push(`${what}: a decision with an enrollment key must be 403 enrollment_credential`);
    } else if (role === 'related' && !(r.status === 403 && code === 'two_person_integrity')) {
      this.record.anomalies.push(
        `${what}: a decision by the requester's creator must be 403 two_person_integrity (provenance)`,
      );
    } else if (role === 'outsider' && r.status !== 403 && r.status !== 404) {
      this.record.anomalies.push(`${what}: a principal who may not decide must get 403 or 404`);
    } else if (
      role === 'double-vote' &&
      !(r.status === 409 && (code === 'already_voted' || code === 'already_decided'))
    ) {
      this.record.anomalies.push(`${what}: a second vote must be 409 already_voted`);
    } else if (
      role === 'step' &&
      r.status !== 200 &&
      !(r.status === 409 && ['already_decided', 'already_voted'].includes(code ?? ''))
    ) {
      this.record.anomalies.push(`${what}: an eligible decision answers 200 or 409`);
    } else if (role === 'step' && r.status === 409 && code === 'already_voted' && !r.ambiguous) {
      this.record.anomalies.push(`${what}: already_voted for a first vote`);
    }
  }

  private justification(op: OpPlan): string {
    return `chaos seed ${this.o.seed} op ${op.index}`;
  }

  private async submitHttp(op: OpPlan, target: Accepted | undefined): Promise<Accepted | null> {
    const who = this.o.principals[op.submitter];
    const headers = { 'idempotency-key': op.key };
    let r: HttpAnswer;
    try {
      if (target) {
        r = await this.http(
          who.key,
          'POST',
          `/api/v1/certificates/${target.certificateId}/renew`,
          { justification: this.justification(op) },
          headers,
        );
      } else {
        const cn = `op${op.index}-s${this.o.seed}.${this.o.domain}`;
        r = await this.http(
          who.key,
          'POST',
          '/api/v1/certificates',
          {
            profile_id: this.o.profiles[op.profile],
            common_name: cn,
            csr: await this.csr(cn),
            justification: this.justification(op),
          },
          headers,
        );
      }
    } catch (err) {
      this.record.anomalies.push(`op ${op.index} submit: ${(err as Error).message}`);
      return null;
    }
    if (r.status === 202) {
      // A renewal answers {job, approval}; a new request {certificate, job, approval}.
      const b = r.body as { certificate?: { id: string }; job: { id: string }; approval: { id: string } | null };
      const certificateId = target?.certificateId ?? b.certificate?.id;
      if (!certificateId) throw new Error(`op ${op.index}: a 202 without the certificate: ${JSON.stringify(r.body)}`);
      return {
        index: op.index,
        key: op.key,
        channel: 'http',
        submitter: op.submitter,
        profile: op.profile,
        renewal: target !== undefined,
        certificateId,
        jobId: b.job.id,
        approvalId: b.approval?.id ?? null,
        at: Date.now(),
        attempts: r.attempts,
      };
    }
    const code = codeOf(r.body);
    this.record.refused.push({ index: op.index, channel: 'http', reason: `${r.status} ${code}` });
    if (!(target && r.status === 409 && code === 'renewal_in_progress')) {
      this.record.anomalies.push(
        `op ${op.index} submit over HTTP: unexpected ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`,
      );
    }
    return null;
  }

  /** Enqueues until a job of this idempotency_key completes (a lost or failed job is enqueued again). */
  private async submitQueue(op: OpPlan, target: Accepted | undefined): Promise<Accepted | null> {
    const who = this.o.intake[op.submitter];
    let request: RenewalRequest;
    if (target) {
      request = {
        idempotency_key: op.key,
        certificate_id: target.certificateId,
        justification: this.justification(op),
      };
    } else {
      const cn = `op${op.index}-s${this.o.seed}.${this.o.domain}`;
      request = {
        idempotency_key: op.key,
        profile_id: this.o.profiles[op.profile],
        common_name: cn,
        csr: await this.csr(cn),
        justification: this.justification(op),
      };
    }
    const deadline = Date.now() + this.o.callDeadlineMs;
    for (let attempt = 1; ; attempt++) {
      if (attempt > 1) this.record.queueResubmits++;
      const jobId = `${op.key}-a${attempt}`;
      // Signed afresh for each job: a copy of an earlier job's message would be refused as a replay, while a
      // new signature of the same request under the same idempotency_key gets the first answer.
      const payload: PayloadOf<'renewal-requests'> = { jws: await signRenewalRequest(request, who.signer) };
      const outcome = await this.runQueueJob(jobId, payload, deadline);
      if (outcome.kind === 'completed') {
        return {
          index: op.index,
          key: op.key,
          channel: 'queue',
          submitter: op.submitter,
          profile: op.profile,
          renewal: target !== undefined,
          certificateId: outcome.value.certificate_id,
          jobId: outcome.value.job_id,
          approvalId: outcome.value.approval_id,
          at: Date.now(),
          attempts: attempt,
        };
      }
      if (outcome.kind === 'refused') {
        this.record.refused.push({ index: op.index, channel: 'queue', reason: outcome.reason });
        if (!(target && outcome.reason.startsWith('renewal_in_progress:'))) {
          this.record.anomalies.push(`op ${op.index} submit over the queue: refused: ${outcome.reason}`);
        }
        return null;
      }
      if (outcome.kind === 'gave-up') {
        this.record.anomalies.push(
          `op ${op.index} submit over the queue: no completed job within ${this.o.callDeadlineMs} ms (${outcome.reason})`,
        );
        return null;
      }
      // lost (Redis wiped) or failed for a transient reason: enqueue it again under the same idempotency_key.
    }
  }

  private async runQueueJob(
    jobId: string,
    payload: PayloadOf<'renewal-requests'>,
    deadline: number,
  ): Promise<
    | { kind: 'completed'; value: RenewalRequestResult }
    | { kind: 'refused'; reason: string }
    | { kind: 'again'; reason: string }
    | { kind: 'gave-up'; reason: string }
  > {
    let last = '';
    // Enqueue; a retry after a lost answer is a no-op under the same job id.
    for (;;) {
      try {
        await enqueue(this.queue, 'renewal-requests', payload, { jobId });
        break;
      } catch (err) {
        last = (err as Error).message;
        if (Date.now() > deadline) return { kind: 'gave-up', reason: `enqueue: ${last}` };
        await sleep(250 + Math.random() * 500);
      }
    }
    for (;;) {
      await sleep(200 + Math.random() * 200);
      if (Date.now() > deadline) return { kind: 'gave-up', reason: `waiting: ${last}` };
      try {
        const state = await this.queue.getJobState(jobId);
        if (state === 'unknown') return { kind: 'again', reason: 'job lost' };
        if (state === 'completed' || state === 'failed') {
          const job = await this.queue.getJob(jobId);
          if (!job) return { kind: 'again', reason: 'job lost' };
          if (state === 'completed') return { kind: 'completed', value: job.returnvalue as RenewalRequestResult };
          const reason = job.failedReason ?? '';
          // Domain refusals fail the job for good with "<code>: <message>"; anything else was transient.
          if (/^[a-z_]+: /.test(reason)) return { kind: 'refused', reason };
          return { kind: 'again', reason };
        }
      } catch (err) {
        last = (err as Error).message;
      }
    }
  }
}
