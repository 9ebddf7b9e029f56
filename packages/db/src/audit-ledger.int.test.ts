import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createTestDatabase, seedOrg, type TestDatabase } from '@countersign/testing';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ByteSink, writeCanonicalJsonb } from './audit-canonical.ts';
import {
  generateSigningKey,
  keyringOf,
  parsePublicKey,
  type SignedCheckpoint,
  verifyCheckpoint,
} from './audit-checkpoint.ts';
import { createCheckpoint } from './audit-checkpoint-store.ts';
import { exportLedger, verifyLedgerLines } from './audit-export.ts';
import { appendAudit, appendAuditMany, canonicalAuditBody, chainHash } from './audit-ledger.ts';
import { verifyAllChains, verifyAuditChain } from './audit-verify.ts';
import { canonicalJson } from './canonical-json.ts';

/**
 * The ledger's promise, against real PostgreSQL: every kind of tampering a
 * database superuser can do is caught and the first bad record is named;
 * the services' role cannot change the ledger at all; concurrent writers
 * never fork the chain; checkpoints verify with the public key alone.
 */
let tdb: TestDatabase;
const key = generateSigningKey();
const keyring = keyringOf(key.publicKey);

beforeAll(async () => {
  tdb = await createTestDatabase();
});
afterAll(async () => tdb?.drop());

const NASTY_DETAILS: Record<string, unknown>[] = [
  { note: 'plain', votes: 1 },
  { é: 'accent', '\ue000': 'private use', '😀': 'emoji', z: ['nested', { b: 2, a: 1 }] },
  { ctl: '\u0001\u001f\b\f\n\r\t "quoted" \\ backslash', empty: '', nothing: null, yes: true, no: false },
  { big: 2 ** 53 + 2, tiny: 1e-7, huge: 1e21, neg: -0.5, pi: Math.PI, exp: 1.5e300, int: -1234567 },
  { deep: { a: { b: { c: { d: [1, [2, [3, {}]]] } } } }, arr: [], obj: {} },
];

/** A fresh org (its own chain) with the seeded records plus `extra` appended ones of varied shapes. */
async function orgWithChain(extra = 20): Promise<{ orgId: string; head: number }> {
  const org = await seedOrg(tdb.handle.db);
  for (let i = 0; i < extra; i++) {
    await appendAudit(tdb.handle.db, {
      orgId: org.orgId,
      actor: { id: org.operator1.id, type: 'user' },
      action: 'approval_vote_cast',
      resourceType: 'approval',
      resourceId: randomUUID(),
      details: { ...NASTY_DETAILS[i % NASTY_DETAILS.length], i },
    });
  }
  return { orgId: org.orgId, head: await headSeq(org.orgId) };
}

async function headSeq(orgId: string): Promise<number> {
  const r = await tdb.superuser<{ seq: string }>('SELECT seq FROM audit_heads WHERE org_id = $1', [orgId]);
  return Number(r.rows[0]?.seq);
}

/** Runs SQL as the superuser with the ledger's triggers out of the way, as an attacker with full access would. */
async function tamper(sql: string, values: unknown[] = []): Promise<void> {
  await tdb.superuser('ALTER TABLE audit_records DISABLE TRIGGER USER');
  await tdb.superuser('ALTER TABLE audit_checkpoints DISABLE TRIGGER USER');
  try {
    await tdb.superuser(sql, values);
  } finally {
    await tdb.superuser('ALTER TABLE audit_records ENABLE ALWAYS TRIGGER audit_records_no_update');
    await tdb.superuser('ALTER TABLE audit_records ENABLE ALWAYS TRIGGER audit_records_no_truncate');
    await tdb.superuser('ALTER TABLE audit_checkpoints ENABLE ALWAYS TRIGGER audit_checkpoints_guard');
    await tdb.superuser('ALTER TABLE audit_checkpoints ENABLE ALWAYS TRIGGER audit_checkpoints_no_truncate');
  }
}

const verify = (orgId: string, opts: Parameters<typeof verifyAuditChain>[2] = { keyring }) =>
  verifyAuditChain(tdb.handle, orgId, opts);

