import { csrFor, profileFields } from '@countersign/testing';
import { mintOwnApiKey, saveProfile } from '@countersign/workflow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type ApiHarness, startApiHarness } from './test/api-harness.ts';

let h: ApiHarness;
beforeAll(async () => {
  h = await startApiHarness();
});
afterAll(async () => h?.close());

let n = 0;
/** A fresh gated request by `key` (the requester by default). */
async function submit(key = h.org.requester.key, profileId = h.org.gated.id) {
  const cn = `app${++n}.example.test`;
  const { csrPem } = await csrFor(cn);
  const r = await h.call(key, {
    method: 'POST',
    url: '/api/v1/certificates',
    payload: { profile_id: profileId, common_name: cn, csr: csrPem, justification: `needed for test ${n}` },
  });
  expect(r.status).toBe(202);
  return r.body as { certificate: { id: string }; job: { id: string }; approval: { id: string } };
}

const decide = (key: string, id: string, action: 'approve' | 'reject' | 'void', payload: Record<string, string> = {}) =>
  h.call(key, { method: 'POST', url: `/api/v1/approvals/${id}/${action}`, payload });

const jobStatus = async (jobId: string) =>
  (await h.tdb.superuser<{ status: string }>('SELECT status FROM jobs WHERE id = $1', [jobId])).rows[0]?.status;

const decisionRecords = async (approvalId: string) =>
  (
    await h.tdb.superuser<{ action: string }>(
      `SELECT action FROM audit_records WHERE resource_id = $1 AND action IN
       ('approval_approved','approval_rejected','approval_voided','approval_expired','approval_bypassed')`,
      [approvalId],
    )
  ).rows.map((r) => r.action);

describe('two-person integrity', () => {
  it('refuses the requester approving its own request, also through a second key of the same principal', async () => {
    const { approval, job } = await submit(h.org.operator1.key);
    const own = await decide(h.org.operator1.key, approval.id, 'approve');
    expect(own.status).toBe(403);
    expect(own.body.code).toBe('two_person_integrity');
    expect(own.body.detail).toContain('two-person integrity');

    // A second key the requester minted for itself: its own, so only two-person integrity can refuse it.
    const second = await mintOwnApiKey(h.tdb.handle.db, h.org.operator1, { name: 'second' });
    const viaSecond = await decide(second.key, approval.id, 'approve');
    expect(viaSecond.status).toBe(403);
    expect(viaSecond.body.code).toBe('two_person_integrity');
    const rejectOwn = await decide(second.key, approval.id, 'reject', { note: 'self' });
    expect(rejectOwn.body.code).toBe('two_person_integrity');

    expect(await jobStatus(job.id)).toBe('awaiting_approval');
    const votes = await h.tdb.superuser('SELECT 1 FROM approval_votes WHERE approval_id = $1', [approval.id]);
    expect(votes.rowCount).toBe(0);
  });

  it('an admin who requested cannot approve either', async () => {
    const { approval } = await submit(h.org.admin.key);
    const r = await decide(h.org.admin.key, approval.id, 'approve');
    expect(r.status).toBe(403);
    expect(r.body.code).toBe('two_person_integrity');
  });

  it('a requester cannot approve anyone, and an operator not listed on the profile cannot either', async () => {
    const { approval } = await submit(h.org.operator1.key);
    const byRequester = await decide(h.org.requester.key, approval.id, 'approve');
    expect(byRequester.status).toBe(404); // requesters only see their own requests
    const byAuditor = await decide(h.org.auditor.key, approval.id, 'approve');
    expect(byAuditor.status).toBe(403);
    expect(byAuditor.body.code).toBe('forbidden');
    const unlisted = await saveProfile(h.tdb.handle.db, h.org.admin, null, profileFields({ name: 'only-op1' }), [
      h.org.operator1.id,
    ]);
    const other = await submit(h.org.requester.key, unlisted.id);
    const byOp2 = await decide(h.org.operator2.key, other.approval.id, 'approve');
    expect(byOp2.status).toBe(403);
    expect(byOp2.body.code).toBe('forbidden');
  });
});

