import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, type Pipeline, startPipeline } from './test/pipeline-harness.ts';

/**
 * Found by the chaos harness on an overloaded machine: the SMTP server stored
 * a mail but its reply came after the notifier's timeout. Whether such a mail
 * arrived cannot be known (RFC 1047), so it is sent again: with the same
 * Message-ID (a mail store keeps one copy), and the delivery record counts the
 * unanswered attempt, so the second copy is explained by the record alone.
 */
let p: Pipeline;

beforeAll(async () => {
  // The sink's first message gets its 250 only after 3 s, past the notifier's 1 s SMTP timeout.
  p = await startPipeline({ replyDelayMs: (n) => (n === 1 ? 3_000 : 0) });
});
afterAll(async () => p?.close());

describe('an SMTP reply that never comes', () => {
  it('is resent with the same Message-ID and recorded as an unanswered attempt', { timeout: 60_000 }, async () => {
    p.startNotifier({ smtpTimeoutMs: 1_000 });
    const r = await p.submit(p.org.requester, p.org.gated.id, 'lost-reply.example.test');
    await p.drain();
    const event = `approval_submitted-${r.approvalId}`;
    const mails = () => p.sink.messages().filter((m) => m.headers['x-countersign-event'] === event);
    const first = await eventually('the first mail reaches the sink', async () => mails()[0], 15_000);
    const recipient = first.to.join(',');
    const copies = () => mails().filter((m) => m.to.join(',') === recipient);
    await eventually('it is sent again after the timeout', async () => copies().length === 2, 20_000);
    expect(new Set(copies().map((m) => m.messageId))).toEqual(new Set([first.messageId]));
    const rows = await p.tdb.superuser<{
      recipient: string;
      status: string;
      attempts: number;
      unanswered_attempts: number;
    }>(
      'SELECT recipient, status, attempts, unanswered_attempts FROM notification_deliveries WHERE event_key = $1 ORDER BY recipient',
      [event],
    );
    await eventually(
      'every delivery recorded as sent',
      async () =>
        (
          await p.tdb.superuser<{ n: string }>(
            `SELECT count(*) n FROM notification_deliveries WHERE event_key = $1 AND status <> 'sent'`,
            [event],
          )
        ).rows[0]?.n === '0',
      15_000,
    );
    const lost = rows.rows.find((x) => x.recipient === recipient);
    expect(lost?.unanswered_attempts).toBe(1);
    // The other recipients were answered at once: one copy each, nothing unanswered.
    for (const other of rows.rows.filter((x) => x.recipient !== recipient)) {
      expect(other.unanswered_attempts).toBe(0);
      expect(mails().filter((m) => m.to.join(',') === other.recipient)).toHaveLength(1);
    }
  });
});
