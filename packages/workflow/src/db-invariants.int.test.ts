import { actorOf } from '@countersign/domain';
import { createTestDatabase, csrFor, type SeededOrg, seedOrg, type TestDatabase } from '@countersign/testing';
import { approve, reject, requestCertificate, requesterOf } from '@countersign/workflow';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The database refuses to break SPEC §1 on its own, even for raw SQL through
 * the services' role: these tests bypass the use cases on purpose.
 */
let tdb: TestDatabase;
let org: SeededOrg;
const settings = { approvalTimeoutMs: 3_600_000, escalationAfterMs: 600_000 };

beforeAll(async () => {
  tdb = await createTestDatabase();
  org = await seedOrg(tdb.handle.db);
});
afterAll(async () => tdb?.drop());

let n = 0;
async function gatedRequest() {
  const cn = `db${++n}.example.test`;
  const { csrPem } = await csrFor(cn);
  return requestCertificate(tdb.handle.db, settings, requesterOf(org.requester, actorOf(org.requester)), {
    profile_id: org.gated.id,
    common_name: cn,
    csr: csrPem,
    justification: 'db invariant test',
  });
}

/** A version carrying its job's own names (what the approvers saw), unless other names are given. */
const rawVersion = (r: { certificate: { id: string }; job: { id: string } }, fp: string, sans?: string[]) =>
  sql`INSERT INTO certificate_versions (org_id, certificate_id, job_id, issuer, serial, fingerprint_sha256, not_before, not_after, leaf_pem, chain_pem, sans)
      VALUES (${org.orgId}::uuid, ${r.certificate.id}::uuid, ${r.job.id}::uuid, 'local', '01', ${fp}, now(), now() + interval '1 day', 'x', 'y',
              coalesce(${sans ?? null}::text[], (SELECT sans FROM jobs WHERE id = ${r.job.id}::uuid)))`.execute(
    tdb.handle.db,
  );

describe('database invariants (raw SQL as the services role)', () => {
  it('refuses a certificate version for a job whose approval is pending, rejected, or whose job is not released', async () => {
    const pending = await gatedRequest();
    await expect(rawVersion(pending, 'fp-pending')).rejects.toThrow(/not released|requires an approved/);
    // Even forcing the job to pending first is refused: release needs an approved request.
    await expect(
      sql`UPDATE jobs SET status = 'pending' WHERE id = ${pending.job.id}::uuid`.execute(tdb.handle.db),
    ).rejects.toThrow(/cannot be released before its approval is approved/);

    const rejected = await gatedRequest();
    await reject(tdb.handle.db, org.operator1, rejected.approval?.id ?? '', 'no');
    await expect(rawVersion(rejected, 'fp-rejected')).rejects.toThrow(/cancelled, not released/);
    const count = await sql<{ c: string }>`SELECT count(*) c FROM certificate_versions`.execute(tdb.handle.db);
    expect(count.rows[0]?.c).toBe('0');
  });

  it('allows exactly one version per job', async () => {
    const r = await gatedRequest();
    await approve(tdb.handle.db, org.operator1, r.approval?.id ?? '', null);
    await rawVersion(r, 'fp-one');
    await expect(rawVersion(r, 'fp-two')).rejects.toThrow(/certificate_versions_job_id_key/);
  });

  it('never lets the requester vote or decide, even by raw SQL', async () => {
    const r = await gatedRequest();
    const id = r.approval?.id ?? '';
    await expect(
      sql`INSERT INTO approval_votes (approval_id, org_id, voter_id, voter_type, requested_by)
          VALUES (${id}::uuid, ${org.orgId}::uuid, ${org.requester.id}::uuid, 'user', ${org.requester.id})`.execute(
        tdb.handle.db,
      ),
    ).rejects.toThrow(/vote_two_person/);
    await expect(
      sql`UPDATE approval_requests SET state = 'rejected', decided_by = ${org.requester.id}, decided_by_type = 'user', decided_at = now()
          WHERE id = ${id}::uuid`.execute(tdb.handle.db),
    ).rejects.toThrow(/approval_two_person/);
  });

  it('refuses approved without its quorum of votes, and bypass in production', async () => {
    const r = await gatedRequest();
    const id = r.approval?.id ?? '';
    await expect(
      sql`UPDATE approval_requests SET state = 'approved', decided_by = ${org.operator1.id}, decided_by_type = 'user', decided_at = now()
          WHERE id = ${id}::uuid`.execute(tdb.handle.db),
    ).rejects.toThrow(/0 of 1 required votes/);
    await expect(
      sql`UPDATE approval_requests SET state = 'approved', decided_by = 'system-bypass', decided_by_type = 'system', decided_at = now()
          WHERE id = ${id}::uuid`.execute(tdb.handle.db),
    ).rejects.toThrow(/auto-approved by the bypass, on a profile that allows it/);
  });

  it('keeps terminal states terminal and requires decided_by on them', async () => {
    const r = await gatedRequest();
    const id = r.approval?.id ?? '';
    await expect(
      sql`UPDATE approval_requests SET state = 'expired' WHERE id = ${id}::uuid`.execute(tdb.handle.db),
    ).rejects.toThrow(/approval_decided_fields/);
    await reject(tdb.handle.db, org.operator1, id, 'no');
    for (const state of ['approved', 'pending', 'voided']) {
      await expect(
        sql`UPDATE approval_requests SET state = ${state} WHERE id = ${id}::uuid`.execute(tdb.handle.db),
      ).rejects.toThrow(/terminal/);
    }
    await expect(sql`DELETE FROM approval_requests WHERE id = ${id}::uuid`.execute(tdb.handle.db)).rejects.toThrow(
      /permission denied|never deleted/,
    );
    await expect(
      sql`UPDATE jobs SET status = 'pending' WHERE id = ${r.job.id}::uuid`.execute(tdb.handle.db),
    ).rejects.toThrow(/cannot move from cancelled/);
  });

  it('allows one approval request per job and no ungated job under a gated profile', async () => {
    const r = await gatedRequest();
    await expect(
      sql`INSERT INTO approval_requests (org_id, job_id, certificate_id, profile_id, requested_by, requester_type, justification,
            domains, environment, approvals_required, expires_at)
          SELECT org_id, job_id, certificate_id, profile_id, requested_by, requester_type, justification, domains, environment,
            approvals_required, expires_at FROM approval_requests WHERE id = ${r.approval?.id ?? ''}::uuid`.execute(
        tdb.handle.db,
      ),
    ).rejects.toThrow(/approval_requests_job_id_key/);
    await expect(
      sql`INSERT INTO jobs (org_id, certificate_id, profile_id, kind, status, requires_approval, requested_by, requester_type,
            common_name, sans, public_key)
          SELECT org_id, certificate_id, profile_id, 'renewal', 'pending', false, requested_by, requester_type, common_name, sans,
            public_key FROM jobs WHERE id = ${r.job.id}::uuid`.execute(tdb.handle.db),
    ).rejects.toThrow(/must require approval/);
  });

  it('gives the services role no way to rewrite the audit ledger', async () => {
    await expect(sql`UPDATE audit_records SET action = 'x'`.execute(tdb.handle.db)).rejects.toThrow(
      /permission denied/,
    );
    await expect(sql`DELETE FROM audit_records`.execute(tdb.handle.db)).rejects.toThrow(/permission denied/);
    await expect(sql`TRUNCATE audit_records`.execute(tdb.handle.db)).rejects.toThrow(/permission denied/);
    await expect(sql`UPDATE audit_heads SET seq = 0`.execute(tdb.handle.db)).rejects.toThrow(/permission denied/);
  });
});
