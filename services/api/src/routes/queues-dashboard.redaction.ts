import { ERROR_STATUS } from '@countersign/domain';
import { EXPIRY_BATCH, MAINTENANCE_TASKS, NOTIFICATION_KINDS, QUEUE_NAMES } from '@countersign/queues';

/**
 * What the queue dashboard may show of a job. The board is the installation operator's and the queues
 * carry every org's work: payloads hold CSRs, justifications, common names and signed requests (JWS),
 * failure reasons and stack traces quote them, and a producer names its jobs as it likes. So the
 * board shows ids, names from Countersign's own vocabulary, states, timestamps, attempts and the class
 * of a failure, each built from an allow-list: a field a later bull-board adds stays hidden, and a
 * route it adds is refused, until someone has looked at what it returns (BOARD_ROUTES).
 */

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const UUID_IN_TEXT = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;
const FIELD = /^[a-z][a-z0-9_]{0,63}$/;
/** Ids one array shows at most (an expiry batch names up to 10,000 requests). */
const MAX_IDS = 20;

/** Words Countersign itself puts in job names and payloads; anything else a producer wrote is withheld. */
const VOCABULARY: ReadonlySet<string> = new Set([
  ...Object.values(QUEUE_NAMES),
  ...MAINTENANCE_TASKS,
  ...NOTIFICATION_KINDS,
  EXPIRY_BATCH,
]);
/** The reaper's versioned scheduler ids, `expire-approvals-v1`. */
const SCHEDULER_ID = new RegExp(`^(${MAINTENANCE_TASKS.join('|')})-v\\d{1,4}$`);

export const WITHHELD_NAME = '(name withheld)';
const WITHHELD_REASON = "reason withheld: it may quote the request; the service's log has it under this job id";

type Json = Record<string, unknown>;
const isRecord = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

function safeScalar(v: unknown): boolean {
  if (typeof v === 'boolean') return true;
  if (typeof v === 'number') return Number.isFinite(v);
  if (typeof v === 'string') return UUID.test(v) || VOCABULARY.has(v) || SCHEDULER_ID.test(v);
  return v === null;
}

/**
 * A payload or return value as the board shows it: top-level fields holding ids, numbers, booleans or
 * Countersign's own words; arrays of ids (the first MAX_IDS). Text, nested objects and unexpected field
 * names are dropped, and `_withheld` counts what was.
 */
export function redactPayload(value: unknown): Json {
  if (!isRecord(value)) return value === undefined || value === null ? {} : { _withheld: 1 };
  const out: Json = {};
  let withheld = 0;
  for (const [key, v] of Object.entries(value)) {
    if (FIELD.test(key) && safeScalar(v)) {
      out[key] = v;
    } else if (
      FIELD.test(key) &&
      Array.isArray(v) &&
      v.length > 0 &&
      v.every((x) => typeof x === 'string' && UUID.test(x))
    ) {
      out[key] = v.slice(0, MAX_IDS);
      if (v.length > MAX_IDS) out[`${key}_count`] = v.length;
    } else {
      withheld++;
    }
  }
  if (withheld > 0) out._withheld = withheld;
  return out;
}

export function redactName(name: unknown): string {
  return typeof name === 'string' && (VOCABULARY.has(name) || name === '') ? name : WITHHELD_NAME;
}

export function redactProgress(progress: unknown): number {
  return typeof progress === 'number' && Number.isFinite(progress) ? progress : 0;
}

/** Messages Countersign's workers and BullMQ write, that carry nothing but ids and fixed words. */
const SAFE_REASONS: readonly RegExp[] = [
  /^job stalled more than allowable limit$/,
  /^principal <id> does not exist or is disabled$/,
  /^approval request <id> is still pending$/,
  /^(approval request|approval_id|version_id|job <id>|profile <id>|the profile of job <id>) does not exist$/,
];
/** Messages that begin with a fixed class and go on to quote the request: the class is shown. */
const REASON_CLASSES: readonly RegExp[] = [
  /^invalid [a-z-]+ payload(?=:|$)/,
  /^\d+ of \d+ deliveries failed(?=:|$)/,
  /^\d+ of \d+ mail events could not be checked(?=:|$)/,
  /^no issuer connector(?= )/,
  /^no handler for maintenance task(?= )/,
];
const CODE_PREFIX = /^([a-z_]+):/;

