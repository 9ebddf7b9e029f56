import { Writable } from 'node:stream';
import { keyringOf, parsePublicKey, type SignedCheckpoint, verifyCheckpoint, verifyLedgerLines } from '@countersign/db';
import { readiness } from '@countersign/observability';
import { csrFor, seedOrg } from '@countersign/testing';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApi } from './app.ts';
import { auditStartupCheck } from './audit-startup.ts';
import { type ApiHarness, AUDIT_TEST_KEY, startApiHarness, TEST_SETTINGS } from './test/api-harness.ts';

let h: ApiHarness;
let approvalId: string;
beforeAll(async () => {
  h = await startApiHarness();
  const { csrPem } = await csrFor('audit.example.test');
  const created = await h.call(h.org.requester.key, {
    method: 'POST',
    url: '/api/v1/certificates',
    payload: {
      profile_id: h.org.gated.id,
      common_name: 'audit.example.test',
      csr: csrPem,
      justification: 'audit test',
    },
  });
  expect(created.status).toBe(202);
  approvalId = created.body.approval.id;
  const approved = await h.call(h.org.operator1.key, {
    method: 'POST',
    url: `/api/v1/approvals/${approvalId}/approve`,
    payload: { note: 'ok' },
  });
  expect(approved.status).toBe(200);
});
afterAll(async () => h?.close());

const get = (key: string | null, url: string) => h.call(key, { method: 'GET', url });

async function tamper(orgId: string, seq: number): Promise<void> {
  await h.tdb.superuser('ALTER TABLE audit_records DISABLE TRIGGER USER');
  try {
    await h.tdb.superuser(`UPDATE audit_records SET details = '{"tampered":true}' WHERE org_id = $1 AND seq = $2`, [
      orgId,
      seq,
    ]);
  } finally {
    await h.tdb.superuser('ALTER TABLE audit_records ENABLE ALWAYS TRIGGER audit_records_no_update');
    await h.tdb.superuser('ALTER TABLE audit_records ENABLE ALWAYS TRIGGER audit_records_no_truncate');
  }
}