describe('decisions', () => {
  it('approve releases the job; the approval records who decided', async () => {
    const { approval, job } = await submit();
    const r = await decide(h.org.operator1.key, approval.id, 'approve', { note: 'looks right' });
    expect(r.status).toBe(200);
    expect(r.body.state).toBe('approved');
    expect(r.body.decided_by).toBe(h.org.operator1.id);
    expect(r.body.votes).toHaveLength(1);
    expect(await jobStatus(job.id)).toBe('pending');
    const outbox = await h.tdb.superuser<{ topic: string }>(
      `SELECT topic FROM outbox WHERE payload->>'job_id' = $1 OR payload->>'approval_id' = $2 ORDER BY id`,
      [job.id, approval.id],
    );
    expect(outbox.rows.map((o) => o.topic)).toEqual(['approval.submitted', 'job.released', 'approval.decided']);
    expect(await decisionRecords(approval.id)).toEqual(['approval_approved']);
  });

  it.each([
    'reject',
    'void',
  ] as const)('%s cancels the job and a later approve is 409 already_decided', async (action) => {
    const { approval, job } = await submit();
    const r =
      action === 'reject'
        ? await decide(h.org.operator1.key, approval.id, 'reject', { note: 'wrong host' })
        : await decide(h.org.admin.key, approval.id, 'void', { reason: 'superseded' });
    expect(r.status).toBe(200);
    expect(r.body.state).toBe(action === 'reject' ? 'rejected' : 'voided');
    expect(await jobStatus(job.id)).toBe('cancelled');
    const later = await decide(h.org.operator2.key, approval.id, 'approve');
    expect(later.status).toBe(409);
    expect(later.body.code).toBe('already_decided');
    expect(await jobStatus(job.id)).toBe('cancelled');
  });

  it('reject requires a note and void requires a reason and an admin', async () => {
    const { approval } = await submit();
    const noNote = await decide(h.org.operator1.key, approval.id, 'reject');
    expect(noNote.status).toBe(400);
    expect(noNote.body.detail).toMatch(/note/);
    const opVoid = await decide(h.org.operator1.key, approval.id, 'void', { reason: 'x' });
    expect(opVoid.status).toBe(403);
    const noReason = await decide(h.org.admin.key, approval.id, 'void');
    expect(noReason.status).toBe(400);
  });

  it('50 concurrent approve/reject/void calls: exactly one wins, the rest are 409, one decision is audited', async () => {
    const { approval, job } = await submit();
    const callers = Array.from({ length: 50 }, (_, i) => {
      switch (i % 3) {
        case 0:
          return () => decide(h.org.admin.key, approval.id, 'void', { reason: `void ${i}` });
        case 1:
          return () => decide(h.org.operator1.key, approval.id, 'reject', { note: `reject ${i}` });
        default:
          // The admin created the requester, so it is no second person here (SPEC §1.6): operator2 approves.
          return () => decide(h.org.operator2.key, approval.id, 'approve');
      }
    });
    const results = await Promise.all(callers.map((c) => c()));
    const ok = results.filter((r) => r.status === 200);
    const conflicts = results.filter((r) => r.status === 409);
    expect(ok).toHaveLength(1);
    expect(conflicts).toHaveLength(49);
    for (const c of conflicts) expect(['already_decided', 'already_voted']).toContain(c.body.code);
    expect(await decisionRecords(approval.id)).toHaveLength(1);
    const winner = ok[0]?.body.state;
    expect(await jobStatus(job.id)).toBe(winner === 'approved' ? 'pending' : 'cancelled');
  });
});

describe('deadlines', () => {
  it('a request past its deadline cannot be approved or rejected even before the reaper expires it', async () => {
    const { approval, job } = await submit();
    await h.tdb.superuser(`UPDATE approval_requests SET expires_at = now() - interval '1 second' WHERE id = $1`, [
      approval.id,
    ]);
    const late = await decide(h.org.operator1.key, approval.id, 'approve');
    expect(late.status).toBe(409);
    expect(late.body.code).toBe('already_decided');
    expect(late.body.detail).toMatch(/expired at/);
    const lateReject = await decide(h.org.operator1.key, approval.id, 'reject', { note: 'too late' });
    expect(lateReject.status).toBe(409);
    expect(await jobStatus(job.id)).toBe('awaiting_approval');
    // The database refuses it on its own too.
    await expect(
      h.tdb.handle.pool.query(
        `INSERT INTO approval_votes (approval_id, org_id, voter_id, voter_type, requested_by) VALUES ($1, $2, $3, 'user', $4)`,
        [approval.id, h.org.orgId, h.org.operator1.id, h.org.requester.id],
      ),
    ).rejects.toThrow(/has expired/);
  });
});

