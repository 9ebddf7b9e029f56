import { randomUUID } from 'node:crypto';
import { notifications } from '@countersign/db';
import { freePort } from '@countersign/devstack';
import { SYSTEM_ACTORS } from '@countersign/domain';
import { createLogger } from '@countersign/observability';
import { EXPIRY_BATCH, enqueue, jobIds } from '@countersign/queues';
import { enrollPrincipal } from '@countersign/testing';
import {
  addInstallationAdmin,
  approve,
  configurePrincipal,
  createPrincipal,
  expireDue,
  reject,
  rejectConfigRequest,
  renewCertificate,
  voidRequest,
} from '@countersign/workflow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deliver, NO_SMTP_REASON } from './deliveries.ts';
import { createSmtpMailer } from './mailer.ts';
import {
  eventually,
  MAIL_FROM,
  type Pipeline,
  PUBLIC_URL,
  recipientsOf,
  SETTINGS,
  sleep,
  startPipeline,
} from './test/pipeline-harness.ts';

let p: Pipeline;
beforeAll(async () => {
  p = await startPipeline();
  p.startNotifier();
});
afterAll(async () => p?.close());

const DOMAIN = 'example.test';
const addr = (name: string) => `${name}@${DOMAIN}`;

async function deliveriesOf(eventKey: string) {
  return notifications.listDeliveries(p.db, eventKey);
}