/**
 * A failure reason as the board shows it. A DomainError's message (`domain_not_allowed: web.example.com
 * is not ...`) quotes what was asked for, and so may a database error: only the error code, a known
 * class, or a message of fixed words and ids is shown.
 */
export function redactReason(reason: unknown): string | undefined {
  if (typeof reason !== 'string' || reason === '') return undefined;
  const shape = reason.replace(UUID_IN_TEXT, '<id>');
  if (SAFE_REASONS.some((r) => r.test(shape))) return reason;
  const code = CODE_PREFIX.exec(reason)?.[1];
  if (code !== undefined && code in ERROR_STATUS) return `${code} (details withheld)`;
  for (const r of REASON_CLASSES) {
    const m = r.exec(reason);
    if (m) return `${m[0]} (details withheld)`;
  }
  return WITHHELD_REASON;
}

const number = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** Job options: how it is retried and kept, never its deduplication id, parent or telemetry. */
function redactOpts(opts: unknown): Json {
  if (!isRecord(opts)) return {};
  const out: Json = {};
  for (const key of ['attempts', 'delay', 'priority'] as const) {
    const n = number(opts[key]);
    if (n !== undefined) out[key] = n;
  }
  if (typeof opts.lifo === 'boolean') out.lifo = opts.lifo;
  const backoff = opts.backoff;
  if (typeof backoff === 'number') out.backoff = backoff;
  else if (isRecord(backoff) && (backoff.type === 'exponential' || backoff.type === 'fixed'))
    out.backoff = { type: backoff.type, delay: number(backoff.delay) };
  for (const key of ['removeOnComplete', 'removeOnFail'] as const) {
    const v = opts[key];
    if (typeof v === 'boolean' || typeof v === 'number') out[key] = v;
    else if (isRecord(v)) out[key] = { age: number(v.age), count: number(v.count) };
  }
  return out;
}

/** One job as bull-board's formatJob built it, rebuilt from the fields the board may show. */
export function redactJob(job: unknown): Json {
  if (!isRecord(job)) return {};
  const out: Json = {
    id: typeof job.id === 'string' || typeof job.id === 'number' ? job.id : null,
    name: redactName(job.name),
    timestamp: number(job.timestamp) ?? 0,
    processedOn: number(job.processedOn),
    processedBy: typeof job.processedBy === 'string' ? job.processedBy : undefined,
    finishedOn: number(job.finishedOn),
    progress: redactProgress(job.progress),
    attempts: number(job.attempts) ?? 0,
    delay: number(job.delay),
    failedReason: redactReason(job.failedReason),
    stacktrace: [],
    opts: redactOpts(job.opts),
    data: redactPayload(job.data),
    returnValue:
      job.returnValue === undefined || job.returnValue === null ? job.returnValue : redactPayload(job.returnValue),
    isFailed: job.isFailed === true,
  };
  for (const key of ['priority', 'attemptsStarted', 'stalledCounter'] as const) {
    const n = number(job[key]);
    if (n !== undefined) out[key] = n;
  }
  const deferred = redactReason(job.deferredFailure);
  if (deferred !== undefined) out.deferredFailure = deferred;
  return out;
}

function redactFlowNode(node: unknown): unknown {
  if (!isRecord(node)) return node;
  const reasons = node.ignoredChildFailureReasons;
  return {
    id: node.id,
    name: redactName(node.name),
    state: node.state,
    progress: redactProgress(node.progress),
    queueName: node.queueName,
    children: Array.isArray(node.children) ? node.children.map(redactFlowNode) : [],
    ...(node.truncated === true ? { truncated: true } : {}),
    ...(isRecord(node.dependencies) ? { dependencies: node.dependencies } : {}),
    ...(isRecord(reasons)
      ? {
          ignoredChildFailureReasons: Object.fromEntries(
            Object.entries(reasons).map(([k, v]) => [k, redactReason(v) ?? '']),
          ),
        }
      : {}),
  };
}

type Redactor = (body: unknown) => unknown;

const asIs: Redactor = (body) => body;
const oneJob: Redactor = (body) =>
  isRecord(body) && isRecord(body.job) ? { job: redactJob(body.job), status: body.status } : body;
