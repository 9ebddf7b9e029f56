import type { OutboxRow } from '@countersign/db';
import { describe, expect, it } from 'vitest';
import { withinBudget } from './outbox-relay.ts';

let id = 0;
const row = (topic: OutboxRow['topic'], payload: OutboxRow['payload']): OutboxRow => ({
  id: String(++id),
  org_id: '00000000-0000-4000-8000-000000000001',
  topic,
  payload,
  created_at: new Date(),
});
const expired = (n: number) =>
  row('approvals.expired', { approval_ids: Array.from({ length: n }, (_, i) => `id-${i}`) });
const released = () => row('job.released', { job_id: 'j' });
const submitted = () => row('approval.submitted', { approval_id: 'a' });

describe('withinBudget', () => {
  it('takes the oldest rows whose messages fit, counting an expiry event as one message per request', () => {
    const rows = [released(), expired(3), submitted(), released()];
    // 1 + 3 = 4 fit in 5; the submission's mail and reminder (2) would make 6.
    expect(withinBudget(rows, 5)).toEqual(rows.slice(0, 2));
    expect(withinBudget(rows, 7)).toEqual(rows);
    expect(withinBudget(rows, 6)).toEqual(rows.slice(0, 3));
  });

  it('always takes the first row, however large, and never one out of order', () => {
    const big = expired(2_000);
    expect(withinBudget([big, released()], 5)).toEqual([big]);
    const rows = [released(), expired(10), released()];
    expect(withinBudget(rows, 3)).toEqual([rows[0]]);
    expect(withinBudget([], 5)).toEqual([]);
  });
});
