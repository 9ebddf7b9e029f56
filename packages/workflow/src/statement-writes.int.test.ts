import { randomUUID } from 'node:crypto';
import { releaseApprovedJob, type SubmissionRows, verifyAllChains, writeSubmission } from '@countersign/db';
import { actorOf, DomainError } from '@countersign/domain';
import { createTestDatabase, type SeededOrg, seedOrg, type TestDatabase } from '@countersign/testing';
import { approve, reject } from '@countersign/workflow';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/** The use cases' one-statement writes: writeSubmission (rows typed back from jsonb) and releaseApprovedJob. */
let tdb: TestDatabase;
let org: SeededOrg;

beforeAll(async () => {
  tdb = await createTestDatabase();
  org = await seedOrg(tdb.handle.db);
});
afterAll(async () => tdb?.drop());

function rows(opts: { gated: boolean; newCertificate?: string; certificateId?: string }): SubmissionRows {
  const now = new Date();
  const certificateId = opts.certificateId ?? randomUUID();
  const jobId = randomUUID();
  const approvalId = randomUUID();
  const profile = opts.gated ? org.gated : org.open;
  const actor = actorOf(org.requester);
  const name = opts.newCertificate ?? 'renewed.example.test';
  return {
    ...(opts.newCertificate
      ? {
          certificate: {
            id: certificateId,
            org_id: org.orgId,
            profile_id: profile.id,
            owner_id: org.requester.id,
            common_name: name,
            sans: [name],
            public_key: Buffer.from([0x30, 0x00, 0xff]),
          },
        }
      : {}),
    job: {
      id: jobId,
      org_id: org.orgId,
      certificate_id: certificateId,
      profile_id: profile.id,
      kind: opts.newCertificate ? 'issuance' : 'renewal',
      status: opts.gated ? 'awaiting_approval' : 'pending',
      requires_approval: opts.gated,
      requested_by: actor.id,
      requester_type: actor.type,
      common_name: name,
      sans: [name, `www.${name}`],
      public_key: Buffer.from([0x30, 0x01, 0x00]),
      released_at: opts.gated ? null : now,
    },
    ...(opts.gated
      ? {
          approval: {
            id: approvalId,
            org_id: org.orgId,
            job_id: jobId,
            certificate_id: certificateId,
            profile_id: profile.id,
            requested_by: actor.id,
            requester_type: actor.type,
            justification: 'a "quoted" justification, with ünïcode',
            domains: [name, `www.${name}`],
            environment: profile.environment,
            approvals_required: profile.approvals_required,
            requested_at: new Date(now.getTime() - 1),
            expires_at: new Date(now.getTime() + 3_600_000),
            escalate_at: new Date(now.getTime() + 600_000),
          },
        }
      : {}),
    outbox: [
      opts.gated
        ? { topic: 'approval.submitted', payload: { approval_id: approvalId } }
        : { topic: 'job.released', payload: { job_id: jobId } },
    ],
    audit: [
      {
        orgId: org.orgId,
        actor,
        action: 'certificate_requested',
        resourceType: 'job',
        resourceId: jobId,
        details: { certificate_id: certificateId },
      },
    ],
    at: now,
  };
}

const readBack = async (table: 'certificates' | 'jobs' | 'approval_requests', id: string) =>
  tdb.handle.db.selectFrom(table).selectAll().where('id', '=', id).executeTakeFirst();

