import { describe, expect, it } from 'vitest';
import { expiryText, humanDuration, namesText, relativeTime, votesSummary } from './format.ts';

const H = 3_600_000;
const D = 24 * H;

describe('wording shared by the CLI and the console', () => {
  it('shows the two largest units of a duration', () => {
    expect(humanDuration(0)).toBe('0s');
    expect(humanDuration(45_000)).toBe('45s');
    expect(humanDuration(12 * 60_000 + 5_000)).toBe('12m 5s');
    expect(humanDuration(3 * H + 20 * 60_000 + 59_000)).toBe('3h 20m');
    expect(humanDuration(6 * D + 23 * H + 59 * 60_000)).toBe('6d 23h');
    expect(humanDuration(7 * D)).toBe('7d');
    expect(humanDuration(2 * D + 5 * 60_000)).toBe('2d');
  });

  it('says in or ago', () => {
    const now = new Date('2026-01-01T00:00:00Z');
    expect(relativeTime('2026-01-01T02:00:00Z', now)).toBe('in 2h');
    expect(relativeTime('2025-12-31T23:59:30Z', now)).toBe('30s ago');
  });

  it('tells an approver how long a pending request has left', () => {
    const now = new Date('2026-01-01T00:00:00Z');
    expect(expiryText({ state: 'pending', expires_at: '2026-01-07T23:00:00Z' }, now)).toBe('in 6d 23h');
    expect(expiryText({ state: 'pending', expires_at: '2025-12-31T00:00:00Z' }, now)).toBe('overdue');
    expect(expiryText({ state: 'approved', expires_at: '2026-01-07T23:00:00Z' }, now)).toBe('—');
  });

  it('summarises votes and names', () => {
    expect(votesSummary({ votes: [{ voter_id: 'a', note: null, voted_at: '' }], approvals_required: 2 })).toBe('1/2');
    expect(namesText(['a', 'b'])).toBe('a, b');
    expect(namesText(['a', 'b', 'c', 'd', 'e'])).toBe('a, b, c +2 more');
  });
});
