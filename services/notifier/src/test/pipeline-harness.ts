import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadOrCreateLocalCa, localConnector } from '@countersign/ca';
import type { Db, ProfileFields } from '@countersign/db';
import { type SinkMessage, type SmtpSink, startSmtpSink } from '@countersign/devstack';
import { actorOf } from '@countersign/domain';
import { createLogger, createRegistry, metricFactories, type Registry } from '@countersign/observability';
import { createRedis, createWorker, openQueue, type QueueContext, type Worker } from '@countersign/queues';
import {
  createTestDatabase,
  csrFor,
  profileFields,
  randomQueuePrefix,
  type SeededOrg,
  type SeededPrincipal,
  seedOrg,
  type TestDatabase,
} from '@countersign/testing';
import { requestCertificate, requesterOf, type SubmitResult, saveProfile } from '@countersign/workflow';
// Tests drive the whole pipeline in-process: the approval relay and the issuer's handler are used as they are.
import { createRelay } from '../../../approval/src/outbox-relay.ts';
import { issueJobHandler } from '../../../issuer/src/issue-job.handler.ts';
import { mailDomain } from '../deliveries.ts';
import { createSmtpMailer, type Mailer } from '../mailer.ts';
import { createNotifierWorker, deliveryLeaseMs } from '../worker.ts';

/**
 * A real pipeline for notifier and reaper tests: a fresh database with a
 * seeded org, BullMQ queues under a random prefix on the test Redis (or one
 * given), a real SMTP sink, the outbox relay, the issuer's handler with a
 * throwaway local CA, and notifier workers started on demand.
 */
export const PUBLIC_URL = 'https://countersign.test:8443';
export const MAIL_FROM = 'Countersign <countersign@mail.test>';
export const SETTINGS = { approvalTimeoutMs: 168 * 3_600_000, escalationAfterMs: 24 * 3_600_000 };

export interface Pipeline {
  readonly tdb: TestDatabase;
  readonly db: Db;
  readonly org: SeededOrg;
  readonly sink: SmtpSink;
  readonly prefix: string;
  readonly redisUrl: string;
  readonly ctx: QueueContext;
  readonly workerCtx: QueueContext;
  readonly issuance: ReturnType<typeof openQueue<'issuance'>>;
  readonly notifications: ReturnType<typeof openQueue<'notifications'>>;
  readonly registry: Registry;
  /** Publishes every outbox row (what the approval service does). */
  drain(): Promise<void>;
  /** Signs one released job like the issuer does. */
  issue(jobId: string): Promise<void>;
  startNotifier(opts?: { mailer?: Mailer | null; smtpTimeoutMs?: number; concurrency?: number }): Worker;
  /** An issuer worker on the issuance queue (the issuer service's handler). */
  startIssuer(): Worker;
  gatedProfile(overrides: Partial<ProfileFields>, approvers?: string[]): Promise<string>;
  submit(
    who: SeededPrincipal,
    profileId: string,
    commonName: string,
    justification?: string,
  ): Promise<SubmitResult & { approvalId: string }>;
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  close(): Promise<void>;
}