describe('verification', () => {
  it('accepts an intact chain, whatever its details contain', async () => {
    const { orgId, head } = await orgWithChain();
    const r = await verify(orgId);
    expect(r).toMatchObject({ ok: true, checked: head, first_bad_seq: null, reason: null });
    expect(r.head.seq).toBe(String(head));
    const stored = await tdb.superuser<{ hash: Buffer }>('SELECT hash FROM audit_heads WHERE org_id = $1', [orgId]);
    expect(r.head.hash).toBe(stored.rows[0]?.hash.toString('hex'));
  });

  it('canonicalises PostgreSQL jsonb output exactly as the appender canonicalised the value', async () => {
    for (const v of NASTY_DETAILS) {
      const { rows } = await tdb.superuser<{ t: string }>('SELECT $1::jsonb::text AS t', [JSON.stringify(v)]);
      const src = Buffer.from(rows[0]?.t ?? '', 'utf8');
      const out = new ByteSink();
      writeCanonicalJsonb(src, 0, src.length, out);
      expect(out.buf.toString('utf8', 0, out.pos)).toBe(canonicalJson(v));
    }
  });

  it('names an edited record (details changed)', async () => {
    const { orgId } = await orgWithChain();
    await tamper(
      `UPDATE audit_records SET details = (details::jsonb || '{"note":"edited"}')::json WHERE org_id = $1 AND seq = 7`,
      [orgId],
    );
    const r = await verify(orgId);
    expect(r).toMatchObject({ ok: false, first_bad_seq: '7', checked: 6 });
    expect(r.reason).toContain('does not match its hash');
    expect(r.head.seq).toBe('6');
  });

  it("stores each record's details as the canonical text that was hashed, through both append paths", async () => {
    const { orgId } = await orgWithChain();
    const batch = Array.from({ length: 60 }, (_, i) => ({
      orgId,
      actor: { id: 'system-reaper', type: 'system' as const },
      action: 'approval_expired' as const,
      resourceType: 'approval',
      resourceId: randomUUID(),
      details: { ...NASTY_DETAILS[i % NASTY_DETAILS.length], i },
    }));
    await appendAuditMany(tdb.handle.db, batch);
    const { rows } = await tdb.superuser<{ action: string; text: string }>(
      'SELECT action, details::text AS text FROM audit_records WHERE org_id = $1 ORDER BY seq',
      [orgId],
    );
    expect(rows.filter((r) => r.action === 'approval_expired')).toHaveLength(60);
    for (const r of rows) expect(r.text).toBe(canonicalJson(JSON.parse(r.text)));
    expect(await verify(orgId)).toMatchObject({ ok: true, checked: rows.length });
  });

  it("verifies records stored before migration 0010 (jsonb's rendering of the details) by canonicalising them", async () => {
    const { orgId, head } = await orgWithChain();
    await tamper('UPDATE audit_records SET details = details::jsonb::json WHERE org_id = $1', [orgId]);
    const { rows } = await tdb.superuser<{ text: string }>(
      'SELECT details::text AS text FROM audit_records WHERE org_id = $1 AND seq = $2',
      [orgId, head],
    );
    expect(rows[0]?.text).toContain('": '); // jsonb's rendering, not the canonical text
    expect(await verify(orgId)).toMatchObject({ ok: true, checked: head });
    await tamper(
      `UPDATE audit_records SET details = (details::jsonb || '{"i":999}')::jsonb::json WHERE org_id = $1 AND seq = $2`,
      [orgId, head - 3],
    );
    expect(await verify(orgId)).toMatchObject({ ok: false, first_bad_seq: String(head - 3) });
  });

  it('accepts details rewritten to equivalent JSON text, and names a rewrite that changes a value', async () => {
    const { orgId } = await orgWithChain();
    const found = await tdb.superuser<{ seq: string; text: string }>(
      `SELECT seq, details::text AS text FROM audit_records
       WHERE org_id = $1 AND details::text LIKE '%"note":"plain"%' ORDER BY seq LIMIT 1`,
      [orgId],
    );
    const rec = { seq: Number(found.rows[0]?.seq), text: found.rows[0]?.text ?? '' };
    const value = JSON.parse(rec.text) as Record<string, unknown>;
    // Same value: other key order, whitespace, an escape JSON.stringify would not write.
    const equivalent = `{ "votes" : ${value.votes}, "note": "pl\\u0061in", "i":${value.i} }`;
    expect(JSON.parse(equivalent)).toEqual(value);
    await tamper('UPDATE audit_records SET details = $2::json WHERE org_id = $1 AND seq = $3', [
      orgId,
      equivalent,
      rec.seq,
    ]);
    expect(await verify(orgId)).toMatchObject({ ok: true });
    await tamper('UPDATE audit_records SET details = $2::json WHERE org_id = $1 AND seq = $3', [
      orgId,
      equivalent.replace('pl\\u0061in', 'pl\\u0062in'),
      rec.seq,
    ]);
    expect(await verify(orgId)).toMatchObject({ ok: false, first_bad_seq: String(rec.seq) });
  });

  it('names an edited record (timestamp moved by one microsecond)', async () => {
    const { orgId } = await orgWithChain();
    await tamper(`UPDATE audit_records SET at = at + interval '1 microsecond' WHERE org_id = $1 AND seq = 12`, [orgId]);
    expect(await verify(orgId)).toMatchObject({ ok: false, first_bad_seq: '12' });
  });

  it('names a record deleted from the middle', async () => {
    const { orgId } = await orgWithChain();
    await tamper('DELETE FROM audit_records WHERE org_id = $1 AND seq = 10', [orgId]);
    const r = await verify(orgId);
    expect(r).toMatchObject({ ok: false, first_bad_seq: '10', checked: 9 });
    expect(r.reason).toContain('record 10 is missing');
  });

  it('names the first of two swapped records', async () => {
    const { orgId } = await orgWithChain();
    await tamper(
      `UPDATE audit_records SET seq = CASE seq WHEN 9 THEN 1000009 ELSE seq END WHERE org_id = $1 AND seq = 9;
       UPDATE audit_records SET seq = 9 WHERE org_id = $1 AND seq = 15;
       UPDATE audit_records SET seq = 15 WHERE org_id = $1 AND seq = 1000009`.replaceAll('$1', `'${orgId}'`),
    );
    const r = await verify(orgId);
    expect(r).toMatchObject({ ok: false, first_bad_seq: '9', checked: 8 });
  });

  it('names a forged record inserted into the middle', async () => {
    const { orgId, head } = await orgWithChain();
    const prev = await tdb.superuser<{ hash: Buffer }>(
      'SELECT hash FROM audit_records WHERE org_id = $1 AND seq = 10',
      [orgId],
    );
    await tamper(
      `UPDATE audit_records SET seq = seq + 1000000 WHERE org_id = $1 AND seq >= 11;
       UPDATE audit_records SET seq = seq - 1000000 + 1 WHERE org_id = $1 AND seq > 1000000;`.replaceAll(
        '$1',
        `'${orgId}'`,
      ),
    );
    await tamper(
      `INSERT INTO audit_records(org_id, seq, at, actor_id, actor_type, action, resource_type, resource_id, details, prev_hash, hash)
       VALUES ($1, 11, now(), 'mallory', 'user', 'approval_approved', 'approval', $2, '{"state":"approved"}', $3, $4)`,
      [orgId, randomUUID(), prev.rows[0]?.hash, randomBytes(32)],
    );
    await tdb.superuser('UPDATE audit_heads SET seq = seq + 1 WHERE org_id = $1', [orgId]);
    expect(await headSeq(orgId)).toBe(head + 1);
    expect(await verify(orgId)).toMatchObject({ ok: false, first_bad_seq: '11', checked: 10 });
  });

  it('names a record appended behind the head', async () => {
    const { orgId, head } = await orgWithChain(3);
    await tamper(
      `INSERT INTO audit_records(org_id, seq, at, actor_id, actor_type, action, resource_type, resource_id, details, prev_hash, hash)
       SELECT org_id, seq + 1, at, actor_id, actor_type, action, resource_type, resource_id, details, hash, hash
       FROM audit_records WHERE org_id = $1 AND seq = $2`,
      [orgId, head],
    );
    expect(await verify(orgId)).toMatchObject({ ok: false, first_bad_seq: String(head + 1) });
  });

  it('verifies in tail mode from the newest checkpoint', async () => {
    const { orgId, head } = await orgWithChain(5);
    await createCheckpoint(tdb.handle, key, orgId);
    for (let i = 0; i < 4; i++) {
      await appendAudit(tdb.handle.db, {
        orgId,
        actor: { id: 'system-reaper', type: 'system' },
        action: 'approval_expired',
        resourceType: 'approval',
        resourceId: randomUUID(),
        details: { state: 'expired' },
      });
    }
    const r = await verify(orgId, { mode: 'tail', keyring });
    // The checkpointed record itself is re-hashed and matched, then the 4 after it.
    expect(r).toMatchObject({ ok: true, checked: 5, checkpoint: { seq: String(head) } });
    expect(r.head.seq).toBe(String(head + 4));
  });

  it('verifyAllChains names the broken org', async () => {
    const { orgId } = await orgWithChain(2);
    await tamper(`UPDATE audit_records SET actor_id = 'someone-else' WHERE org_id = $1 AND seq = 3`, [orgId]);
    const all = await verifyAllChains(tdb.handle, { keyring });
    expect(all.ok).toBe(false);
    expect(all.failures.find((f) => f.org_id === orgId)).toMatchObject({ first_bad_seq: '3' });
  });
});