describe('mail on submission, decision and issuance', () => {
  it('asks every eligible approver but never the requester, then tells the requester the decision and the certificate', async () => {
    const cn = 'web1.example.test';
    const r = await p.submit(p.org.requester, p.org.gated.id, cn, 'new web frontend for the shop');
    await p.drain();

    const asks = await eventually('two approval mails', async () => {
      const m = p.sink.messages().filter((x) => x.subject.includes(`Approval needed: ${cn}`));
      return m.length >= 2 && m;
    });
    await sleep(300);
    // The admin created the requester, so it is no second person on this request and is not asked (SPEC §1.6).
    expect(recipientsOf(p.sink.messages(), `Approval needed: ${cn}`)).toEqual([addr('operator1'), addr('operator2')]);
    expect(p.sink.messages().some((m) => m.to.includes(addr('requester')))).toBe(false);
    const ask = asks[0]!;
    expect(ask.subject).toBe(`[Countersign] Approval needed: ${cn} (production-web, production)`);
    expect(ask.from).toBe('countersign@mail.test');
    expect(ask.headerTo).toHaveLength(1);
    for (const needle of [
      r.approvalId,
      `requester <${addr('requester')}>`,
      cn,
      'production-web',
      'production',
      'new web frontend for the shop',
      r.approval!.requested_at.replace('T', ' ').replace(/\.\d{3}Z$/, ' UTC'),
      `curl -X POST '${PUBLIC_URL}/api/v1/approvals/${r.approvalId}/approve'`,
      `'${PUBLIC_URL}/api/v1/approvals/${r.approvalId}/reject'`,
      'Authorization: Bearer $COUNTERSIGN_API_KEY',
      '0 of 1 required',
    ]) {
      expect(ask.text).toContain(needle);
    }
    expect(ask.html).toContain(`${PUBLIC_URL}/api/v1/approvals/${r.approvalId}/approve`);
    expect(ask.html).toContain('new web frontend for the shop');
    expect(ask.messageId).toMatch(new RegExp(`^<approval_submitted-${r.approvalId}\\.[0-9a-f]{16}@mail\\.test>$`));

    await approve(p.db, p.org.operator1, r.approvalId, 'looks right, ticket CHG-42');
    await p.drain();
    const decided = await p.sink.waitFor((m) => m.subject.includes(`Request approved: ${cn}`));
    expect(decided.subject).toBe(`[Countersign] Request approved: ${cn} (production-web)`);
    expect(decided.to).toEqual([addr('requester')]);
    expect(decided.text).toContain('Decision:');
    expect(decided.text).toContain(`operator1 <${addr('operator1')}>`);
    expect(decided.text).toContain('looks right, ticket CHG-42');
    expect(decided.text).toContain(r.approvalId);

    await p.issue(r.job.id);
    await p.drain();
    const issued = await p.sink.waitFor((m) => m.subject.includes(`Certificate issued: ${cn}`));
    const version = await p.db
      .selectFrom('certificate_versions')
      .selectAll()
      .where('job_id', '=', r.job.id)
      .executeTakeFirstOrThrow();
    expect(issued.to).toEqual([addr('requester')]);
    expect(issued.subject).toBe(`[Countersign] Certificate issued: ${cn} (serial ${version.serial})`);
    expect(issued.text).toContain(version.serial);
    expect(issued.text).toContain(
      version.not_after
        .toISOString()
        .replace('T', ' ')
        .replace(/\.\d{3}Z$/, ' UTC'),
    );
    expect(issued.text).toContain(version.fingerprint_sha256);
    expect(issued.text).toContain(`'${PUBLIC_URL}/api/v1/certificates/${r.certificate.id}/pem'`);
    expect(issued.text).not.toContain('BEGIN CERTIFICATE');

    await sleep(300);
    const all = p.sink.messages().filter((m) => m.text.includes(r.approvalId) || m.text.includes(r.certificate.id));
    expect(all).toHaveLength(4);
    const rows = [
      ...(await deliveriesOf(jobIds.notification('approval_submitted', r.approvalId))),
      ...(await deliveriesOf(jobIds.notification('approval_decided', r.approvalId))),
      ...(await deliveriesOf(jobIds.notification('certificate_issued', version.id))),
    ];
    expect(rows.map((x) => [x.recipient, x.status, x.attempts])).toEqual([
      [addr('operator1'), 'sent', 1],
      [addr('operator2'), 'sent', 1],
      [addr('requester'), 'sent', 1],
      [addr('requester'), 'sent', 1],
    ]);
    expect(await p.metric('countersign_notifications_total', { kind: 'approval_submitted', outcome: 'sent' })).toBe(2);
  });

  it('never mails the requester when the requester is an approver, too', async () => {
    const cn = 'self.example.test';
    await p.submit(p.org.operator1, p.org.gated.id, cn);
    await p.drain();
    await eventually(
      'one approval mail',
      async () => recipientsOf(p.sink.messages(), `Approval needed: ${cn}`).length >= 1,
    );
    await sleep(300);
    // Not operator1 (the requester), and not the admin who created operator1.
    expect(recipientsOf(p.sink.messages(), `Approval needed: ${cn}`)).toEqual([addr('operator2')]);
  });

  it('records a skipped delivery, with the reason, for an approver without an email address', async () => {
    const noMail = await createPrincipal(p.db, p.org.admin, { name: 'operator-nomail', role: 'operator', email: null });
    const profileId = await p.gatedProfile({}, [p.org.operator1.id, noMail.id]);
    const r = await p.submit(p.org.requester, profileId, 'nomail.example.test');
    await p.drain();
    const rows = await eventually('deliveries recorded', async () => {
      const x = await deliveriesOf(jobIds.notification('approval_submitted', r.approvalId));
      return x.filter((d) => d.status !== 'pending').length === 2 && x;
    });
    expect(rows.map((d) => [d.recipient, d.status, d.last_error])).toEqual([
      [addr('operator1'), 'sent', null],
      [`principal:${noMail.id}`, 'skipped', 'principal operator-nomail has no email address'],
    ]);
  });

  it.each([
    ['rejected', 'operator2', 'wrong domain for this team'],
    ['voided', 'admin', 'duplicate of CHG-7'],
    ['expired', null, 'approval expired'],
  ] as const)('tells the requester a request was %s, by whom and why', async (state, by, note) => {
    const cn = `${state}.example.test`;
    const r = await p.submit(p.org.requester, p.org.gated.id, cn);
    if (state === 'rejected') await reject(p.db, p.org.operator2, r.approvalId, note);
    if (state === 'voided') await voidRequest(p.db, p.org.admin, r.approvalId, note);
    if (state === 'expired') {
      await p.tdb.superuser(`UPDATE approval_requests SET expires_at = now() - interval '1 second' WHERE id = $1`, [
        r.approvalId,
      ]);
      expect(await expireDue(p.db, new Date(), 10)).toHaveLength(1);
    }
    await p.drain();
    const m = await p.sink.waitFor((x) => x.subject.includes(`Request ${state}: ${cn}`));
    expect(m.subject).toBe(`[Countersign] Request ${state}: ${cn} (production-web)`);
    expect(m.to).toEqual([addr('requester')]);
    expect(m.text).toContain(note);
    expect(m.text).toContain(by ? `${by} <${addr(by)}>` : 'Countersign (the approval timeout passed)');
    if (state === 'expired') expect(m.text).toContain('nothing will be issued');
  });

  it('carries text beyond ASCII intact in both the plain and the HTML part', async () => {
    const cn = 'utf8.example.test';
    const note = `Abgelehnt: bitte über CHG-7 gehen — 日本語のメモ ✓ ${'long line '.repeat(12)}`.trim();
    const r = await p.submit(p.org.requester, p.org.gated.id, cn, 'Zertifikat für den Shop «Süd»');
    await reject(p.db, p.org.operator2, r.approvalId, note);
    await p.drain();
    const m = await p.sink.waitFor((x) => x.subject.includes(`Request rejected: ${cn}`));
    expect(m.text).toContain(note);
    expect(m.text).toContain('Zertifikat für den Shop «Süd»');
    expect(m.html).toContain('日本語のメモ ✓');
    expect(m.html).toContain('Zertifikat für den Shop «Süd»');
  });

  it('tells the certificate owner about a renewal the scheduler asked for', async () => {
    const cn = 'auto.example.test';
    const first = await p.submit(p.org.requester, p.org.gated.id, cn);
    await approve(p.db, p.org.operator1, first.approvalId, null);
    await p.issue(first.job.id);
    const renewal = await renewCertificate(
      p.db,
      SETTINGS,
      { orgId: p.org.orgId, actor: SYSTEM_ACTORS.scheduler, principal: null },
      first.certificate.id,
      { justification: 'automatic renewal' },
    );
    await p.drain();
    // The first request was approved before its mail went out: that ask is skipped, the renewal's is sent.
    await eventually(
      'renewal asks',
      async () => recipientsOf(p.sink.messages(), `Approval needed: ${cn}`).length >= 3 && true,
    );
    const ask = p.sink
      .messages()
      .find((m) => m.subject.includes(`Approval needed: ${cn}`) && m.text.includes(renewal.approval!.id))!;
    expect(ask.text).toContain('Countersign scheduler (automatic renewal)');
    expect(ask.text).toContain('renewal of an existing certificate');
    await approve(p.db, p.org.operator2, renewal.approval!.id, 'renew it');
    await p.issue(renewal.job.id);
    await p.drain();
    const mails = await eventually('renewal outcome mails', async () => {
      const m = p.sink
        .messages()
        .filter((x) => x.text.includes(renewal.approval!.id) || x.text.includes(renewal.job.id));
      return m.filter((x) => !x.subject.includes('Approval needed')).length >= 2 && m;
    });
    const outcome = mails.filter((x) => !x.subject.includes('Approval needed'));
    expect(outcome.map((x) => x.subject.split(':')[0]).sort()).toEqual([
      '[Countersign] Certificate issued',
      '[Countersign] Request approved',
    ]);
    for (const m of outcome) expect(m.to).toEqual([addr('requester')]);
  });
});

