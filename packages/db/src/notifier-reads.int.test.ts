import { randomUUID } from 'node:crypto';
import { createTestDatabase, type SeededOrg, seedOrg, type TestDatabase } from '@countersign/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findMailFacts } from './approval.repository.ts';
import { findEligibleApprovers } from './identity.repository.ts';
import { listDeliveries, recordDeliveries } from './notification.repository.ts';
import { findProfile, listProfiles } from './profile.repository.ts';
import { writeSubmission } from './submission-write.ts';

/**
 * The reads and the one write the notifier makes per event, each one
 * statement since the benchmark counted its round trips: a profile with its
 * approvers, who may decide for a profile, and recording an event's
 * deliveries with the new ones already claimed.
 */
let tdb: TestDatabase;
let org: SeededOrg;
beforeAll(async () => {
  tdb = await createTestDatabase();
  org = await seedOrg(tdb.handle.db);
});
afterAll(async () => tdb?.drop());

async function principal(orgId: string, name: string, role: string, disabled = false): Promise<string> {
  const r = await tdb.superuser<{ id: string }>(
    `INSERT INTO principals (org_id, name, email, role, kind, disabled_at, created_by)
     VALUES ($1, $2, $2 || '@example.test', $3, 'user', CASE WHEN $4 THEN now() END, 'system-bootstrap') RETURNING id`,
    [orgId, name, role, disabled],
  );
  return r.rows[0]?.id ?? '';
}

describe('a profile and its approvers', () => {
  it('come in one row, approvers in id order, and an empty list for a profile without any', async () => {
    const p = await findProfile(tdb.handle.db, org.orgId, org.gated.id);
    expect(p?.name).toBe(org.gated.name);
    expect(p?.approvers).toEqual([org.operator1.id, org.operator2.id].sort());
    expect((await findProfile(tdb.handle.db, org.orgId, org.open.id))?.approvers).toEqual([]);
    // Another org's id finds nothing.
    const other = await seedOrg(tdb.handle.db);
    expect(await findProfile(tdb.handle.db, other.orgId, org.gated.id)).toBeUndefined();
    const all = await listProfiles(tdb.handle.db, org.orgId);
    expect(Object.fromEntries(all.map((x) => [x.id, x.approvers]))).toEqual({
      [org.gated.id]: [org.operator1.id, org.operator2.id].sort(),
      [org.open.id]: [],
    });
    expect(all.map((x) => x.name)).toEqual([org.gated.name, org.open.name].sort());
  });
});

describe('eligible approvers', () => {
  it('are the enabled admins of the org and the enabled operators listed on the profile', async () => {
    const unlisted = await principal(org.orgId, `unlisted-${Date.now()}`, 'operator');
    const disabledAdmin = await principal(org.orgId, `gone-admin-${Date.now()}`, 'admin', true);
    const disabledOp = await principal(org.orgId, `gone-op-${Date.now()}`, 'operator', true);
    const other = await seedOrg(tdb.handle.db);
    // Listed on the profile but not operators: a requester, an auditor, a disabled operator.
    await tdb.superuser(
      `INSERT INTO profile_approvers (profile_id, org_id, principal_id) SELECT $1, $2, unnest($3::uuid[])`,
      [org.gated.id, org.orgId, [org.requester.id, org.auditor.id, disabledOp]],
    );
    // For a request of the scheduler (related to nobody) ...
    const eligible = (profileId: string, requestedBy = 'system-scheduler') =>
      findEligibleApprovers(tdb.handle.db, org.orgId, profileId, requestedBy);
    const ids = (await eligible(org.gated.id)).map((p) => p.id).sort();
    expect(ids).toEqual([org.admin.id, org.operator1.id, org.operator2.id].sort());
    expect(ids).not.toContain(unlisted);
    expect(ids).not.toContain(disabledAdmin);
    expect(ids).not.toContain(other.admin.id);
    // A profile without listed approvers: the admins alone.
    expect((await eligible(org.open.id)).map((p) => p.id)).toEqual([org.admin.id]);
    // ... and for the requester's: the admin created it, so it is no second person and gets no mail.
    expect((await eligible(org.gated.id, org.requester.id)).map((p) => p.id).sort()).toEqual(
      [org.operator1.id, org.operator2.id].sort(),
    );
    // An operator's own request: never itself, and not the admin who created it.
    expect((await eligible(org.gated.id, org.operator1.id)).map((p) => p.id)).toEqual([org.operator2.id]);
  });
});