describe('checkpoints', () => {
  it('detect truncation of the newest records that the bare chain cannot', async () => {
    const { orgId, head } = await orgWithChain();
    const { checkpoint } = await createCheckpoint(tdb.handle, key, orgId);
    expect(checkpoint.seq).toBe(String(head));
    const keep = head - 5;
    const at = await tdb.superuser<{ hash: Buffer }>('SELECT hash FROM audit_records WHERE org_id = $1 AND seq = $2', [
      orgId,
      keep,
    ]);
    await tamper('DELETE FROM audit_records WHERE org_id = $1 AND seq > $2', [orgId, keep]);
    await tdb.superuser('UPDATE audit_heads SET seq = $2, hash = $3 WHERE org_id = $1', [
      orgId,
      keep,
      at.rows[0]?.hash,
    ]);

    // A bare hash chain sees nothing wrong...
    expect(await verify(orgId, {})).toMatchObject({ ok: true, checked: keep });
    // ...the signed checkpoint names the first missing record.
    const r = await verify(orgId);
    expect(r).toMatchObject({ ok: false, first_bad_seq: String(keep + 1), checked: keep });
    expect(r.reason).toContain('were removed');
  });

  it('detect a chain rewritten with recomputed hashes', async () => {
    const { orgId } = await orgWithChain();
    const early = await createCheckpoint(tdb.handle, key, orgId);
    for (let i = 0; i < 6; i++) {
      await appendAudit(tdb.handle.db, {
        orgId,
        actor: { id: 'system-issuer', type: 'system' },
        action: 'certificate_issued',
        resourceType: 'certificate',
        resourceId: randomUUID(),
        details: { serial: String(i) },
      });
    }
    const late = await createCheckpoint(tdb.handle, key, orgId);
    const from = Number(early.checkpoint.seq) + 2;
    // The attacker edits a record and recomputes every hash after it, and the head.
    await tamper(`UPDATE audit_records SET details = '{"serial":"forged"}' WHERE org_id = $1 AND seq = $2`, [
      orgId,
      from,
    ]);
    await rechain(orgId, from);
    expect(await verify(orgId, {})).toMatchObject({ ok: true });
    const r = await verify(orgId);
    expect(r).toMatchObject({ ok: false, first_bad_seq: String(Number(early.checkpoint.seq) + 1) });
    expect(r.reason).toContain(late.checkpoint.id);
  });

  it('verify with the public key alone; any modified field does not', async () => {
    const { orgId } = await orgWithChain(2);
    const { checkpoint } = await createCheckpoint(tdb.handle, key, orgId);
    const publicOnly = keyringOf(parsePublicKey(key.publicKeyPem));
    expect(verifyCheckpoint(checkpoint, publicOnly)).toBe('valid');
    const modified: SignedCheckpoint[] = [
      { ...checkpoint, seq: String(Number(checkpoint.seq) - 1) },
      { ...checkpoint, head_hash: createHash('sha256').update('x').digest('hex') },
      { ...checkpoint, at: new Date(Date.parse(checkpoint.at) + 1).toISOString() },
      { ...checkpoint, org_id: randomUUID() },
      {
        ...checkpoint,
        signature: flipFirstBit(checkpoint.signature),
      },
    ];
    for (const m of modified) expect(verifyCheckpoint(m, publicOnly)).toBe('invalid');
    expect(verifyCheckpoint(checkpoint, keyringOf(generateSigningKey().publicKey))).toBe('unknown_key');
    expect(() => parsePublicKey(String(key.privateKey.export({ type: 'pkcs8', format: 'pem' })))).toThrow(/public key/);
  });

  it('are one per head and refused for a broken chain', async () => {
    const { orgId } = await orgWithChain(2);
    const first = await createCheckpoint(tdb.handle, key, orgId);
    const again = await createCheckpoint(tdb.handle, key, orgId);
    expect(first.created).toBe(true);
    expect(again).toMatchObject({ created: false, checkpoint: { id: first.checkpoint.id } });
    await appendAudit(tdb.handle.db, {
      orgId,
      actor: { id: 'system-reaper', type: 'system' },
      action: 'approval_expired',
      resourceType: 'approval',
      resourceId: randomUUID(),
      details: {},
    });
    const seq = await headSeq(orgId);
    await tamper(`UPDATE audit_records SET details = '{"x":1}' WHERE org_id = $1 AND seq = $2`, [orgId, seq]);
    await expect(createCheckpoint(tdb.handle, key, orgId)).rejects.toMatchObject({ code: 'conflict' });
  });

  it('the table refuses a checkpoint of a head the chain does not have, and a forged signature fails verification', async () => {
    const { orgId, head } = await orgWithChain(1);
    await expect(
      tdb.handle.pool.query(
        `INSERT INTO audit_checkpoints(id, org_id, seq, head_hash, at, key_id, signature) VALUES ($1, $2, $3, $4, now(), $5, $6)`,
        [randomUUID(), orgId, head, randomBytes(32), key.keyId, randomBytes(64)],
      ),
    ).rejects.toMatchObject({ code: '23514' });
    const real = await tdb.superuser<{ hash: Buffer }>('SELECT hash FROM audit_heads WHERE org_id = $1', [orgId]);
    await tdb.handle.pool.query(
      `INSERT INTO audit_checkpoints(id, org_id, seq, head_hash, at, key_id, signature) VALUES ($1, $2, $3, $4, now(), $5, $6)`,
      [randomUUID(), orgId, head, real.rows[0]?.hash, key.keyId, randomBytes(64)],
    );
    const r = await verify(orgId);
    expect(r.ok).toBe(false);
    expect(r.reason).toContain('invalid signature');
  });
});

