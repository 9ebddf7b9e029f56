import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { createCaMaterial, type LocalCa, loadLocalCaFromFiles } from '@countersign/ca';
import {
  createTestDatabase,
  csrFor,
  enrollPrincipal,
  type SeededOrg,
  type SeededPrincipal,
  seedOrg,
  type TestDatabase,
} from '@countersign/testing';
import {
  approve,
  approveConfigRequest,
  bootstrapOrg,
  type Configured,
  configureEnrollmentKey,
  configurePrincipal,
  mintOwnApiKey,
  reject,
  requestCertificate,
  requesterOf,
  revokeApiKey,
  voidRequest,
} from '@countersign/workflow';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  creationRelation,
  type GateCategory,
  type GateRows,
  gateViolations,
  loadGateRows,
  parseGeneralNames,
} from '../chaos/gate-checks.ts';

/**
 * The chaos checker's no-single-person and approved-names checks
 * (test/chaos/gate-checks.ts) must be able to fail. Against a real database:
 * legitimate votes, decisions, configuration approvals and certificates pass;
 * then violating rows are written as superuser with only the one guard
 * trigger that refuses them disabled, inside the writing transaction (the
 * guards are ENABLE ALWAYS, so session_replication_role would not help), and
 * each must be found, for its reason. Rows the database cannot hold at all
 * (CHECK constraints: a vote without a credential, a configuration request
 * approved by its requester) are fed to the judgement directly.
 */
const settings = { approvalTimeoutMs: 3_600_000, escalationAfterMs: 86_400_000 };

let tdb: TestDatabase;
let org: SeededOrg;
let ca: LocalCa;

beforeAll(async () => {
  tdb = await createTestDatabase();
  org = await seedOrg(tdb.handle.db);
  const m = createCaMaterial();
  ca = loadLocalCaFromFiles({
    certPem: m.intermediateCertPem,
    keyPem: m.intermediateKeyPem,
    chainPems: [m.rootCertPem],
  });
});
afterAll(async () => {
  await tdb?.drop();
});

const sql = async <T extends Record<string, unknown>>(text: string, values?: unknown[]) =>
  (await tdb.superuser<T>(text, values)).rows;
const judge = async () => gateViolations(await loadGateRows(sql));

/**
 * Writes as superuser with one guard trigger off, in one transaction on one connection: nobody else ever sees
 * the table unguarded, and the guard is back as the migrations left it (ENABLE ALWAYS) when it commits.
 */
async function bypassing(table: string, trigger: string, text: string, values: unknown[]) {
  const c = new pg.Client({ connectionString: tdb.superuserUrl });
  await c.connect();
  try {
    await c.query('BEGIN');
    await c.query(`ALTER TABLE ${table} DISABLE TRIGGER ${trigger}`);
    const r = await c.query(text, values);
    if (r.rowCount !== 1) throw new Error(`expected one row written, got ${r.rowCount}`);
    await c.query(`ALTER TABLE ${table} ENABLE ALWAYS TRIGGER ${trigger}`);
    await c.query('COMMIT');
  } catch (err) {
    await c.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    await c.end();
  }
}

let n = 0;
async function submit(p: SeededPrincipal, profileId: string, names?: string[]) {
  const cn = `r${++n}.example.test`;
  const csr = await csrFor(cn, names ?? []);
  return requestCertificate(tdb.handle.db, settings, requesterOf(p, { id: p.id, type: 'user' }), {
    profile_id: profileId,
    common_name: cn,
    sans: names,
    csr: csr.csrPem,
    justification: 'chaos checks test',
  });
}

function leaf(commonName: string, dnsNames: string[]) {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return ca.issue({
    commonName,
    dnsNames,
    publicKeySpki: publicKey.export({ type: 'spki', format: 'der' }),
    validityDays: 30,
  });
}