describe('exactly once per recipient', () => {
  it('sends nothing again for re-delivered messages, even to several notifiers at once', async () => {
    const cn = 'dup.example.test';
    const r = await p.submit(p.org.requester, p.org.gated.id, cn);
    p.startNotifier({ concurrency: 8 });
    const payload = { kind: 'approval_submitted' as const, org_id: p.org.orgId, approval_id: r.approvalId };
    // The relay's message plus eight copies under other ids, as a re-publish or a lost ack would produce.
    await p.drain();
    await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        enqueue(p.notifications, 'notifications', payload, { jobId: `dup-${r.approvalId}-${i}` }),
      ),
    );
    await eventually('all copies processed', async () => {
      const jobs = await Promise.all(
        Array.from({ length: 8 }, (_, i) => p.notifications.getJob(`dup-${r.approvalId}-${i}`)),
      );
      const states = await Promise.all(jobs.map((j) => j?.getState()));
      return states.every((s) => s === 'completed');
    });
    await sleep(500);
    expect(recipientsOf(p.sink.messages(), `Approval needed: ${cn}`)).toEqual([addr('operator1'), addr('operator2')]);
    const rows = await deliveriesOf(jobIds.notification('approval_submitted', r.approvalId));
    expect(rows.map((x) => [x.status, x.attempts])).toEqual([
      ['sent', 1],
      ['sent', 1],
    ]);
  });

  it('turns an expiry batch into one decision mail per request, once, however often the batch arrives', async () => {
    const subs = [
      await p.submit(p.org.requester, p.org.gated.id, 'batch-a.example.test'),
      await p.submit(p.org.requester, p.org.gated.id, 'batch-b.example.test'),
    ];
    const ids = subs.map((r) => r.approvalId);
    await p.drain();
    await p.tdb.superuser(`UPDATE approval_requests SET expires_at = now() - interval '1 second' WHERE id = ANY($1)`, [
      ids,
    ]);
    expect((await expireDue(p.db, new Date(), 10)).map((e) => e.id).sort()).toEqual([...ids].sort());
    await p.drain();
    // The relay's batch message, then two copies under other ids, as a re-publish or a lost ack would produce.
    const batch = { kind: EXPIRY_BATCH, org_id: p.org.orgId, approval_ids: ids };
    await Promise.all([
      enqueue(p.notifications, 'notifications', batch, { jobId: `dup-batch-${ids[0]}-1` }),
      enqueue(p.notifications, 'notifications', batch, { jobId: `dup-batch-${ids[0]}-2` }),
    ]);
    for (const cn of ['batch-a.example.test', 'batch-b.example.test'])
      await p.sink.waitFor((x) => x.subject.includes(`Request expired: ${cn}`));
    await eventually('the batch copies processed', async () => {
      const states = await Promise.all(
        [jobIds.expiryBatch(ids), `dup-batch-${ids[0]}-1`, `dup-batch-${ids[0]}-2`].map(async (id) =>
          (await p.notifications.getJob(id))?.getState(),
        ),
      );
      return states.every((s) => s === 'completed');
    });
    await sleep(500);
    const expiredMail = p.sink.messages().filter((m) => /Request expired: batch-[ab]\.example\.test/.test(m.subject));
    expect(expiredMail.map((m) => m.subject).sort()).toEqual([
      '[Countersign] Request expired: batch-a.example.test (production-web)',
      '[Countersign] Request expired: batch-b.example.test (production-web)',
    ]);
    for (const id of ids) {
      expect(await p.notifications.getJob(jobIds.notification('approval_decided', id))).toBeTruthy();
      const rows = await deliveriesOf(jobIds.notification('approval_decided', id));
      expect(rows.map((x) => [x.recipient, x.status])).toEqual([[addr('requester'), 'sent']]);
    }
  });

  it('audits and mails a reminder round once when its message is delivered several times at once', async () => {
    const profileId = await p.gatedProfile({ escalation_after_seconds: 3_600 });
    const r = await p.submit(p.org.requester, profileId, 'dupround.example.test');
    const payload = { kind: 'approval_escalation' as const, org_id: p.org.orgId, approval_id: r.approvalId, round: 1 };
    const ids = Array.from({ length: 6 }, (_, i) => `dup-esc-${r.approvalId}-${i}`);
    await Promise.all(ids.map((jobId) => enqueue(p.notifications, 'notifications', payload, { jobId })));
    await eventually('all copies processed', async () => {
      const states = await Promise.all(ids.map(async (id) => (await p.notifications.getJob(id))?.getState()));
      return states.every((s) => s === 'completed');
    });
    const audited = await p.db
      .selectFrom('audit_records')
      .select('details')
      .where('resource_id', '=', r.approvalId)
      .where('action', '=', 'approval_escalated')
      .execute();
    expect(audited).toHaveLength(1);
    const to = p.sink
      .messages()
      .filter((m) => m.subject.includes('Reminder 1:') && m.text.includes(r.approvalId))
      .flatMap((m) => m.to)
      .sort();
    expect(to).toEqual([addr('operator1'), addr('operator2')]);
  });

  it('sends the deliveries claimed on record first, in claim order, then one an earlier attempt left', async () => {
    const eventKey = `approval_submitted-${randomUUID()}`;
    const to = (n: string) => `${n}-order@${DOMAIN}`;
    // Left pending, unclaimed, by an earlier attempt: claimed only when its turn comes.
    await p.tdb.superuser(
      `INSERT INTO notification_deliveries (org_id, event_key, kind, recipient, subject)
       VALUES ($1, $2, 'approval_submitted', $3, 'order')`,
      [p.org.orgId, eventKey, to('a')],
    );
    const mailer = createSmtpMailer({ url: p.sink.url, from: MAIL_FROM, timeoutMs: 2_000 });
    try {
      const summary = await deliver(
        {
          db: p.db,
          log: createLogger('order-test', 'silent'),
          mailer,
          leaseMs: 60_000,
          messageIdDomain: 'mail.test',
          count: () => {},
        },
        {
          orgId: p.org.orgId,
          kind: 'approval_submitted',
          eventKey,
          recipients: ['c', 'a', 'b'].map((n) => ({ key: to(n), address: to(n), principalId: null, skipReason: null })),
          mail: { subject: 'order', text: 'order test', html: '<p>order test</p>' },
        },
        { attemptsMade: 0, maxAttempts: 3 },
      );
      expect(summary).toMatchObject({ sent: 3, already_done: 0 });
      const order = p.sink
        .messages()
        .filter((m) => m.headers['x-countersign-event'] === eventKey)
        .map((m) => m.to.join(','));
      // b and c were claimed on record (leases of one and two SMTP transactions), a just before its send.
      expect(order).toEqual([to('b'), to('c'), to('a')]);
      const rows = await notifications.listDeliveries(p.db, eventKey);
      expect(rows.map((r) => [r.recipient, r.status, r.attempts])).toEqual([
        [to('a'), 'sent', 1],
        [to('b'), 'sent', 1],
        [to('c'), 'sent', 1],
      ]);
    } finally {
      mailer.close();
    }
  });

  it('records deliveries as skipped, with the reason, when no SMTP server is configured', async () => {
    const q = await startPipeline();
    try {
      q.startNotifier({ mailer: null });
      const r = await q.submit(q.org.requester, q.org.gated.id, 'nosmtp.example.test');
      await q.drain();
      const key = jobIds.notification('approval_submitted', r.approvalId);
      const rows = await eventually('skipped rows', async () => {
        const x = await notifications.listDeliveries(q.db, key);
        return x.length === 2 && x;
      });
      expect(rows.map((x) => [x.recipient, x.status, x.last_error])).toEqual([
        [addr('operator1'), 'skipped', NO_SMTP_REASON],
        [addr('operator2'), 'skipped', NO_SMTP_REASON],
      ]);
      expect(q.sink.messages()).toHaveLength(0);
      expect(
        await q.metric('countersign_notifications_total', { kind: 'approval_submitted', outcome: 'skipped' }),
      ).toBe(2);
    } finally {
      await q.close();
    }
  });

  it('retries SMTP failures with backoff and shows them as failed, with the reason, after the last attempt', async () => {
    const q = await startPipeline();
    const dead = await freePort();
    try {
      q.startNotifier({
        mailer: createSmtpMailer({ url: `smtp://127.0.0.1:${dead}`, from: MAIL_FROM, timeoutMs: 1_000 }),
      });
      const r = await q.submit(q.org.requester, q.org.gated.id, 'down.example.test');
      const key = jobIds.notification('approval_submitted', r.approvalId);
      await enqueue(
        q.notifications,
        'notifications',
        { kind: 'approval_submitted', org_id: q.org.orgId, approval_id: r.approvalId },
        { jobId: key, attempts: 3, backoff: { type: 'exponential', delay: 100 } },
      );
      const rows = await eventually('failed rows', async () => {
        const x = await notifications.listDeliveries(q.db, key);
        return x.length === 2 && x.every((d) => d.status === 'failed') && x;
      });
      for (const d of rows) {
        expect(d.attempts).toBe(3);
        expect(d.last_error).toMatch(/gave up after 3 attempt\(s\): .*ECONNREFUSED/);
      }
      const job = await q.notifications.getJob(key);
      expect(await job?.getState()).toBe('failed');
      expect(
        await q.metric('countersign_notifications_total', { kind: 'approval_submitted', outcome: 'retried' }),
      ).toBe(4);
      expect(await q.metric('countersign_notifications_total', { kind: 'approval_submitted', outcome: 'failed' })).toBe(
        2,
      );
    } finally {
      await q.close();
    }
  });
});