describe('exported ledger', () => {
  async function exported(orgId: string): Promise<{ cp: SignedCheckpoint; lines: string[] }> {
    const { checkpoint } = await createCheckpoint(tdb.handle, key, orgId);
    let text = '';
    for await (const piece of exportLedger(tdb.handle, checkpoint)) text += piece;
    return { cp: checkpoint, lines: text.trimEnd().split('\n') };
  }
  const trusted = (cp: SignedCheckpoint) => [
    { id: cp.id, seq: Number(cp.seq), headHash: Buffer.from(cp.head_hash, 'hex') },
  ];

  it('verifies offline, and names edits, removals and truncation', async () => {
    const { orgId, head } = await orgWithChain();
    const { cp, lines } = await exported(orgId);
    expect(lines).toHaveLength(head + 1);
    expect(JSON.parse(lines[0] ?? '')).toEqual(cp);
    expect(await verifyLedgerLines(lines, orgId, trusted(cp))).toMatchObject({ ok: true, checked: head });

    const edited = [...lines];
    const rec = JSON.parse(edited[8] ?? '') as { details: Record<string, unknown> };
    rec.details = { ...rec.details, note: 'edited' };
    edited[8] = JSON.stringify(rec);
    expect(await verifyLedgerLines(edited, orgId, trusted(cp))).toMatchObject({ ok: false, first_bad_seq: '8' });

    const removed = lines.filter((_, i) => i !== 5);
    expect(await verifyLedgerLines(removed, orgId, trusted(cp))).toMatchObject({ ok: false, first_bad_seq: '5' });

    const truncated = lines.slice(0, lines.length - 3);
    expect(await verifyLedgerLines(truncated, orgId, trusted(cp))).toMatchObject({
      ok: false,
      first_bad_seq: String(head - 2),
    });
  });
});