const INSERT_VERSION = `INSERT INTO certificate_versions
  (org_id, certificate_id, job_id, issuer, serial, fingerprint_sha256, not_before, not_after, sans, leaf_pem, chain_pem)
  SELECT j.org_id, j.certificate_id, j.id, 'local', $2, $3, $4, $5, $6, $7, $8 FROM jobs j WHERE j.id = $1`;
const versionValues = (jobId: string, sans: string[], l: ReturnType<typeof leaf>) => [
  jobId,
  l.serialHex,
  l.fingerprintSha256,
  l.notBefore,
  l.notAfter,
  sans,
  l.leafPem,
  l.chainPem,
];

const only = (found: Record<GateCategory, string[]>, category: GateCategory, needle: string) =>
  found[category].filter((i) => i.includes(needle));

describe('chaos checks: no single person, what was approved is what was issued', () => {
  // Legitimate history first: it must pass.
  let approvedJob: string;
  let rotated: { id: string; key: string };
  let config: { admin1: SeededPrincipal; admin2: SeededPrincipal; admin3: SeededPrincipal; operator: SeededPrincipal };

  it('passes legitimate votes, decisions, certificates and configuration approvals', async () => {
    const db = tdb.handle.db;
    // Approved by an approver with its own key, issued with exactly the approved names.
    const a = await submit(org.requester, org.gated.id, ['alt.example.test']);
    await approve(db, org.operator1, a.approval?.id ?? '', 'ok');
    approvedJob = a.job.id;
    await sql(INSERT_VERSION, versionValues(a.job.id, a.job.sans, leaf(a.job.common_name, a.job.sans)));
    // Ungated: the job's names.
    const o = await submit(org.requester, org.open.id);
    await sql(INSERT_VERSION, versionValues(o.job.id, o.job.sans, leaf(o.job.common_name, o.job.sans)));
    // Rejected and voided with own keys.
    const r = await submit(org.requester, org.gated.id);
    await reject(db, org.operator2, r.approval?.id ?? '', 'no');
    const v = await submit(org.requester, org.gated.id);
    await voidRequest(db, org.admin, v.approval?.id ?? '', 'gone');
    // A vote cast with an own key revoked afterwards was live when cast.
    const minted = await mintOwnApiKey(db, org.operator2, { name: 'rotated', expiresAt: null });
    rotated = { id: minted.id, key: minted.key };
    const later = await submit(org.requester, org.gated.id);
    await approve(
      db,
      { ...org.operator2, credential: { kind: 'api_key', id: minted.id, own: true, createdBy: org.operator2.id } },
      later.approval?.id ?? '',
      'ok',
    );
    await revokeApiKey(db, org.operator2, minted.id);

    // A two-person-ready org: admin1 asks, admin2 approves (new admin3, an operator, and their enrollment keys).
    const boot = await bootstrapOrg(db, `two-${randomUUID().slice(0, 8)}`, [
      { name: 'admin1', email: 'admin1@example.test' },
      { name: 'admin2', email: 'admin2@example.test' },
    ]);
    const [b1, b2] = boot.admins;
    if (!b1 || !b2) throw new Error('bootstrap made no admins');
    const enroll = (
      id: string,
      name: string,
      role: 'admin' | 'operator',
      key: { id: string; key: string },
      by: string,
    ) => enrollPrincipal(db, { id, orgId: boot.org.id, role, kind: 'user', name }, { ...key, createdBy: by });
    const admin1 = await enroll(b1.admin.id, 'admin1', 'admin', b1.key, 'system-bootstrap');
    const admin2 = await enroll(b2.admin.id, 'admin2', 'admin', b2.key, 'system-bootstrap');
    const pendingId = (c: Configured<unknown>) => {
      if (c.status !== 'pending') throw new Error('the org should be two-person ready');
      return c.request.id;
    };
    const created = async (name: string, role: 'admin' | 'operator') => {
      const id = pendingId(await configurePrincipal(db, settings, admin1, { name, role, email: null }, 'test'));
      const { applied } = await approveConfigRequest(db, admin2, id, null);
      const principalId = (applied as { id: string }).id;
      const k = await configureEnrollmentKey(db, settings, admin1, principalId, {
        name: 'enrollment',
        expiresAt: null,
      });
      await approveConfigRequest(db, admin2, pendingId(k.configured), null);
      return enroll(principalId, name, role, k.key, admin1.id);
    };
    config = {
      admin1,
      admin2,
      admin3: await created('admin3', 'admin'),
      operator: await created('operator', 'operator'),
    };

    const { found, figures } = await judge();
    expect(found).toEqual({ voteCredential: [], related: [], decisionCredential: [], names: [], config: [] });
    expect(figures).toEqual({ votes: 2, decisions: 4, certificateNames: 2, configRequests: 4 });
  });

  it('finds a vote cast with an enrollment key, or with an own key already revoked', async () => {
    const p1 = await submit(org.requester, org.gated.id);
    const p2 = await submit(org.requester, org.gated.id);
    const vote = `INSERT INTO approval_votes (approval_id, org_id, voter_id, voter_type, requested_by, credential_kind, credential_id)
                  VALUES ($1, $2, $3, 'user', $4, 'api_key', $5)`;
    await bypassing('approval_votes', 'approval_votes_guard', vote, [
      p1.approval?.id,
      org.orgId,
      org.operator1.id,
      org.requester.id,
      org.operator1.enrollmentKeyId,
    ]);
    await bypassing('approval_votes', 'approval_votes_guard', vote, [
      p2.approval?.id,
      org.orgId,
      org.operator2.id,
      org.requester.id,
      rotated.id,
    ]);
    const { found } = await judge();
    expect(only(found, 'voteCredential', `vote on ${p1.approval?.id} by operator1`)).toEqual([
      expect.stringContaining(`enrollment credential made by admin`),
    ]);
    expect(only(found, 'voteCredential', `vote on ${p2.approval?.id} by operator2`)).toEqual([
      expect.stringContaining('was revoked before'),
    ]);
    expect(found.voteCredential).toHaveLength(2);
  });

  it('finds a vote and a decision by the principal who created the requester', async () => {
    const p = await submit(org.requester, org.gated.id);
    await bypassing(
      'approval_votes',
      'approval_votes_guard',
      `INSERT INTO approval_votes (approval_id, org_id, voter_id, voter_type, requested_by, credential_kind, credential_id)
       VALUES ($1, $2, $3, 'user', $4, 'api_key', $5)`,
      [p.approval?.id, org.orgId, org.admin.id, org.requester.id, org.admin.keyId],
    );
    const d = await submit(org.requester, org.gated.id);
    await bypassing(
      'approval_requests',
      'approval_requests_guard',
      `UPDATE approval_requests SET state = 'rejected', decided_by = $2, decided_by_type = 'user', decided_at = now(),
              decision_note = 'mine', decided_credential_kind = 'api_key', decided_credential_id = $3
        WHERE id = $1`,
      [d.approval?.id, org.admin.id, org.admin.keyId],
    );
    const { found } = await judge();
    expect(found.related).toEqual([
      `vote on ${p.approval?.id} by admin, requested by requester`,
      `rejected ${d.approval?.id} by admin, requested by requester`,
    ]);
    // Its own key, so not also a credential violation.
    expect(only(found, 'decisionCredential', d.approval?.id ?? '-')).toEqual([]);
  });

  it('finds a request decided without the decider’s own credential', async () => {
    const d = await submit(org.requester, org.gated.id);
    // The admin's bootstrap key: made for it by the installation, an enrollment credential.
    await bypassing(
      'approval_requests',
      'approval_requests_guard',
      `UPDATE approval_requests SET state = 'voided', decided_by = $2, decided_by_type = 'user', decided_at = now(),
              decision_note = 'void', decided_credential_kind = 'api_key', decided_credential_id = $3
        WHERE id = $1`,
      [d.approval?.id, org.admin.id, org.admin.enrollmentKeyId],
    );
    const { found } = await judge();
    expect(found.decisionCredential).toEqual([
      `voided ${d.approval?.id} by admin: api_key ${org.admin.enrollmentKeyId} is an enrollment credential made by system-bootstrap`,
    ]);
  });

  it('finds certificates whose recorded or signed names are not the approved ones', async () => {
    // Ungated: recorded and signed for another name than the job's.
    const o = await submit(org.requester, org.open.id);
    await bypassing(
      'certificate_versions',
      'certificate_versions_guard',
      INSERT_VERSION,
      versionValues(o.job.id, ['evil.example.test'], leaf('evil.example.test', ['evil.example.test'])),
    );
    // Gated and approved: the recorded names are the approved ones, but the leaf was signed for one more.
    const g = await submit(org.requester, org.gated.id);
    await approve(tdb.handle.db, org.operator1, g.approval?.id ?? '', 'ok');
    await bypassing(
      'certificate_versions',
      'certificate_versions_guard',
      INSERT_VERSION,
      versionValues(g.job.id, g.job.sans, leaf(g.job.common_name, [...g.job.sans, 'extra.example.test'])),
    );
    const { found } = await judge();
    expect(found.names).toHaveLength(2);
    expect(only(found, 'names', `(job ${o.job.id})`)).toEqual([
      expect.stringMatching(/recorded \[evil\.example\.test\], signed \[evil\.example\.test\], signed CN evil/),
    ]);
    const [gated] = only(found, 'names', `(job ${g.job.id})`);
    expect(gated).toContain('signed [extra.example.test, ');
    expect(gated).not.toContain('recorded [');
    // The legitimate version of the first test is still clean.
    expect(only(found, 'names', approvedJob)).toEqual([]);
  });

  it('finds configuration requests approved by a non-admin, a related admin or without an own credential', async () => {
    const { admin1, admin2, admin3, operator } = config;
    const db = tdb.handle.db;
    const pending = async (by: SeededPrincipal, name: string) => {
      const c = await configurePrincipal(db, settings, by, { name, role: 'operator', email: null }, 'test');
      if (c.status !== 'pending') throw new Error('expected a configuration request');
      return c.request.id;
    };
    const approveAs = (id: string, by: SeededPrincipal, credentialId: string) =>
      bypassing(
        'config_requests',
        'config_requests_guard',
        `UPDATE config_requests SET state = 'approved', decided_by = $2, decided_by_type = 'user', decided_at = now(),
                decided_credential_kind = 'api_key', decided_credential_id = $3 WHERE id = $1`,
        [id, by.id, credentialId],
      );
    // admin2 asks; the operator (created by admin1, so unrelated to admin2) approves with its own key.
    const byOperator = await pending(admin2, 'x1');
    await approveAs(byOperator, operator, operator.keyId);
    // admin1 asks; admin3, whom admin1 created, approves with its own key.
    const byRelated = await pending(admin1, 'x2');
    await approveAs(byRelated, admin3, admin3.keyId);
    // admin1 asks; admin2 approves with its bootstrap (enrollment) key.
    const byEnrollment = await pending(admin1, 'x3');
    await approveAs(byEnrollment, admin2, admin2.enrollmentKeyId);

    const { found } = await judge();
    expect(found.config).toHaveLength(3);
    expect(only(found, 'config', byOperator)).toEqual([
      `principal_create ${byOperator} requested by admin2, approved by operator: by a non-admin (operator of org ${admin2.orgId})`,
    ]);
    expect(only(found, 'config', byRelated)).toEqual([
      `principal_create ${byRelated} requested by admin1, approved by admin3: by a principal related by creation`,
    ]);
    expect(only(found, 'config', byEnrollment)).toEqual([
      expect.stringContaining(
        `without the approver's own credential (api_key ${admin2.enrollmentKeyId} is an enrollment credential`,
      ),
    ]);
  });
});