describe('escalation reminders through BullMQ delays', () => {
  const reminderRounds = (approvalId: string) => {
    const rounds = new Map<number, string[]>();
    for (const m of p.sink.messages()) {
      const match = /Reminder (\d+):/.exec(m.subject);
      if (!match || !m.text.includes(approvalId)) continue;
      const n = Number(match[1]);
      rounds.set(n, [...(rounds.get(n) ?? []), ...m.to].sort());
    }
    return rounds;
  };
  const auditedRounds = async (approvalId: string) => {
    const rows = await p.db
      .selectFrom('audit_records')
      .select(['actor_id', 'actor_type', 'details'])
      .where('resource_id', '=', approvalId)
      .where('action', '=', 'approval_escalated')
      .orderBy('seq')
      .execute();
    for (const row of rows) expect([row.actor_id, row.actor_type]).toEqual(['system-notifier', 'system']);
    return rows.map((row) => (row.details as { round: number }).round);
  };

  it('reminds approvers and escalation contacts each interval, audits each round once, and stops once decided', async () => {
    const profileId = await p.gatedProfile({
      escalation_after_seconds: 1,
      approval_timeout_seconds: 120,
      escalation_contacts: ['OnCall@Example.test'],
    });
    const r = await p.submit(p.org.requester, profileId, 'slow.example.test');
    await p.drain();
    await eventually(
      'two reminder rounds',
      async () => (reminderRounds(r.approvalId).get(2)?.length ?? 0) >= 3,
      10_000,
    );
    await approve(p.db, p.org.operator1, r.approvalId, 'sorry for the wait');
    await sleep(2_500);
    const audited = await auditedRounds(r.approvalId);
    const mailed = reminderRounds(r.approvalId);
    expect(audited.length).toBeGreaterThanOrEqual(2);
    expect(audited).toEqual(audited.map((_, i) => i + 1));
    expect([...mailed.keys()].sort()).toEqual(audited);
    for (const to of mailed.values()) {
      expect(to).toEqual(['oncall@example.test', 'operator1@example.test', 'operator2@example.test']);
    }
    const reminder = p.sink.messages().find((m) => m.subject.includes('Reminder 1:') && m.text.includes(r.approvalId))!;
    expect(reminder.subject).toBe(
      `[Countersign] Reminder 1: approval still needed for slow.example.test (${
        (await p.db.selectFrom('profiles').select('name').where('id', '=', profileId).executeTakeFirstOrThrow()).name
      }, production)`,
    );
    expect(reminder.text).toContain(`/api/v1/approvals/${r.approvalId}/approve`);
    // Decided: whatever round was still scheduled finds the request approved and sends nothing.
    await sleep(1_500);
    expect(await auditedRounds(r.approvalId)).toEqual(audited);
    expect([...reminderRounds(r.approvalId).keys()].sort()).toEqual(audited);
  });

  it('schedules no reminder past the request deadline', async () => {
    // Round 2 is due 2 s before the deadline, so a stalled machine still runs it in time; round 3 would be
    // due at the deadline itself, which is one reminder too many.
    const profileId = await p.gatedProfile({ escalation_after_seconds: 2, approval_timeout_seconds: 6 });
    const r = await p.submit(p.org.requester, profileId, 'deadline.example.test');
    await p.drain();
    await sleep(7_000);
    expect(await auditedRounds(r.approvalId)).toEqual([1, 2]);
    expect([...reminderRounds(r.approvalId).keys()].sort()).toEqual([1, 2]);
  });
});