describe("the services' role", () => {
  it('cannot UPDATE, DELETE or TRUNCATE the ledger, also after trying replica mode', async () => {
    const { orgId } = await orgWithChain(1);
    const app = new pg.Client({ connectionString: tdb.appUrl });
    await app.connect();
    try {
      await expect(app.query('SET session_replication_role = replica')).rejects.toMatchObject({ code: '42501' });
      for (const stmt of [
        `UPDATE audit_records SET details = '{}' WHERE org_id = '${orgId}'`,
        `DELETE FROM audit_records WHERE org_id = '${orgId}'`,
        'TRUNCATE audit_records',
        `UPDATE audit_heads SET seq = 0 WHERE org_id = '${orgId}'`,
        `INSERT INTO audit_records(org_id, seq, at, actor_id, actor_type, action, resource_type, resource_id, details, prev_hash, hash)
         SELECT org_id, 999, at, actor_id, actor_type, action, resource_type, resource_id, details, prev_hash, hash
         FROM audit_records WHERE org_id = '${orgId}' AND seq = 1`,
        `UPDATE audit_checkpoints SET seq = 0`,
        `DELETE FROM audit_checkpoints`,
        'TRUNCATE audit_checkpoints',
      ]) {
        await expect(app.query(stmt), stmt).rejects.toMatchObject({ code: '42501' });
      }
    } finally {
      await app.end();
    }
    expect(await verify(orgId)).toMatchObject({ ok: true });
  });

  it('even the table owner and a superuser in replica mode are stopped by the ALWAYS triggers', async () => {
    const { orgId } = await orgWithChain(1);
    const su = new pg.Client({ connectionString: tdb.superuserUrl });
    await su.connect();
    try {
      await su.query('SET session_replication_role = replica');
      for (const stmt of [
        `UPDATE audit_records SET details = '{}' WHERE org_id = '${orgId}'`,
        `DELETE FROM audit_records WHERE org_id = '${orgId}'`,
        'TRUNCATE audit_records CASCADE',
        'DELETE FROM audit_checkpoints',
        'TRUNCATE audit_checkpoints',
      ]) {
        await expect(su.query(stmt), stmt).rejects.toThrow(/append-only/);
      }
    } finally {
      await su.end();
    }
    const owner = new pg.Client({ connectionString: tdb.ownerUrl });
    await owner.connect();
    try {
      await expect(owner.query(`DELETE FROM audit_records WHERE org_id = '${orgId}'`)).rejects.toThrow(/append-only/);
    } finally {
      await owner.end();
    }
    expect(await verify(orgId)).toMatchObject({ ok: true });
  });
});