describe('recording an event’s deliveries', () => {
  const event = (eventKey: string) => ({
    orgId: org.orgId,
    eventKey,
    kind: 'approval_submitted',
    subject: 'Approval needed',
  });
  const delivery = (recipient: string, skipReason: string | null = null) => ({ recipient, skipReason });

  it('inserts new pending ones already claimed, the k-th for k leases, up to the limit, and never a skipped one', async () => {
    const key = `approval_submitted-claims-${Date.now()}`;
    const r = await recordDeliveries(
      tdb.handle.db,
      event(key),
      ['d@x.test', 'a@x.test', 'c@x.test', 'b@x.test', 'e@x.test'].map((to) =>
        delivery(to, to === 'b@x.test' ? 'no address' : null),
      ),
      { leaseMs: 60_000, max: 3 },
    );
    expect(r.rows.map((x) => x.recipient)).toEqual(['a@x.test', 'b@x.test', 'c@x.test', 'd@x.test', 'e@x.test']);
    expect(r.inserted).toHaveLength(5);
    const byTo = new Map(r.rows.map((x) => [x.recipient, x]));
    expect([...r.claimed].map((id) => r.rows.find((x) => x.id === id)?.recipient).sort()).toEqual([
      'a@x.test',
      'c@x.test',
      'd@x.test',
    ]);
    expect(byTo.get('b@x.test')).toMatchObject({ status: 'skipped', last_error: 'no address', claimed_until: null });
    expect(byTo.get('e@x.test')).toMatchObject({ status: 'pending', attempts: 0, claimed_until: null });
    // Leases of 1, 2 and 3 minutes from the database's now, in sending order.
    const leases = await tdb.superuser<{ recipient: string; attempts: number; secs: number }>(
      `SELECT recipient, attempts, round(extract(epoch FROM claimed_until - created_at))::int AS secs
       FROM notification_deliveries WHERE event_key = $1 AND claimed_until IS NOT NULL ORDER BY recipient`,
      [key],
    );
    expect(leases.rows).toEqual([
      { recipient: 'a@x.test', attempts: 1, secs: 60 },
      { recipient: 'c@x.test', attempts: 1, secs: 120 },
      { recipient: 'd@x.test', attempts: 1, secs: 180 },
    ]);
  });

  it('keeps rows that exist as they are, claims none of them, and returns them with the new ones', async () => {
    const key = `approval_submitted-again-${Date.now()}`;
    const first = await recordDeliveries(tdb.handle.db, event(key), [delivery('a@x.test')], {
      leaseMs: 60_000,
      max: 5,
    });
    await tdb.superuser(
      `UPDATE notification_deliveries SET status = 'sent', sent_at = now(), claimed_until = NULL WHERE event_key = $1`,
      [key],
    );
    const again = await recordDeliveries(tdb.handle.db, event(key), [delivery('a@x.test'), delivery('b@x.test')], {
      leaseMs: 60_000,
      max: 5,
    });
    expect(again.rows.map((x) => [x.recipient, x.status])).toEqual([
      ['a@x.test', 'sent'],
      ['b@x.test', 'pending'],
    ]);
    expect(again.rows[0]?.id).toBe(first.rows[0]?.id);
    expect(again.inserted.map((x) => x.recipient)).toEqual(['b@x.test']);
    expect([...again.claimed]).toEqual([again.rows[1]?.id]);
    // Without a claim (no SMTP configured): recorded, claimed by nobody.
    const key2 = `approval_submitted-noclaim-${Date.now()}`;
    const none = await recordDeliveries(tdb.handle.db, event(key2), [delivery('a@x.test')]);
    expect(none.claimed.size).toBe(0);
    expect(none.rows[0]).toMatchObject({ status: 'pending', attempts: 0, claimed_until: null });
  });

  it('returns a row another transaction inserted while it waited, claimed by neither', async () => {
    const key = `approval_submitted-race-${Date.now()}`;
    // A second connection holds an uncommitted insert of the same (event, recipient).
    const client = new pg.Client({ connectionString: tdb.appUrl });
    await client.connect();
    try {
      await client.query('BEGIN');
      await client.query(
        `INSERT INTO notification_deliveries (org_id, event_key, kind, recipient, subject)
         VALUES ($1, $2, 'approval_submitted', 'a@x.test', 'Approval needed')`,
        [org.orgId, key],
      );
      const recording = recordDeliveries(tdb.handle.db, event(key), [delivery('a@x.test'), delivery('b@x.test')], {
        leaseMs: 60_000,
        max: 5,
      });
      await new Promise((r) => setTimeout(r, 200));
      await client.query('COMMIT');
      const r = await recording;
      // The conflicting row was committed after the statement's snapshot: read again, it is there, unclaimed.
      expect(r.rows.map((x) => x.recipient)).toEqual(['a@x.test', 'b@x.test']);
      expect(r.inserted.map((x) => x.recipient)).toEqual(['b@x.test']);
      expect(r.rows[0]).toMatchObject({ status: 'pending', attempts: 0, claimed_until: null });
      expect(r.claimed.has(r.rows[0]?.id ?? '')).toBe(false);
      expect((await listDeliveries(tdb.handle.db, key)).map((x) => x.recipient)).toEqual(['a@x.test', 'b@x.test']);
    } finally {
      await client.end();
    }
  });
});