describe('a late reminder', () => {
  it('sends one reminder for a round that fired late and spaces the next a full interval out, no burst', async () => {
    const q = await startPipeline();
    try {
      const profileId = await q.gatedProfile({ escalation_after_seconds: 1, approval_timeout_seconds: 120 });
      const r = await q.submit(q.org.requester, profileId, 'late.example.test');
      await q.drain();
      // No notifier for 3.5 intervals: rounds 1 to 3 were due meanwhile.
      await sleep(3_500);
      q.startNotifier();
      await eventually('first reminder', async () => q.sink.messages().some((m) => m.subject.includes('Reminder 1:')));
      await sleep(700);
      expect(q.sink.messages().filter((m) => m.subject.includes('Reminder 2:'))).toHaveLength(0);
      await eventually('second reminder', async () => q.sink.messages().some((m) => m.subject.includes('Reminder 2:')));
      const audited = await q.db
        .selectFrom('audit_records')
        .select('details')
        .where('resource_id', '=', r.approvalId)
        .where('action', '=', 'approval_escalated')
        .execute();
      expect(audited.map((a) => (a.details as { round: number }).round)).toEqual([1, 2]);
    } finally {
      await q.close();
    }
  });
});

describe('mail on a configuration request', () => {
  it('asks the other admins, never the requester, then tells the requester the outcome, once each', async () => {
    const q = await startPipeline();
    try {
      q.startNotifier();
      const org = await q.tdb.superuser<{ name: string }>('SELECT name FROM orgs WHERE id = $1', [q.org.orgId]);
      // A second admin the installation adds (not the first admin's creation): the org becomes two-person ready.
      const added = await addInstallationAdmin(q.db, org.rows[0]?.name ?? '', {
        name: 'admin2',
        email: addr('admin2'),
      });
      const admin2 = await enrollPrincipal(
        q.db,
        { id: added.admin.id, orgId: q.org.orgId, role: 'admin', kind: 'user', name: 'admin2' },
        { id: added.key.id, key: added.key.key, createdBy: added.key.created_by },
      );
      const c = await configurePrincipal(q.db, SETTINGS, q.org.admin, { name: 'new-op', role: 'operator' }, 'on call');
      if (c.status !== 'pending') throw new Error('expected the new operator to wait for the other admin');
      await q.drain();
      const ask = await q.sink.waitFor((m) => m.subject.includes('Configuration change needs a second admin'));
      expect(ask.to).toEqual([addr('admin2')]);
      for (const needle of [
        c.request.id,
        'create user principal new-op (operator)',
        'on call',
        `admin <${addr('admin')}>`,
      ]) {
        expect(ask.text).toContain(needle);
      }
      expect(ask.text).toContain(`'${PUBLIC_URL}/api/v1/configuration-requests/${c.request.id}/approve'`);
      await rejectConfigRequest(q.db, admin2, c.request.id, 'no new operators this week');
      await q.drain();
      const told = await q.sink.waitFor((m) => m.subject.includes('Configuration change rejected'));
      expect(told.to).toEqual([addr('admin')]);
      expect(told.text).toContain('no new operators this week');
      expect(told.text).toContain(`admin2 <${addr('admin2')}>`);
      await sleep(500);
      expect(q.sink.messages().filter((m) => m.subject.includes('Configuration change'))).toHaveLength(2);
      const rows = [
        ...(await notifications.listDeliveries(q.db, jobIds.notification('config_submitted', c.request.id))),
        ...(await notifications.listDeliveries(q.db, jobIds.notification('config_decided', c.request.id))),
      ];
      expect(rows.map((x) => [x.recipient, x.status])).toEqual([
        [addr('admin2'), 'sent'],
        [addr('admin'), 'sent'],
      ]);
    } finally {
      await q.close();
    }
  });
});
