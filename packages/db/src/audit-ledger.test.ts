import { describe, expect, it } from 'vitest';
import { canonicalAuditBody, chainHash, GENESIS_HASH } from './audit-ledger.ts';
import { decodeCursor, encodeCursor } from './cursor.ts';

const fields = {
  orgId: '00000000-0000-4000-8000-000000000001',
  at: new Date('2026-01-02T03:04:05.678Z'),
  actorId: 'a',
  actorType: 'user',
  action: 'approval_approved',
  resourceType: 'approval',
  resourceId: 'r',
};

describe('audit canonical form', () => {
  it('does not depend on key order or number formatting', () => {
    const a = canonicalAuditBody({ ...fields, details: { b: 1, a: [1.0, 'x'], c: { z: null, y: true } } });
    const b = canonicalAuditBody({ ...fields, details: { c: { y: true, z: null }, a: [1, 'x'], b: 1.0 } });
    expect(a.equals(b)).toBe(true);
    expect(a.toString()).toContain('"details":{"a":[1,"x"],"b":1,"c":{"y":true,"z":null}}');
  });

  it('binds the sequence number and the previous hash', () => {
    const body = canonicalAuditBody({ ...fields, details: {} });
    const h1 = chainHash(GENESIS_HASH, 1n, body);
    expect(chainHash(GENESIS_HASH, 2n, body).equals(h1)).toBe(false);
    expect(chainHash(h1, 1n, body).equals(h1)).toBe(false);
    expect(chainHash(GENESIS_HASH, 1n, body).equals(h1)).toBe(true);
  });
});

describe('cursors', () => {
  it('round-trip and refuse garbage with validation_failed', () => {
    const pos = { at: new Date('2026-01-01T00:00:00.000Z'), id: '00000000-0000-4000-8000-000000000001' };
    expect(decodeCursor(encodeCursor(pos))).toEqual(pos);
    expect(decodeCursor(undefined)).toBeNull();
    expect(() => decodeCursor('garbage')).toThrow(/cursor is not valid/);
    expect(() => decodeCursor(Buffer.from('["x","y"]').toString('base64url'))).toThrow(/cursor is not valid/);
  });
});
