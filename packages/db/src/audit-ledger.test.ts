import { describe, expect, it } from 'vitest';
import { canonicalAuditBody, chainHash, GENESIS_HASH } from './audit-ledger.ts';
import { canonicalJson } from './canonical-json.ts';
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

  it('is the RFC 8785 form of the whole record, whatever its strings hold', () => {
    for (const f of [
      fields,
      {
        ...fields,
        actorId: 'é"\\\n😀\u0001',
        resourceId: '\ue000',
        resourceType: 'x y',
        at: '2026-01-02T03:04:05.678Z',
      },
    ]) {
      const details = { z: [1, 'two'], a: { ü: null } };
      const at = typeof f.at === 'string' ? f.at : f.at.toISOString();
      const whole = canonicalJson({
        org_id: f.orgId,
        at,
        actor_id: f.actorId,
        actor_type: f.actorType,
        action: f.action,
        resource_type: f.resourceType,
        resource_id: f.resourceId,
        details,
      });
      expect(canonicalAuditBody({ ...f, details }).toString('utf8')).toBe(whole);
    }
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