export async function startPipeline(
  opts: {
    redisUrl?: string;
    existing?: { tdb: TestDatabase; org: SeededOrg };
    /** Passed to the SMTP sink: hold back its reply to message n (tests of lost replies). */
    replyDelayMs?: (n: number) => number;
  } = {},
): Promise<Pipeline> {
  const tdb = opts.existing?.tdb ?? (await createTestDatabase());
  const db = tdb.handle.db;
  const org = opts.existing?.org ?? (await seedOrg(db));
  const redisUrl = opts.redisUrl ?? tdb.redisUrl;
  const prefix = randomQueuePrefix();
  const producer = createRedis(redisUrl, 'producer');
  const blocking = createRedis(redisUrl, 'worker');
  const ctx = { connection: producer, prefix };
  const workerCtx = { connection: blocking, prefix };
  const issuance = openQueue('issuance', ctx);
  const notifications = openQueue('notifications', ctx);
  const log = createLogger('pipeline-test', process.env.TEST_LOG_LEVEL ?? 'silent');
  const relay = createRelay({ db, log, issuance, notifications, batchSize: 100, bypass: null });
  const sinkDir = await mkdtemp(join(tmpdir(), 'countersign-mail-'));
  const sink = await startSmtpSink({
    dir: sinkDir,
    ...(opts.replyDelayMs ? { replyDelayMs: opts.replyDelayMs } : {}),
  });
  const caDir = await mkdtemp(join(tmpdir(), 'countersign-ca-'));
  const ca = await loadOrCreateLocalCa({ dir: caDir });
  const handler = issueJobHandler(db, new Map([['local', localConnector(ca)]]), log);
  const registry = createRegistry('notifier-test');
  const counter = metricFactories.notifications(registry);
  const workers: Worker[] = [];
  const mailers: Mailer[] = [];

  const pipeline: Pipeline = {
    tdb,
    db,
    org,
    sink,
    prefix,
    redisUrl,
    ctx,
    workerCtx,
    issuance,
    notifications,
    registry,
    drain: () => relay.drain(),
    issue: async (jobId) => {
      const r = await handler(jobId);
      if (r.status !== 'issued') throw new Error(`job ${jobId} was not issued: ${r.reason}`);
    },
    startNotifier: (o = {}) => {
      const smtpTimeoutMs = o.smtpTimeoutMs ?? 2_000;
      const mailer =
        o.mailer === undefined
          ? createSmtpMailer({ url: sink.url, from: MAIL_FROM, timeoutMs: smtpTimeoutMs })
          : o.mailer;
      if (mailer) mailers.push(mailer);
      const leaseMs = deliveryLeaseMs(smtpTimeoutMs);
      const worker = createNotifierWorker(
        workerCtx,
        {
          db,
          log,
          mailer,
          leaseMs,
          messageIdDomain: mailDomain(MAIL_FROM),
          settings: { publicUrl: PUBLIC_URL },
          notifications,
          count: (kind, outcome, n = 1) => counter.inc({ kind, outcome }, n),
        },
        { concurrency: o.concurrency ?? 4, leaseMs },
      );
      workers.push(worker);
      return worker;
    },
    startIssuer: () => {
      const worker = createWorker('issuance', workerCtx, (data) => handler(data.job_id), { concurrency: 4 });
      workers.push(worker);
      return worker;
    },
    gatedProfile: async (overrides, approvers = [org.operator1.id, org.operator2.id]) => {
      const p = await saveProfile(
        db,
        org.admin,
        null,
        profileFields({ name: `gated-${Math.random().toString(36).slice(2, 8)}`, ...overrides }),
        approvers,
      );
      return p.id;
    },
    submit: async (who, profileId, commonName, justification = 'needed for the release') => {
      const { csrPem } = await csrFor(commonName);
      const r = await requestCertificate(db, SETTINGS, requesterOf(who, actorOf(who)), {
        profile_id: profileId,
        common_name: commonName,
        csr: csrPem,
        justification,
      });
      return { ...r, approvalId: r.approval?.id ?? '' };
    },
    metric: async (name, labels = {}) => {
      const m = await registry.getSingleMetric(name)?.get();
      const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
      return v?.value ?? 0;
    },
    close: async () => {
      await Promise.allSettled(workers.map((w) => w.close()));
      for (const m of mailers) m.close();
      await Promise.allSettled([issuance.close(), notifications.close()]);
      await Promise.allSettled([producer.quit(), blocking.quit()]);
      await sink.stop();
      await Promise.allSettled([
        rm(sinkDir, { recursive: true, force: true }),
        rm(caDir, { recursive: true, force: true }),
      ]);
      if (!opts.existing) await tdb.drop();
    },
  };
  return pipeline;
}

/** Waits until `check` holds, polling; fails with `what` after the timeout. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | false | null | undefined>,
  timeoutMs = 15_000,
) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Mails whose subject contains `text`, as "recipient" strings, sorted. */
export function recipientsOf(messages: readonly SinkMessage[], text: string): string[] {
  return messages
    .filter((m) => m.subject.includes(text))
    .flatMap((m) => m.to)
    .sort();
}
