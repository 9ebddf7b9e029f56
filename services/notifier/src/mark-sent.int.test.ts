import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, type Pipeline, sleep, startPipeline } from './test/pipeline-harness.ts';

/**
 * Found by the chaos harness: PostgreSQL restarting right after the SMTP
 * server accepted a mail. Recording it as sent failed after three quick tries,
 * the claim lapsed, and another attempt sent the same mail again. The notifier
 * now keeps trying to record it for half its lease, during which nobody else
 * may send it.
 */
let p: Pipeline;

beforeAll(async () => {
  p = await startPipeline();
  // The database refuses to mark deliveries sent while `until` is in the future: a restart, as the notifier sees it.
  await p.tdb.superuser(`
    CREATE TABLE test_outage (until timestamptz NOT NULL);
    CREATE FUNCTION test_refuse_sent() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $fn$
    BEGIN
      IF NEW.status = 'sent' AND EXISTS (SELECT 1 FROM test_outage WHERE until > now()) THEN
        RAISE EXCEPTION 'the database system is starting up' USING ERRCODE = '57P03';
      END IF;
      RETURN NEW;
    END $fn$;
    CREATE TRIGGER test_refuse_sent BEFORE UPDATE ON notification_deliveries
      FOR EACH ROW EXECUTE FUNCTION test_refuse_sent();
  `);
});
afterAll(async () => p?.close());

describe('recording a sent mail', () => {
  it('rides out a database outage after the SMTP server accepted: every mail once', { timeout: 60_000 }, async () => {
    // smtpTimeoutMs 2 s: a lease of 8 s, so a lapsed claim would be taken over within the test.
    p.startNotifier({ smtpTimeoutMs: 2_000 });
    await p.tdb.superuser(`INSERT INTO test_outage VALUES (now() + interval '2500 milliseconds')`);
    const r = await p.submit(p.org.requester, p.org.gated.id, 'outage.example.test');
    await p.drain();
    const event = `approval_submitted-${r.approvalId}`;
    const mails = () => p.sink.messages().filter((m) => m.headers['x-countersign-event'] === event);
    // The two operators (the admin created the requester, so it is not asked).
    await eventually('the approvers are mailed', async () => mails().length === 2, 15_000);
    const rows = await p.tdb.superuser<{ status: string; attempts: number }>(
      'SELECT status, attempts FROM notification_deliveries WHERE event_key = $1',
      [event],
    );
    await eventually(
      'recorded as sent',
      async () =>
        (
          await p.tdb.superuser<{ n: string }>(
            `SELECT count(*) n FROM notification_deliveries WHERE event_key = $1 AND status = 'sent'`,
            [event],
          )
        ).rows[0]?.n === '2',
      15_000,
    );
    expect(rows.rows).toHaveLength(2);
    // Past the lease: nobody took a claim over and sent again.
    await sleep(9_000);
    expect(
      mails()
        .map((m) => m.to.join(','))
        .sort(),
    ).toEqual(['operator1@example.test', 'operator2@example.test']);
    const after = await p.tdb.superuser<{ attempts: number }>(
      'SELECT attempts FROM notification_deliveries WHERE event_key = $1',
      [event],
    );
    expect(after.rows.map((x) => x.attempts)).toEqual([1, 1]);
  });
});