describe('GET /api/v1/audit', () => {
  it('lists the org ledger oldest first, with every workflow step and its actor', async () => {
    const r = await get(h.org.auditor.key, '/api/v1/audit?limit=500');
    expect(r.status).toBe(200);
    const seqs = r.body.items.map((i: { seq: string }) => Number(i.seq));
    expect(seqs).toEqual(seqs.map((_: number, i: number) => i + 1));
    const actions = r.body.items.map((i: { action: string }) => i.action);
    for (const a of ['org_created', 'principal_created', 'api_key_created', 'profile_created']) {
      expect(actions).toContain(a);
    }
    for (const a of ['certificate_requested', 'approval_requested', 'approval_vote_cast', 'approval_approved']) {
      expect(actions).toContain(a);
    }
    const approved = r.body.items.find((i: { action: string }) => i.action === 'approval_approved');
    expect(approved).toMatchObject({
      actor_id: h.org.operator1.id,
      actor_type: 'user',
      resource_type: 'approval',
      resource_id: approvalId,
      details: { state: 'approved' },
    });
    expect(approved.hash).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.stringify(r.body)).not.toMatch(/PRIVATE KEY|cs_[A-Za-z0-9_-]{20,}/);
  });

  it('filters by action, actor, resource id and time range', async () => {
    const byAction = await get(h.org.admin.key, '/api/v1/audit?action=approval_vote_cast');
    expect(byAction.body.items.length).toBe(1);
    expect(byAction.body.items[0].actor_id).toBe(h.org.operator1.id);

    const byActor = await get(h.org.admin.key, `/api/v1/audit?actor=${h.org.requester.id}`);
    // The requester minted its own key when it enrolled (the fixture does as a person would), then requested.
    expect(byActor.body.items.map((i: { action: string }) => i.action)).toEqual([
      'api_key_created',
      'certificate_requested',
      'approval_requested',
    ]);

    const byResource = await get(h.org.admin.key, `/api/v1/audit?resource_id=${approvalId}`);
    expect(byResource.body.items.map((i: { action: string }) => i.action)).toEqual([
      'approval_requested',
      'approval_vote_cast',
      'approval_approved',
    ]);

    const all = (await get(h.org.admin.key, '/api/v1/audit?limit=500')).body.items as { at: string }[];
    const last = all[all.length - 1]?.at as string;
    const tail = await get(h.org.admin.key, `/api/v1/audit?from=${encodeURIComponent(last)}`);
    expect(tail.body.items.length).toBeGreaterThan(0);
    expect(tail.body.items.every((i: { at: string }) => i.at >= last)).toBe(true);
    const none = await get(h.org.admin.key, `/api/v1/audit?to=${encodeURIComponent('2000-01-01T00:00:00Z')}`);
    expect(none.body.items).toEqual([]);
  });

  it('pages with an opaque cursor and no gaps or repeats', async () => {
    const all = (await get(h.org.auditor.key, '/api/v1/audit?limit=500')).body.items;
    const seen: unknown[] = [];
    let cursor: string | null = null;
    do {
      const page: { status: number; body: { items: unknown[]; next_cursor: string | null } } = await get(
        h.org.auditor.key,
        `/api/v1/audit?limit=4${cursor ? `&cursor=${cursor}` : ''}`,
      );
      expect(page.status).toBe(200);
      seen.push(...page.body.items);
      cursor = page.body.next_cursor;
    } while (cursor);
    expect(seen).toEqual(all);
  });

  it('refuses bad input with problem+json and other roles', async () => {
    for (const url of [
      '/api/v1/audit?action=not_an_action',
      '/api/v1/audit?unknown=1',
      '/api/v1/audit?cursor=bogus',
      '/api/v1/audit?from=2030-01-01T00:00:00Z&to=2020-01-01T00:00:00Z',
      '/api/v1/audit?from=yesterday',
    ]) {
      const r = await get(h.org.auditor.key, url);
      expect(r.status, url).toBe(400);
      expect(r.body.code, url).toBe('validation_failed');
      expect(String(r.headers['content-type'])).toContain('application/problem+json');
    }
    expect((await get(h.org.requester.key, '/api/v1/audit')).body.code).toBe('forbidden');
    expect((await get(h.org.operator1.key, '/api/v1/audit')).status).toBe(403);
    expect((await get(null, '/api/v1/audit')).status).toBe(401);
  });
});

