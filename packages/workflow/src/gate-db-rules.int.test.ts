import { actorOf } from '@countersign/domain';
import {
  createTestDatabase,
  csrFor,
  profileFields,
  type SeededOrg,
  seedOrg,
  type TestDatabase,
} from '@countersign/testing';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEnrollmentKey, saveProfile } from './administration.ts';
import { approve, reject } from './decisions.ts';
import { requestCertificate, requesterOf } from './requests.ts';

/**
 * SPEC §1.6 in the database (migration 0015): raw SQL through the services'
 * role, as a bug in a service would issue it, cannot make an approval out of
 * nothing, vote with an enrollment credential, let a principal decide on a
 * request of one it created (or that created it), change what a job asks for
 * after it was approved, record a certificate with other names than the
 * approved ones, or bypass approval on a profile that does not allow it.
 * Each test fails on the schema before 0015 (the attack succeeds there).
 */
let tdb: TestDatabase;
let org: SeededOrg;
const settings = { approvalTimeoutMs: 3_600_000, escalationAfterMs: 600_000 };
const db = () => tdb.handle.db;

beforeAll(async () => {
  tdb = await createTestDatabase();
  org = await seedOrg(tdb.handle.db);
});
afterAll(async () => tdb?.drop());

let n = 0;
async function gated(profileId = org.gated.id, by = org.requester) {
  const cn = `rule${++n}.example.test`;
  const { csrPem } = await csrFor(cn);
  const r = await requestCertificate(db(), settings, requesterOf(by, actorOf(by)), {
    profile_id: profileId,
    common_name: cn,
    csr: csrPem,
    justification: 'db rule test',
  });
  if (!r.approval) throw new Error('expected a gated request');
  return { ...r, approval: r.approval, cn };
}

const count = async (table: string, where = 'true') =>
  Number((await tdb.superuser<{ n: string }>(`SELECT count(*) n FROM ${table} WHERE ${where}`)).rows[0]?.n);

const vote = (approvalId: string, voterId: string, requestedBy: string, kind: string | null, id: string | null) =>
  sql`INSERT INTO approval_votes (approval_id, org_id, voter_id, voter_type, requested_by, credential_kind, credential_id)
      VALUES (${approvalId}::uuid, ${org.orgId}::uuid, ${voterId}::uuid, 'user', ${requestedBy}, ${kind}, ${id}::uuid)`.execute(
    db(),
  );