describe('concurrent writers', () => {
  it('32 transactions appending to one org produce one unforked chain', async () => {
    const org = await seedOrg(tdb.handle.db);
    const before = await headSeq(org.orgId);
    const PER = 10;
    await Promise.all(
      Array.from({ length: 32 }, (_, w) =>
        tdb.handle.db.transaction().execute(async (tx) => {
          for (let i = 0; i < PER; i++) {
            await appendAudit(tx, {
              orgId: org.orgId,
              actor: { id: `writer-${w}`, type: 'service' },
              action: 'job_released',
              resourceType: 'job',
              resourceId: randomUUID(),
              details: { writer: w, i },
            });
          }
        }),
      ),
    );
    const stats = await tdb.superuser<{ n: string; links: string; min: string; max: string }>(
      `SELECT count(*) n, count(DISTINCT prev_hash) links, min(seq) min, max(seq) max FROM audit_records WHERE org_id = $1`,
      [org.orgId],
    );
    const s = stats.rows[0];
    expect(Number(s?.n)).toBe(before + 32 * PER);
    expect(s?.links).toBe(s?.n);
    expect([Number(s?.min), Number(s?.max)]).toEqual([1, before + 32 * PER]);
    expect(await verify(org.orgId)).toMatchObject({ ok: true, checked: before + 32 * PER });
  });
});

function flipFirstBit(b64: string): string {
  const b = Buffer.from(b64, 'base64');
  b[0] = (b[0] ?? 0) ^ 1;
  return b.toString('base64');
}

/** The attacker's tool: recomputes prev_hash/hash from `from` on and the head, so the bare chain verifies again. */
async function rechain(orgId: string, from: number): Promise<void> {
  const prevRow = await tdb.superuser<{ hash: Buffer }>(
    'SELECT hash FROM audit_records WHERE org_id = $1 AND seq = $2',
    [orgId, from - 1],
  );
  let prev = prevRow.rows[0]?.hash ?? Buffer.alloc(32);
  const { rows } = await tdb.superuser<{
    seq: string;
    at: Date;
    actor_id: string;
    actor_type: string;
    action: string;
    resource_type: string;
    resource_id: string;
    details: unknown;
  }>('SELECT * FROM audit_records WHERE org_id = $1 AND seq >= $2 ORDER BY seq', [orgId, from]);
  for (const r of rows) {
    const h = chainHash(
      prev,
      BigInt(r.seq),
      canonicalAuditBody({
        orgId,
        at: r.at,
        actorId: r.actor_id,
        actorType: r.actor_type,
        action: r.action,
        resourceType: r.resource_type,
        resourceId: r.resource_id,
        details: r.details,
      }),
    );
    await tamper('UPDATE audit_records SET prev_hash = $3, hash = $4 WHERE org_id = $1 AND seq = $2', [
      orgId,
      r.seq,
      prev,
      h,
    ]);
    prev = h;
  }
  await tdb.superuser('UPDATE audit_heads SET hash = $2 WHERE org_id = $1', [orgId, prev]);
}