describe('writeSubmission', () => {
  it('returns each row exactly as a plain read of it does', async () => {
    // Gated (certificate, job, approval), ungated (a released job), and a renewal (no certificate row).
    const gated = rows({ gated: true, newCertificate: 'gated.example.test' });
    const open = rows({ gated: false, newCertificate: 'open.example.test' });
    for (const w of [gated, open]) {
      const written = await writeSubmission(tdb.handle.db, w);
      expect(written.certificate).toEqual(await readBack('certificates', w.job.certificate_id));
      expect(written.job).toEqual(await readBack('jobs', w.job.id));
      expect(written.approval).toEqual(w.approval ? await readBack('approval_requests', w.approval.id) : null);
      // Dates and bytes come back as the driver types them, not as jsonb's strings.
      expect(written.job.created_at).toBeInstanceOf(Date);
      expect(Buffer.isBuffer(written.job.public_key)).toBe(true);
    }
    // A renewal of the gated request's certificate, once its request is rejected (which cancels the job).
    await reject(tdb.handle.db, org.operator1, gated.approval?.id ?? '', 'not this one');
    const renewal = rows({ gated: true, certificateId: gated.job.certificate_id });
    const written = await writeSubmission(tdb.handle.db, renewal);
    expect(written.certificate).toBeNull();
    expect(written.job).toEqual(await readBack('jobs', renewal.job.id));
    expect(written.approval).toEqual(await readBack('approval_requests', renewal.approval?.id ?? ''));
  });

  it('writes all of a submission or none of it', async () => {
    const w = rows({ gated: true, newCertificate: 'refused.example.test' });
    // The approval breaks a CHECK (an empty justification): the certificate, job, outbox event and audit
    // records written beside it in the same statement must not remain.
    const bad = { ...w, approval: { ...(w.approval as NonNullable<SubmissionRows['approval']>), justification: '' } };
    await expect(writeSubmission(tdb.handle.db, bad)).rejects.toThrow(/check constraint/);
    expect(await readBack('certificates', w.job.certificate_id)).toBeUndefined();
    expect(await readBack('jobs', w.job.id)).toBeUndefined();
    const outbox = await sql<{
      n: string;
    }>`SELECT count(*) n FROM outbox WHERE payload->>'approval_id' = ${w.approval?.id}`.execute(tdb.handle.db);
    expect(outbox.rows[0]?.n).toBe('0');
    const audit = await sql<{
      n: string;
    }>`SELECT count(*) n FROM audit_records WHERE resource_id = ${w.job.id}`.execute(tdb.handle.db);
    expect(audit.rows[0]?.n).toBe('0');
  });

  it('seals its audit records into the chain at the statement’s own commit', async () => {
    const w = rows({ gated: false, newCertificate: 'sealed.example.test' });
    await writeSubmission(tdb.handle.db, w);
    const audit = await sql<{ seq: string }>`SELECT seq FROM audit_records WHERE resource_id = ${w.job.id}`.execute(
      tdb.handle.db,
    );
    expect(audit.rows).toHaveLength(1);
    const staged = await tdb.superuser<{ n: string }>('SELECT count(*) n FROM audit_staging_batches');
    expect(staged.rows[0]?.n).toBe('0');
    expect(await verifyAllChains(tdb.handle, { mode: 'full' })).toMatchObject({ ok: true, failures: [] });
  });
});

describe('releaseApprovedJob', () => {
  it('writes no event and no record when the job was not awaiting approval', async () => {
    // An ungated job is released at once: a second release finds nothing to do.
    const w = rows({ gated: false, newCertificate: 'released.example.test' });
    await writeSubmission(tdb.handle.db, w);
    const released = await releaseApprovedJob(tdb.handle.db, {
      orgId: org.orgId,
      jobId: w.job.id,
      events: [{ topic: 'job.released', payload: { job_id: w.job.id } }],
      audit: [
        {
          orgId: org.orgId,
          actor: actorOf(org.operator1),
          action: 'job_released',
          resourceType: 'job',
          resourceId: w.job.id,
          details: { status: 'pending' },
        },
      ],
      at: new Date(),
    });
    expect(released).toBe(false);
    const events = await sql<{
      n: string;
    }>`SELECT count(*) n FROM outbox WHERE payload->>'job_id' = ${w.job.id}`.execute(tdb.handle.db);
    expect(events.rows[0]?.n).toBe('1'); // the submission's own
    const records = await sql<{
      action: string;
    }>`SELECT action FROM audit_records WHERE resource_id = ${w.job.id}`.execute(tdb.handle.db);
    expect(records.rows.map((r) => r.action)).toEqual(['certificate_requested']);
  });
});

describe('a decision that waited for the request’s lock', () => {
  it('is judged by the approvers committed while it waited', async () => {
    const w = rows({ gated: true, newCertificate: 'waited.example.test' });
    await writeSubmission(tdb.handle.db, w);
    const approvalId = w.approval?.id ?? '';
    // Another transaction holds the request's row lock (as a concurrent decision would).
    let release = () => {};
    const released = new Promise<void>((r) => {
      release = r;
    });
    let locked = () => {};
    const isLocked = new Promise<void>((r) => {
      locked = r;
    });
    const holder = tdb.handle.db.transaction().execute(async (tx) => {
      await sql`SELECT 1 FROM approval_requests WHERE id = ${approvalId}::uuid FOR UPDATE`.execute(tx);
      locked();
      await released;
    });
    await isLocked;
    try {
      const deciding = approve(tdb.handle.db, org.operator2, approvalId, 'waited').then(
        () => 'approved',
        (err: unknown) => (err instanceof DomainError ? err.code : String(err)),
      );
      await new Promise((r) => setTimeout(r, 200));
      // While it waits, operator2 is taken off the profile's approvers.
      await tdb.superuser('DELETE FROM profile_approvers WHERE profile_id = $1 AND principal_id = $2', [
        org.gated.id,
        org.operator2.id,
      ]);
      release();
      await holder;
      expect(await deciding).toBe('forbidden');
    } finally {
      release();
      await holder;
      await tdb.superuser(
        'INSERT INTO profile_approvers (profile_id, principal_id, org_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING',
        [org.gated.id, org.operator2.id, org.orgId],
      );
    }
    const votes = await sql<{
      n: string;
    }>`SELECT count(*) n FROM approval_votes WHERE approval_id = ${approvalId}`.execute(tdb.handle.db);
    expect(votes.rows[0]?.n).toBe('0');
  });
});