describe('approval requests cannot be made up', () => {
  it('refuses a request inserted already approved, with no votes, by the bypass, in production', async () => {
    // A job of the gated profile inserted by hand, as the attacker's first step.
    const r = await gated();
    const jobsBefore = await count('jobs', `status = 'pending'`);
    await expect(
      sql`INSERT INTO approval_requests (org_id, job_id, certificate_id, profile_id, requested_by, requester_type,
            justification, domains, environment, approvals_required, expires_at, state, decided_by, decided_by_type, decided_at)
          SELECT org_id, id, certificate_id, profile_id, requested_by, requester_type, 'made up', sans, 'production', 2,
                 now() + interval '1 day', 'approved', 'system-bypass', 'system', now()
            FROM jobs WHERE id = ${r.job.id}::uuid`.execute(db()),
    ).rejects.toThrow(/approval_requests_job_id_key|starts pending/);
    // The same for a job that has no request yet: a job inserted by hand under the gated profile.
    const jobId = crypto.randomUUID();
    await sql`INSERT INTO jobs (id, org_id, certificate_id, profile_id, kind, status, requires_approval, requested_by,
                requester_type, common_name, sans, public_key)
              SELECT ${jobId}::uuid, org_id, certificate_id, profile_id, 'renewal', 'awaiting_approval', true, requested_by,
                requester_type, common_name, sans, public_key FROM jobs WHERE id = ${r.job.id}::uuid`
      .execute(db())
      .catch(() => undefined); // one open job per certificate may refuse it already; either way no approval follows
    await expect(
      sql`INSERT INTO approval_requests (org_id, job_id, certificate_id, profile_id, requested_by, requester_type,
            justification, domains, environment, approvals_required, expires_at, state, decided_by, decided_by_type, decided_at)
          VALUES (${org.orgId}::uuid, ${jobId}::uuid, ${r.certificate.id}::uuid, ${org.gated.id}::uuid, ${org.requester.id}, 'user',
            'made up', ${[r.cn]}::text[], 'production', 2, now() + interval '1 day', 'approved', 'system-bypass', 'system', now())`.execute(
        db(),
      ),
    ).rejects.toThrow(/starts pending|foreign key/);
    expect(await count('jobs', `status = 'pending'`)).toBe(jobsBefore);
  });

  it('refuses a pending request that does not describe its job: other names, a lower quorum, another environment', async () => {
    const r = await gated();
    // Cancel the real request's job so a second request row could be tried against a fresh gated job.
    await reject(db(), org.operator1, r.approval.id, 'make room');
    const jobId = crypto.randomUUID();
    await sql`INSERT INTO jobs (id, org_id, certificate_id, profile_id, kind, status, requires_approval, requested_by,
                requester_type, common_name, sans, public_key)
              SELECT ${jobId}::uuid, org_id, certificate_id, profile_id, 'renewal', 'awaiting_approval', true, requested_by,
                requester_type, common_name, sans, public_key FROM jobs WHERE id = ${r.job.id}::uuid`.execute(db());
    const insert = (domains: string[], environment: string, quorum: number) =>
      sql`INSERT INTO approval_requests (org_id, job_id, certificate_id, profile_id, requested_by, requester_type,
            justification, domains, environment, approvals_required, expires_at)
          VALUES (${org.orgId}::uuid, ${jobId}::uuid, ${r.certificate.id}::uuid, ${org.gated.id}::uuid, ${org.requester.id},
            'user', 'x', ${domains}::text[], ${environment}, ${quorum}, now() + interval '1 day')`.execute(db());
    await expect(insert(['evil.example.test'], 'production', 1)).rejects.toThrow(
      /approval_matches_job|describe its job/,
    );
    await expect(insert([r.cn], 'development', 1)).rejects.toThrow(/describe its job/);
    const mofn = await saveProfile(
      db(),
      org.admin,
      null,
      profileFields({ name: 'two-of-two', approvals_required: 2 }),
      [org.operator1.id, org.operator2.id],
    );
    await sql`UPDATE jobs SET status = 'cancelled' WHERE id = ${jobId}::uuid`.execute(db());
    const two = await gated(mofn.id);
    expect(two.approval.approvals_required).toBe(2);
    await expect(
      sql`UPDATE approval_requests SET approvals_required = 1 WHERE id = ${two.approval.id}::uuid`.execute(db()),
    ).rejects.toThrow(/immutable/);
  });
});

describe("a job's request never changes after it is made", () => {
  it('refuses changing the names, key, profile or common name of a job', async () => {
    const r = await gated();
    const id = r.job.id;
    for (const change of [
      sql`UPDATE jobs SET sans = ARRAY['evil.example.test'] WHERE id = ${id}::uuid`,
      sql`UPDATE jobs SET common_name = 'evil.example.test' WHERE id = ${id}::uuid`,
      sql`UPDATE jobs SET public_key = '\\x3000'::bytea WHERE id = ${id}::uuid`,
      sql`UPDATE jobs SET profile_id = ${org.open.id}::uuid WHERE id = ${id}::uuid`,
      sql`UPDATE jobs SET kind = 'renewal' WHERE id = ${id}::uuid`,
    ]) {
      await expect(change.execute(db())).rejects.toThrow(/jobs_immutable|identity columns are immutable/);
    }
  });

  it('refuses a certificate version whose names differ from the approved ones, and records the approved ones', async () => {
    const r = await gated();
    await approve(db(), org.operator1, r.approval.id, null);
    const version = (sans: string[], fp: string) =>
      sql`INSERT INTO certificate_versions (org_id, certificate_id, job_id, issuer, serial, fingerprint_sha256, not_before,
            not_after, leaf_pem, chain_pem, sans)
          VALUES (${org.orgId}::uuid, ${r.certificate.id}::uuid, ${r.job.id}::uuid, 'local', '01', ${fp}, now(),
            now() + interval '1 day', 'x', 'y', ${sans}::text[])`.execute(db());
    await expect(version(['evil.example.test'], 'fp-evil')).rejects.toThrow(
      /certificate_versions_names_approved|not the approved/,
    );
    await expect(version([r.cn, 'extra.example.test'], 'fp-extra')).rejects.toThrow(/not the approved/);
    await expect(version([], 'fp-none')).rejects.toThrow(/not the approved/);
    await version([r.cn], 'fp-ok');
    expect(await count('certificate_versions', `job_id = '${r.job.id}'`)).toBe(1);
  });
});

