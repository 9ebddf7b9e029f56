import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { type Db, identity } from '@countersign/db';
import { type Caller, DomainError, type PrincipalKind, type Role } from '@countersign/domain';

/**
 * API keys look like `cs_<key id hex>_<secret>`. The id finds the row; only
 * SHA-256 of the 256-bit secret is stored (a slow hash buys nothing against a
 * random secret of that size), compared in constant time.
 */
const KEY_PATTERN = /^cs_([0-9a-f]{32})_([A-Za-z0-9_-]{43})$/;

export interface GeneratedKey {
  readonly id: string;
  readonly token: string;
  readonly secretHash: Buffer;
}

export function generateApiKey(): GeneratedKey {
  const id = randomUUID();
  const secret = randomBytes(32).toString('base64url');
  return { id, token: `cs_${id.replaceAll('-', '')}_${secret}`, secretHash: hashSecret(secret) };
}

const hashSecret = (secret: string): Buffer => createHash('sha256').update(secret, 'utf8').digest();

export function parseApiKey(token: string): { id: string; secret: string } | null {
  const m = KEY_PATTERN.exec(token);
  if (!m?.[1] || !m[2]) return null;
  const h = m[1];
  const id = `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  return { id, secret: m[2] };
}

/** A caller as authentication found it: the principal and the credential it presented. */
export interface Authenticated extends Caller {
  /** The API key id, or `client-certificate:<binding id>`; for logs and the queue dashboard session. */
  readonly keyId: string;
}

const unauthenticated = () =>
  new DomainError('unauthenticated', 'a valid API key is required (Authorization: Bearer <key>)');

/** Resolves a bearer token to its principal; every failure looks the same to the caller. */
export async function authenticateApiKey(db: Db, token: string, now: Date = new Date()): Promise<Authenticated> {
  const parsed = parseApiKey(token);
  if (!parsed) throw unauthenticated();
  const row = await identity.findApiKeyForAuth(db, parsed.id);
  // Hash even when the key is unknown so timing does not reveal which ids exist.
  const presented = hashSecret(parsed.secret);
  const stored = row?.secret_hash ?? Buffer.alloc(32);
  const matches = timingSafeEqual(presented, stored);
  if (!row || !matches) throw unauthenticated();
  if (row.revoked_at !== null || row.disabled_at !== null) throw unauthenticated();
  if (row.expires_at !== null && row.expires_at <= now) throw unauthenticated();
  return {
    id: row.principal_id,
    orgId: row.org_id,
    role: row.role as Role,
    kind: row.kind as PrincipalKind,
    name: row.name,
    keyId: row.key_id,
    credential: {
      kind: 'api_key',
      id: row.key_id,
      own: row.created_by === row.principal_id,
      createdBy: row.created_by,
    },
  };
}