describe('M of N', () => {
  it('needs two distinct approvers when approvals_required is 2', async () => {
    const twoOf = await saveProfile(
      h.tdb.handle.db,
      h.org.admin,
      null,
      profileFields({ name: 'two-of-n', approvals_required: 2 }),
      [h.org.operator1.id, h.org.operator2.id],
    );
    const { approval, job } = await submit(h.org.requester.key, twoOf.id);
    expect(approval).toMatchObject({ approvals_required: 2 });
    const first = await decide(h.org.operator1.key, approval.id, 'approve', { note: 'one' });
    expect(first.status).toBe(200);
    expect(first.body.state).toBe('pending');
    expect(first.body.votes).toHaveLength(1);
    // The queue shows the same vote as the request itself (the list reads votes in its own statement).
    const listed = await h.call(h.org.operator2.key, {
      method: 'GET',
      url: `/api/v1/approvals?state=pending&profile_id=${twoOf.id}`,
    });
    expect(listed.body.items).toEqual([first.body]);
    expect(listed.body.items[0].votes).toEqual([
      { voter_id: h.org.operator1.id, note: 'one', voted_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT.*\.\d{3}Z$/) },
    ]);
    expect(await jobStatus(job.id)).toBe('awaiting_approval');
    const again = await decide(h.org.operator1.key, approval.id, 'approve');
    expect(again.status).toBe(409);
    expect(again.body.code).toBe('already_voted');
    const second = await decide(h.org.operator2.key, approval.id, 'approve', { note: 'two' });
    expect(second.status).toBe(200);
    expect(second.body.state).toBe('approved');
    expect(second.body.votes.map((v: { voter_id: string }) => v.voter_id).sort()).toEqual(
      [h.org.operator1.id, h.org.operator2.id].sort(),
    );
    expect(await jobStatus(job.id)).toBe('pending');
  });
});

describe('the approval queue', () => {
  it('filters by state and pages with a cursor, newest first; requesters see only their own', async () => {
    for (let i = 0; i < 5; i++) await submit();
    const page1 = await h.call(h.org.operator1.key, { method: 'GET', url: '/api/v1/approvals?state=pending&limit=2' });
    expect(page1.status).toBe(200);
    expect(page1.body.items).toHaveLength(2);
    expect(page1.body.next_cursor).toEqual(expect.any(String));
    const page2 = await h.call(h.org.operator1.key, {
      method: 'GET',
      url: `/api/v1/approvals?state=pending&limit=2&cursor=${page1.body.next_cursor}`,
    });
    const ids1 = page1.body.items.map((a: { id: string }) => a.id);
    for (const a of page2.body.items) expect(ids1).not.toContain(a.id);
    const times = [...page1.body.items, ...page2.body.items].map((a: { requested_at: string }) => a.requested_at);
    expect([...times].sort().reverse()).toEqual(times);
    for (const a of page1.body.items) expect(a.state).toBe('pending');

    const mine = await h.call(h.org.requester.key, { method: 'GET', url: '/api/v1/approvals?limit=500' });
    for (const a of mine.body.items) expect(a.requested_by).toBe(h.org.requester.id);
    const bad = await h.call(h.org.operator1.key, { method: 'GET', url: '/api/v1/approvals?cursor=garbage' });
    expect(bad.status).toBe(400);
    const huge = await h.call(h.org.operator1.key, { method: 'GET', url: '/api/v1/approvals?limit=501' });
    expect(huge.status).toBe(400);
  });
});

describe('the audit chain after all of the above', () => {
  it('verifies, with records appended several per transaction', async () => {
    const r = await h.call(h.org.admin.key, { method: 'GET', url: '/api/v1/audit/verify' });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ ok: true, first_bad_seq: null });
    expect(r.body.checked).toBeGreaterThan(50);
    const multi = await h.tdb.superuser<{ n: string }>(
      `SELECT count(*) n FROM (SELECT at FROM audit_records GROUP BY org_id, at HAVING count(*) >= 3) t`,
    );
    expect(Number(multi.rows[0]?.n)).toBeGreaterThan(0);
  });
});