describe('votes and decisions need the decider’s own credential', () => {
  it('refuses a vote without a credential, with an enrollment key, or with another principal’s key', async () => {
    const r = await gated();
    const op = org.operator1;
    await expect(vote(r.approval.id, op.id, org.requester.id, null, null)).rejects.toThrow(
      /vote_carries_credential|vote_own_credential|created for itself/,
    );
    await expect(vote(r.approval.id, op.id, org.requester.id, 'api_key', op.enrollmentKeyId)).rejects.toThrow(
      /created for itself, never an enrollment credential/,
    );
    // An admin mints a fresh enrollment key for the operator: still not the operator's own.
    const minted = await createEnrollmentKey(db(), actorOf(org.admin), org.orgId, op.id, { name: 'minted' });
    await expect(vote(r.approval.id, op.id, org.requester.id, 'api_key', minted.id)).rejects.toThrow(
      /never an enrollment credential/,
    );
    await expect(vote(r.approval.id, op.id, org.requester.id, 'api_key', org.operator2.keyId)).rejects.toThrow(
      /never an enrollment credential/,
    );
    expect(await count('approval_votes', `approval_id = '${r.approval.id}'`)).toBe(0);
    // The operator's own key is accepted, as the use case casts it.
    await vote(r.approval.id, op.id, org.requester.id, 'api_key', op.keyId);
    expect(await count('approval_votes', `approval_id = '${r.approval.id}'`)).toBe(1);
  });

  it('refuses a revoked own key', async () => {
    const r = await gated();
    await tdb.superuser('UPDATE api_keys SET revoked_at = now() WHERE id = $1', [org.operator2.enrollmentKeyId]);
    const { mintOwnApiKey } = await import('./administration.ts');
    const own = await mintOwnApiKey(db(), org.operator2, { name: 'to revoke' });
    await sql`UPDATE api_keys SET revoked_at = now() WHERE id = ${own.id}::uuid`.execute(db());
    await expect(vote(r.approval.id, org.operator2.id, org.requester.id, 'api_key', own.id)).rejects.toThrow(
      /live credential/,
    );
  });

  it('refuses a vote or a decision by a principal related by creation to the requester', async () => {
    // The admin created the requester: its own key does not make it a second person on the requester's request.
    const r = await gated();
    await expect(vote(r.approval.id, org.admin.id, org.requester.id, 'api_key', org.admin.keyId)).rejects.toThrow(
      /vote_provenance|related by creation/,
    );
    await expect(
      sql`UPDATE approval_requests SET state = 'rejected', decided_by = ${org.admin.id}, decided_by_type = 'user',
            decided_at = now(), decision_note = 'x', decided_credential_kind = 'api_key', decided_credential_id = ${org.admin.keyId}::uuid
          WHERE id = ${r.approval.id}::uuid`.execute(db()),
    ).rejects.toThrow(/approval_provenance|related by creation/);
    // And the reverse: the operator's request is not the admin's to approve (the admin created the operator).
    const mine = await gated(org.gated.id, org.operator1);
    await expect(vote(mine.approval.id, org.admin.id, org.operator1.id, 'api_key', org.admin.keyId)).rejects.toThrow(
      /related by creation/,
    );
  });

  it('refuses a decision recorded with an enrollment credential or none', async () => {
    const r = await gated();
    await expect(
      sql`UPDATE approval_requests SET state = 'rejected', decided_by = ${org.operator1.id}, decided_by_type = 'user',
            decided_at = now(), decision_note = 'x' WHERE id = ${r.approval.id}::uuid`.execute(db()),
    ).rejects.toThrow(/approval_decision|created for itself/);
    await expect(
      sql`UPDATE approval_requests SET state = 'rejected', decided_by = ${org.operator1.id}, decided_by_type = 'user',
            decided_at = now(), decision_note = 'x', decided_credential_kind = 'api_key',
            decided_credential_id = ${org.operator1.enrollmentKeyId}::uuid
          WHERE id = ${r.approval.id}::uuid`.execute(db()),
    ).rejects.toThrow(/created for itself/);
  });
});