describe('chaos checks: rows the database cannot hold', () => {
  const T = 1_700_000_000_000_000;
  const rows = (over: Partial<GateRows>): GateRows => ({
    principals: [
      { id: 'boss', org_id: 'o', name: 'boss', role: 'admin', created_by: 'system-bootstrap' },
      { id: 'other', org_id: 'o', name: 'other', role: 'admin', created_by: 'system-bootstrap' },
      { id: 'ops', org_id: 'o', name: 'ops', role: 'operator', created_by: 'boss' },
      { id: 'req', org_id: 'o', name: 'req', role: 'requester', created_by: 'ops' },
    ],
    credentials: [
      {
        kind: 'api_key',
        id: 'k-ops',
        principal_id: 'ops',
        created_by: 'ops',
        created_us: T,
        revoked_us: null,
        expires_us: null,
      },
      {
        kind: 'api_key',
        id: 'k-other',
        principal_id: 'other',
        created_by: 'other',
        created_us: T,
        revoked_us: null,
        expires_us: T + 10,
      },
      {
        kind: 'client_certificate',
        id: 'c-ops',
        principal_id: 'ops',
        created_by: 'boss',
        created_us: T,
        revoked_us: null,
        expires_us: null,
      },
    ],
    votes: [],
    decisions: [],
    versions: [],
    configRequests: [],
    ...over,
  });

  it('relates principals through every generation of creators, never siblings', () => {
    const related = creationRelation(rows({}).principals);
    expect(related('boss', 'req')).toBe(true);
    expect(related('req', 'boss')).toBe(true);
    expect(related('ops', 'req')).toBe(true);
    expect(related('other', 'req')).toBe(false);
    expect(related('req', 'req')).toBe(false);
  });

  it('finds votes without a credential, with an expired key or a client certificate made by someone else', () => {
    const vote = (approval: string, kind: string | null, id: string | null, at = T + 20) => ({
      approval_id: approval,
      voter_id: approval === 'a2' ? 'other' : 'ops',
      requested_by: 'someone',
      voted_us: at,
      credential_kind: kind,
      credential_id: id,
    });
    const { found } = gateViolations(
      rows({
        votes: [
          vote('a1', null, null),
          vote('a2', 'api_key', 'k-other'),
          vote('a3', 'client_certificate', 'c-ops'),
          vote('a4', 'api_key', 'k-ops'),
          vote('a5', 'api_key', 'k-ops', T - 1),
        ],
      }),
    );
    expect(found.voteCredential).toEqual([
      'vote on a1 by ops: no credential recorded',
      expect.stringMatching(/^vote on a2 by other: api_key k-other had expired by /),
      'vote on a3 by ops: client_certificate c-ops is an enrollment credential made by boss',
      expect.stringMatching(/^vote on a5 by ops: api_key k-ops was created after /),
    ]);
  });

  it('finds a configuration request approved by its requester', () => {
    const { found } = gateViolations(
      rows({
        configRequests: [
          {
            id: 'c1',
            org_id: 'o',
            kind: 'profile_update',
            state: 'approved',
            requested_by: 'other',
            decided_by: 'other',
            decided_by_type: 'user',
            decided_us: T + 5,
            decided_credential_kind: 'api_key',
            decided_credential_id: 'k-other',
          },
        ],
      }),
    );
    expect(found.config).toEqual(['profile_update c1 requested by other, approved by other: by its requester']);
  });

  it('reads quoted subjectAltName entries and names of other kinds', () => {
    expect(parseGeneralNames('DNS:a.example, DNS:"b,c.example", IP Address:10.0.0.1')).toEqual([
      { type: 'DNS', value: 'a.example' },
      { type: 'DNS', value: 'b,c.example' },
      { type: 'IP Address', value: '10.0.0.1' },
    ]);
  });
});