describe("a request's mail facts", () => {
  it('come in one row: the job, the profile and the votes, with nulls for what is gone', async () => {
    const jobId = randomUUID();
    const approvalId = randomUUID();
    const certificateId = randomUUID();
    const at = new Date();
    await writeSubmission(tdb.handle.db, {
      certificate: {
        id: certificateId,
        org_id: org.orgId,
        profile_id: org.gated.id,
        owner_id: org.requester.id,
        common_name: 'facts.example.test',
        sans: ['facts.example.test'],
        public_key: Buffer.from([1]),
      },
      job: {
        id: jobId,
        org_id: org.orgId,
        certificate_id: certificateId,
        profile_id: org.gated.id,
        kind: 'issuance',
        status: 'awaiting_approval',
        requires_approval: true,
        requested_by: org.requester.id,
        requester_type: 'user',
        common_name: 'facts.example.test',
        sans: ['facts.example.test'],
        public_key: Buffer.from([1]),
      },
      approval: {
        id: approvalId,
        org_id: org.orgId,
        job_id: jobId,
        certificate_id: certificateId,
        profile_id: org.gated.id,
        requested_by: org.requester.id,
        requester_type: 'user',
        justification: 'facts',
        domains: ['facts.example.test'],
        environment: 'production',
        approvals_required: 2,
        requested_at: at,
        expires_at: new Date(at.getTime() + 3_600_000),
      },
      outbox: [],
      audit: [],
      at,
    });
    const a = { id: approvalId, org_id: org.orgId, job_id: jobId, profile_id: org.gated.id };
    expect(await findMailFacts(tdb.handle.db, a)).toEqual({
      job_kind: 'issuance',
      common_name: 'facts.example.test',
      profile_name: org.gated.name,
      votes: 0,
    });
    await tdb.superuser(
      `INSERT INTO approval_votes (approval_id, org_id, voter_id, voter_type, requested_by, credential_kind, credential_id)
       VALUES ($1, $2, $3, 'user', $4, 'api_key', $5)`,
      [approvalId, org.orgId, org.operator1.id, org.requester.id, org.operator1.keyId],
    );
    expect((await findMailFacts(tdb.handle.db, a)).votes).toBe(1);
    // Another org's ids find nothing of this org's.
    const other = await seedOrg(tdb.handle.db);
    expect(await findMailFacts(tdb.handle.db, { ...a, org_id: other.orgId })).toEqual({
      job_kind: null,
      common_name: null,
      profile_name: null,
      votes: 0,
    });
  });
});