describe('the bypass is a per-profile permission no production profile holds', () => {
  it('refuses the bypass on a non-production profile that does not allow it, and allow_bypass in production', async () => {
    const staging = await saveProfile(db(), org.admin, null, profileFields({ name: 'stage', environment: 'staging' }), [
      org.operator1.id,
    ]);
    const r = await gated(staging.id);
    await expect(
      sql`UPDATE approval_requests SET state = 'approved', decided_by = 'system-bypass', decided_by_type = 'system', decided_at = now()
          WHERE id = ${r.approval.id}::uuid`.execute(db()),
    ).rejects.toThrow(/approval_bypass|on a profile that allows it/);
    for (const environment of ['production', 'prod', 'live', 'Production']) {
      await expect(
        sql`UPDATE profiles SET environment = ${environment}, allow_bypass = true WHERE id = ${staging.id}::uuid`.execute(
          db(),
        ),
      ).rejects.toThrow(/profiles_bypass_not_production/);
    }
    // A profile that allows it: the bypass actor may decide, and only it.
    await sql`UPDATE profiles SET allow_bypass = true WHERE id = ${staging.id}::uuid`.execute(db());
    await sql`UPDATE approval_requests SET state = 'approved', decided_by = 'system-bypass', decided_by_type = 'system', decided_at = now()
              WHERE id = ${r.approval.id}::uuid`.execute(db());
    expect(await count('approval_requests', `id = '${r.approval.id}' AND state = 'approved'`)).toBe(1);
  });

  it('keeps the domain’s list of bypass environments and the database’s the same', async () => {
    const { BYPASS_ENVIRONMENTS, isBypassEnvironment } = await import('@countersign/domain');
    const names = [...BYPASS_ENVIRONMENTS, 'production', 'prod', 'live', 'eu-prod', 'preprod', 'Dev'];
    const { rows } = await sql<{ name: string; ok: boolean }>`
      SELECT n AS name, is_bypass_environment(n) AS ok FROM unnest(${names}::text[]) AS n`.execute(db());
    for (const row of rows) expect(row.ok, row.name).toBe(isBypassEnvironment(row.name));
    const { rows: def } = await sql<{ src: string }>`
      SELECT prosrc AS src FROM pg_proc WHERE proname = 'is_bypass_environment'`.execute(db());
    const listed = [...(def[0]?.src ?? '').matchAll(/'([a-z]+)'/g)].map((m) => m[1]).sort();
    expect(listed).toEqual([...BYPASS_ENVIRONMENTS].sort());
  });
});

describe('provenance and credentials cannot be rewritten', () => {
  it('refuses changing who created a principal or a key, or a key’s secret', async () => {
    await expect(
      sql`UPDATE principals SET created_by = 'system-bootstrap' WHERE id = ${org.operator1.id}::uuid`.execute(db()),
    ).rejects.toThrow(/permission denied/);
    await expect(
      sql`UPDATE api_keys SET created_by = principal_id::text WHERE id = ${org.operator1.enrollmentKeyId}::uuid`.execute(
        db(),
      ),
    ).rejects.toThrow(/permission denied/);
    // Even the superuser, past the grants, meets the guard.
    await expect(
      tdb.superuser(`UPDATE api_keys SET created_by = principal_id::text WHERE id = $1`, [
        org.operator1.enrollmentKeyId,
      ]),
    ).rejects.toThrow(/api_keys_immutable|immutable/);
    await expect(
      tdb.superuser(`UPDATE principals SET created_by = 'system-bootstrap' WHERE id = $1`, [org.operator1.id]),
    ).rejects.toThrow(/immutable/);
  });

  it('refuses an own key minted without a credential of the same principal, or with a used enrollment key', async () => {
    const insert = (via: string | null) =>
      sql`INSERT INTO api_keys (org_id, principal_id, secret_hash, created_by, enrolled_via_kind, enrolled_via)
          VALUES (${org.orgId}::uuid, ${org.operator1.id}::uuid, ${Buffer.alloc(32, 7)}, ${org.operator1.id},
                  ${via ? 'api_key' : null}, ${via}::uuid)`.execute(db());
    await expect(insert(null)).rejects.toThrow(/api_keys_enrollment|minted with a live credential/);
    // Already used to mint the operator's key by the fixture.
    await expect(insert(org.operator1.enrollmentKeyId)).rejects.toThrow(/mints once/);
    // Another principal's key does not vouch for this one.
    await expect(insert(org.operator2.keyId)).rejects.toThrow(/minted with a live credential/);
    // A principal of another org cannot be named as a key's creator.
    const other = await seedOrg(db());
    await expect(
      sql`INSERT INTO api_keys (org_id, principal_id, secret_hash, created_by)
          VALUES (${org.orgId}::uuid, ${org.operator1.id}::uuid, ${Buffer.alloc(32, 8)}, ${other.admin.id})`.execute(
        db(),
      ),
    ).rejects.toThrow(/names a creator of the org/);
    await expect(
      sql`INSERT INTO principals (org_id, name, role, created_by) VALUES (${org.orgId}::uuid, 'foreign-made', 'admin', ${other.admin.id})`.execute(
        db(),
      ),
    ).rejects.toThrow(/principals_creator|not a principal of its org/);
  });
});