describe('verification and checkpoints over HTTP', () => {
  it('verifies the caller org chain (admin, auditor only)', async () => {
    const r = await get(h.org.auditor.key, '/api/v1/audit/verify');
    expect(r.status).toBe(200);
    const records = (await get(h.org.auditor.key, '/api/v1/audit?limit=500')).body.items;
    expect(r.body).toMatchObject({ ok: true, checked: records.length, first_bad_seq: null, reason: null });
    expect(r.body.head).toEqual({ seq: records.at(-1).seq, hash: records.at(-1).hash });
    expect((await get(h.org.operator1.key, '/api/v1/audit/verify')).status).toBe(403);
  });

  it('signs checkpoints on demand (admin), lists and serves them, verifiable with the public key', async () => {
    expect((await h.call(h.org.auditor.key, { method: 'POST', url: '/api/v1/audit/checkpoints' })).status).toBe(403);
    const created = await h.call(h.org.admin.key, { method: 'POST', url: '/api/v1/audit/checkpoints' });
    expect(created.status).toBe(201);
    const again = await h.call(h.org.admin.key, { method: 'POST', url: '/api/v1/audit/checkpoints' });
    expect(again.status).toBe(200);
    expect(again.body.id).toBe(created.body.id);
    const bad = await h.call(h.org.admin.key, {
      method: 'POST',
      url: '/api/v1/audit/checkpoints',
      payload: { seq: 1 },
    });
    expect(bad.status).toBe(400);

    const list = await get(h.org.auditor.key, '/api/v1/audit/checkpoints');
    expect(list.body.items.map((c: SignedCheckpoint) => c.id)).toEqual([created.body.id]);
    const file = await get(h.org.auditor.key, `/api/v1/audit/checkpoints/${created.body.id}`);
    expect(file.headers['content-disposition']).toContain('attachment');

    const pub = await get(h.org.auditor.key, '/api/v1/audit/public-key');
    expect(pub.body.key_id).toBe(AUDIT_TEST_KEY.keyId);
    const publicOnly = keyringOf(parsePublicKey(pub.body.public_key_pem));
    expect(verifyCheckpoint(file.body, publicOnly)).toBe('valid');
    expect(verifyCheckpoint({ ...file.body, seq: '1' }, publicOnly)).toBe('invalid');

    const exported = await h.app.inject({
      method: 'GET',
      url: '/api/v1/audit/export',
      headers: { authorization: `Bearer ${h.org.auditor.key}` },
    });
    expect(exported.statusCode).toBe(200);
    expect(String(exported.headers['content-type'])).toContain('application/x-ndjson');
    const lines = exported.body.trimEnd().split('\n');
    expect(JSON.parse(lines[0] ?? '')).toEqual(file.body);
    const trusted = [
      { id: file.body.id, seq: Number(file.body.seq), headHash: Buffer.from(file.body.head_hash, 'hex') },
    ];
    expect(await verifyLedgerLines(lines, h.org.orgId, trusted)).toMatchObject({ ok: true, checked: lines.length - 1 });
  });

  it('keeps orgs apart', async () => {
    const other = await seedOrg(h.tdb.handle.db);
    const mine = (await get(h.org.auditor.key, '/api/v1/audit/checkpoints')).body.items[0] as SignedCheckpoint;
    expect((await get(other.auditor.key, `/api/v1/audit/checkpoints/${mine.id}`)).status).toBe(404);
    expect((await get(other.auditor.key, `/api/v1/audit/export?checkpoint_id=${mine.id}`)).status).toBe(404);
    const theirs = (await get(other.auditor.key, '/api/v1/audit?limit=500')).body.items;
    expect(theirs.some((i: { resource_id: string }) => i.resource_id === approvalId)).toBe(false);
    expect(theirs[0].seq).toBe('1');
    expect((await get(other.auditor.key, '/api/v1/audit/verify')).body.ok).toBe(true);
  });
});

describe('start-up verification', () => {
  it('refuses readiness on a broken chain and names the record in one log line', async () => {
    const org = await seedOrg(h.tdb.handle.db);
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        lines.push(...String(chunk).trimEnd().split('\n'));
        done();
      },
    });
    const log = pino({ level: 'info' }, sink);
    const gauge: boolean[] = [];
    const okCheck = auditStartupCheck({ database: h.tdb.handle, mode: 'full', log, onResult: (ok) => gauge.push(ok) });
    expect(await okCheck.status()).toMatchObject({ ok: false, detail: 'verification pending' });
    expect(await okCheck.run()).toEqual({ ok: true });

    await tamper(org.orgId, 4);
    lines.length = 0;
    const check = auditStartupCheck({
      database: h.tdb.handle,
      mode: 'full',
      keyring: keyringOf(AUDIT_TEST_KEY.publicKey),
      log,
      onResult: (ok) => gauge.push(ok),
    });
    const status = await check.run();
    expect(status.ok).toBe(false);
    expect(status.detail).toContain(`org ${org.orgId} record 4`);
    expect(gauge).toEqual([true, false]);
    const errors = lines.map((l) => JSON.parse(l)).filter((l) => l.level >= 50);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ org_id: org.orgId, first_bad_seq: '4' });
    expect(errors[0].msg).toContain(`record 4`);
    expect(errors[0].msg).toContain('refusing readiness');

    const app = await buildApi({
      db: h.tdb.handle.db,
      log: pino({ level: 'silent' }),
      settings: TEST_SETTINGS,
      onDecision: () => {},
      readiness: () => readiness({ audit_chain: check.status }),
    });
    const ready = await app.inject({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode).toBe(503);
    expect(ready.json().checks.audit_chain.detail).toContain('record 4');
    await app.close();

    const off = auditStartupCheck({ database: h.tdb.handle, mode: 'off', log });
    expect(await off.run()).toMatchObject({ ok: true });
  });
});