const queueList: Redactor = (body) =>
  isRecord(body) && Array.isArray(body.queues)
    ? {
        queues: body.queues.map((q: unknown) =>
          isRecord(q) ? { ...q, jobs: Array.isArray(q.jobs) ? q.jobs.map(redactJob) : [] } : q,
        ),
      }
    : body;
/** A scheduler's template holds the data and options of every job it makes: dropped. */
const schedulerList: Redactor = (body) =>
  isRecord(body) && Array.isArray(body.schedulers)
    ? {
        schedulers: body.schedulers.map((s: unknown) => {
          if (!isRecord(s)) return s;
          const { template: _template, ...rest } = s;
          return { ...rest, name: redactName(s.name) };
        }),
      }
    : body;
const flow: Redactor = (body) =>
  isRecord(body) ? { nodeId: body.nodeId, isFlowNode: body.isFlowNode, flowRoot: redactFlowNode(body.flowRoot) } : body;

export type BoardRoute =
  | { readonly kind: 'read'; readonly redact: Redactor }
  | { readonly kind: 'write'; readonly redact: Redactor }
  | { readonly kind: 'refused'; readonly why: string };

const read = (redact: Redactor): BoardRoute => ({ kind: 'read', redact });
const write = (redact: Redactor = asIs): BoardRoute => ({ kind: 'write', redact });

/**
 * Every JSON route of the installed bull-board (9.10), by `METHOD path` under the board's base path,
 * with what the board may show of its answer. Reads of queue-level facts (counts, metrics, workers,
 * Redis statistics, default options) are the installation's and shown as they are.
 */
export const BOARD_ROUTES: Readonly<Record<string, BoardRoute>> = {
  'GET /api/redis/stats': read(asIs),
  'GET /api/queues': read(queueList),
  'GET /api/job-schedulers': read(schedulerList),
  'GET /api/queues/:queueName/metrics': read(asIs),
  'GET /api/queues/:queueName/default-job-options': read(asIs),
  'GET /api/queues/:queueName/workers': read(asIs),
  'GET /api/queues/:queueName/rate-limit': read(asIs),
  'GET /api/queues/:queueName/job-data-schema': read(() => ({})),
  // A job's log lines are whatever its worker wrote, request text included.
  'GET /api/queues/:queueName/:jobId/logs': read(() => []),
  'GET /api/queues/:queueName/:jobId/flow': read(flow),
  'GET /api/queues/:queueName/:jobId': read(oneJob),
  'PUT /api/queues/pause': write(),
  'PUT /api/queues/resume': write(),
  'POST /api/queues/:queueName/add': write(oneJob),
  'PUT /api/queues/:queueName/retry/:queueStatus': write(),
  'PUT /api/queues/:queueName/promote': write(),
  'PUT /api/queues/:queueName/clean/:queueStatus': write(),
  'PUT /api/queues/:queueName/pause': write(),
  'PUT /api/queues/:queueName/resume': write(),
  'PUT /api/queues/:queueName/concurrency': write(),
  'PUT /api/queues/:queueName/rate-limit': write(),
  'PUT /api/queues/:queueName/rate-limit/release': write(),
  'PUT /api/queues/:queueName/empty': write(),
  'PUT /api/queues/:queueName/obliterate': write(),
  'PUT /api/queues/:queueName/job-schedulers/:schedulerId/remove': write(),
  'PATCH /api/queues/:queueName/job-schedulers/:schedulerId': write(),
  'PUT /api/queues/:queueName/job-schedulers/:schedulerId/run': write(oneJob),
  'PUT /api/queues/:queueName/:jobId/retry': write(),
  'PUT /api/queues/:queueName/:jobId/clean': write(),
  'PUT /api/queues/:queueName/:jobId/promote': write(),
  'PATCH /api/queues/:queueName/:jobId/delay': write(),
  'PATCH /api/queues/:queueName/:jobId/priority': write(),
  'PUT /api/queues/:queueName/:jobId/remove-unprocessed-children': write(),
  'PATCH /api/queues/:queueName/:jobId/update-data': {
    kind: 'refused',
    why: 'the board only ever shows a redacted payload, so an edit would replace the real one with it',
  },
};

/** The route entry for a request, or undefined for a route nobody has reviewed (refused). */
export function boardRoute(method: string, path: string): BoardRoute | undefined {
  const m = method.toUpperCase() === 'HEAD' ? 'GET' : method.toUpperCase();
  return BOARD_ROUTES[`${m} ${path}`];
}
