import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  appendAudit,
  createCheckpoint,
  exportLedger,
  generateSigningKey,
  loadOrCreateSigningKey,
  publicKeyFileOf,
  type SignedCheckpoint,
} from '@countersign/db';
import { createTestDatabase, seedOrg, type TestDatabase } from '@countersign/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * `countersign audit verify --checkpoint`, run as the real binary: an auditor
 * with only the public key checks an exported ledger or the live database.
 */
const BIN = join(import.meta.dirname, '..', 'bin', 'countersign.mjs');
let tdb: TestDatabase;
let dir: string;
let orgId: string;
let checkpoint: SignedCheckpoint;
let ledger: string[];
let keyFile: string;

const run = (args: string[]) =>
  new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { PATH: process.env.PATH } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });

const file = async (name: string, text: string) => {
  const p = join(dir, name);
  await writeFile(p, text);
  return p;
};

beforeAll(async () => {
  tdb = await createTestDatabase();
  dir = await mkdtemp(join(tmpdir(), 'countersign-audit-cli-'));
  // The key file as the api creates it on first start, public half beside it.
  const { key, created } = await loadOrCreateSigningKey(join(dir, 'keys', 'signing.pem'), { create: true });
  expect(created).toBe(true);
  keyFile = publicKeyFileOf(join(dir, 'keys', 'signing.pem'));
  const org = await seedOrg(tdb.handle.db);
  orgId = org.orgId;
  for (let i = 0; i < 10; i++) {
    await appendAudit(tdb.handle.db, {
      orgId,
      actor: { id: org.operator1.id, type: 'user' },
      action: 'approval_vote_cast',
      resourceType: 'approval',
      resourceId: org.gated.id,
      details: { i, note: `vote ${i}` },
    });
  }
  checkpoint = (await createCheckpoint(tdb.handle, key, orgId)).checkpoint;
  let text = '';
  for await (const piece of exportLedger(tdb.handle, checkpoint)) text += piece;
  ledger = text.trimEnd().split('\n');
});
afterAll(async () => {
  await tdb?.drop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('countersign audit verify --checkpoint', () => {
  it('verifies an exported ledger with the public key alone (exit 0)', async () => {
    const exported = await file('export.jsonl', `${ledger.join('\n')}\n`);
    const r = await run(['audit', 'verify', '--checkpoint', exported, '--ledger', exported, '--public-key', keyFile]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Audit ledger OK: ${checkpoint.seq} records verified`);
  });

  it('names the first bad record of a tampered or truncated ledger (exit 1)', async () => {
    const cp = await file('checkpoint.json', JSON.stringify(checkpoint, null, 2));
    const edited = [...ledger];
    edited[6] = (edited[6] ?? '').replace('"actor_type":"user"', '"actor_type":"service"');
    const r = await run([
      'audit',
      'verify',
      '--checkpoint',
      cp,
      '--ledger',
      await file('edited.jsonl', edited.join('\n')),
      '--public-key',
      keyFile,
    ]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('BROKEN at record 6');

    const short = ledger.slice(0, -2).join('\n');
    const t = await run([
      'audit',
      'verify',
      '--checkpoint',
      cp,
      '--ledger',
      await file('short.jsonl', short),
      '--public-key',
      keyFile,
      '--json',
    ]);
    expect(t.code).toBe(1);
    expect(JSON.parse(t.stdout)).toMatchObject({ ok: false, first_bad_seq: String(Number(checkpoint.seq) - 1) });
  });

  it('refuses a modified checkpoint or another key (exit 3)', async () => {
    const exported = await file('export2.jsonl', ledger.join('\n'));
    const forged = await file(
      'forged.json',
      JSON.stringify({ ...checkpoint, seq: String(Number(checkpoint.seq) - 2) }),
    );
    const r = await run(['audit', 'verify', '--checkpoint', forged, '--ledger', exported, '--public-key', keyFile]);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('does NOT verify');
    const otherKey = await file('other.pub', generateSigningKey().publicKeyPem);
    const o = await run(['audit', 'verify', '--checkpoint', exported, '--ledger', exported, '--public-key', otherKey]);
    expect(o.code).toBe(3);
    expect(o.stderr).toContain(`signed by key ${checkpoint.key_id}`);
  });

  it('checks the live database against the checkpoint: truncation is exit 1', async () => {
    const cp = await file('checkpoint-db.json', JSON.stringify(checkpoint));
    const ok = await run([
      'audit',
      'verify',
      '--checkpoint',
      cp,
      '--database-url',
      tdb.appUrl,
      '--public-key',
      keyFile,
    ]);
    expect(ok.code).toBe(0);
    const keep = Number(checkpoint.seq) - 3;
    await tdb.superuser('ALTER TABLE audit_records DISABLE TRIGGER USER');
    try {
      await tdb.superuser('DELETE FROM audit_records WHERE org_id = $1 AND seq > $2', [orgId, keep]);
    } finally {
      await tdb.superuser('ALTER TABLE audit_records ENABLE ALWAYS TRIGGER audit_records_no_update');
      await tdb.superuser('ALTER TABLE audit_records ENABLE ALWAYS TRIGGER audit_records_no_truncate');
    }
    await tdb.superuser(
      'UPDATE audit_heads SET seq = $2, hash = (SELECT hash FROM audit_records WHERE org_id = $1 AND seq = $2) WHERE org_id = $1',
      [orgId, keep],
    );
    const r = await run(['audit', 'verify', '--checkpoint', cp, '--database-url', tdb.appUrl, '--public-key', keyFile]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`BROKEN at record ${keep + 1}`);
  });

  it('explains its usage (exit 2)', async () => {
    const cp = await file('checkpoint-usage.json', JSON.stringify(checkpoint));
    const r = await run(['audit', 'verify', '--checkpoint', cp, '--public-key', keyFile]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--ledger FILE or --database-url URL');
    const missing = await run([
      'audit',
      'verify',
      '--checkpoint',
      join(dir, 'nope.json'),
      '--ledger',
      cp,
      '--public-key',
      keyFile,
    ]);
    expect(missing.code).toBe(2);
  });
});
