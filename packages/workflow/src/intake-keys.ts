import { createHash, createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import {
  appendAudit,
  type Db,
  decodeCursor,
  type Executor,
  identity,
  intakeKeys,
  type Page,
  pageOf,
  pgCode,
  pgConstraint,
  UNIQUE_VIOLATION,
} from '@countersign/db';
import { type Actor, actorOf, DomainError, notFound, type Principal, requireRole } from '@countersign/domain';
import type { ApplyContext } from './administration.ts';

/**
 * Intake signing keys (SPEC §4, issue 20): the public keys with which a
 * service principal signs its `renewal-requests` messages. Only public keys
 * are ever accepted or stored; the private key stays with the producer. Every
 * registration and revocation is audited in its transaction.
 *
 * Two ways to register: an admin for a service principal of its org
 * (registerIntakeKeyFor: a credential made for someone else), or the service
 * principal for itself (registerOwnIntakeKey).
 */
export const INTAKE_KEY_ALGORITHMS = ['ES256', 'EdDSA', 'RS256'] as const;
export type IntakeKeyAlgorithm = (typeof INTAKE_KEY_ALGORITHMS)[number];

const RSA_MIN_BITS = 2048;
// Larger moduli buy nothing and make every verification slower.
const RSA_MAX_BITS = 8192;

export interface IntakePublicKey {
  readonly alg: IntakeKeyAlgorithm;
  /** SubjectPublicKeyInfo, DER: what is stored. */
  readonly spki: Buffer;
  /** RFC 7638 thumbprint (SHA-256, base64url). */
  readonly thumbprint: string;
}

export interface IntakeKeyInput {
  /** A public JWK (object) or an SPKI PEM (`-----BEGIN PUBLIC KEY-----`). */
  public_key: unknown;
  name?: string | undefined;
}

export interface IntakeKeyView {
  /** The JWS `kid` of messages signed with this key. */
  id: string;
  org_id: string;
  principal_id: string;
  alg: IntakeKeyAlgorithm;
  /** The public key as a JWK, with `kid`, `alg` and `use` filled in. */
  public_key: Record<string, string>;
  thumbprint: string;
  name: string | null;
  created_by: string;
  created_at: string;
  revoked_at: string | null;
}

const invalid = (message: string): DomainError => new DomainError('validation_failed', `public_key: ${message}`);

const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];
const KEY_MEMBERS: Record<string, readonly string[]> = {
  EC: ['crv', 'x', 'y'],
  OKP: ['crv', 'x'],
  RSA: ['n', 'e'],
};
const OPTIONAL_MEMBERS = ['alg', 'use', 'key_ops', 'kid', 'ext'];
const BASE64URL = /^[A-Za-z0-9_-]+$/;
const PRIVATE_KEY_ADVICE = 'never send a private key to Countersign; register its public part';

function keyFromJwk(jwk: Record<string, unknown>): { key: KeyObject; declaredAlg: unknown } {
  const secret = PRIVATE_MEMBERS.filter((m) => m in jwk);
  if (secret.length > 0) {
    throw invalid(`the JWK has private or secret members (${secret.join(', ')}): ${PRIVATE_KEY_ADVICE}`);
  }
  const kty = jwk.kty;
  if (typeof kty !== 'string' || !(kty in KEY_MEMBERS)) {
    throw invalid(`JWK kty ${JSON.stringify(kty)} is not supported: use EC (P-256), OKP (Ed25519) or RSA`);
  }
  const required = KEY_MEMBERS[kty] ?? [];
  const unknown = Object.keys(jwk).filter((m) => m !== 'kty' && !required.includes(m) && !OPTIONAL_MEMBERS.includes(m));
  if (unknown.length > 0) throw invalid(`unexpected JWK members: ${unknown.slice(0, 5).join(', ')}`);
  for (const m of required) {
    const v = jwk[m];
    if (typeof v !== 'string' || v.length === 0 || v.length > 2048 || (m !== 'crv' && !BASE64URL.test(v))) {
      throw invalid(`JWK member ${m} must be ${m === 'crv' ? 'a curve name' : 'base64url'}`);
    }
  }
  if (kty === 'EC' && jwk.crv !== 'P-256') {
    throw invalid(`unknown or unsupported curve ${JSON.stringify(jwk.crv)}: EC keys must be P-256 (ES256)`);
  }
  if (kty === 'OKP' && jwk.crv !== 'Ed25519') {
    throw invalid(`unknown or unsupported curve ${JSON.stringify(jwk.crv)}: OKP keys must be Ed25519 (EdDSA)`);
  }
  if (jwk.use !== undefined && jwk.use !== 'sig') throw invalid('JWK use must be "sig"');
  if (
    jwk.key_ops !== undefined &&
    !(Array.isArray(jwk.key_ops) && jwk.key_ops.length === 1 && jwk.key_ops[0] === 'verify')
  ) {
    throw invalid('JWK key_ops must be ["verify"]');
  }
  if (jwk.ext !== undefined && typeof jwk.ext !== 'boolean') throw invalid('JWK ext must be a boolean');
  if (jwk.kid !== undefined && (typeof jwk.kid !== 'string' || jwk.kid.length > 200)) {
    throw invalid('JWK kid must be a string (Countersign assigns the key id; yours is ignored)');
  }
  const material = Object.fromEntries(['kty', ...required].map((m) => [m, jwk[m]])) as JsonWebKey;
  try {
    return { key: createPublicKey({ key: material, format: 'jwk' }), declaredAlg: jwk.alg };
  } catch {
    throw invalid('the JWK is not a valid public key (is the point on the curve? are n and e right?)');
  }
}

const PEM_BLOCK = /^-----BEGIN PUBLIC KEY-----\r?\n[A-Za-z0-9+/=\r\n]+-----END PUBLIC KEY-----$/;

function keyFromPem(pem: string): KeyObject {
  const text = pem.trim();
  if (/PRIVATE KEY/.test(text)) throw invalid(`this is a private key: ${PRIVATE_KEY_ADVICE}`);
  if (!PEM_BLOCK.test(text)) {
    throw invalid(
      'send a public JWK or one SPKI PEM block (-----BEGIN PUBLIC KEY-----); certificates and PKCS#1 keys are not accepted',
    );
  }
  try {
    const key = createPublicKey({ key: text, format: 'pem' });
    if (key.type !== 'public') throw new Error('not a public key');
    return key;
  } catch {
    throw invalid('the PEM block is not a valid SubjectPublicKeyInfo');
  }
}

function algorithmOf(key: KeyObject): IntakeKeyAlgorithm {
  const details = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case 'ed25519':
      return 'EdDSA';
    case 'ec':
      if (details.namedCurve !== 'prime256v1') {
        throw invalid(`unknown or unsupported curve ${details.namedCurve ?? '(none)'}: EC keys must be P-256 (ES256)`);
      }
      return 'ES256';
    case 'rsa': {
      const bits = details.modulusLength ?? 0;
      if (bits < RSA_MIN_BITS) throw invalid(`an RSA key needs at least ${RSA_MIN_BITS} bits (this one has ${bits})`);
      if (bits > RSA_MAX_BITS) throw invalid(`an RSA key may have at most ${RSA_MAX_BITS} bits (this one has ${bits})`);
      if (details.publicExponent !== 65537n) throw invalid('an RSA key must use the public exponent 65537');
      return 'RS256';
    }
    default:
      throw invalid(
        `key type ${key.asymmetricKeyType ?? '(unknown)'} is not supported: use ES256 (P-256), EdDSA (Ed25519) or RS256 (RSA >= ${RSA_MIN_BITS} bits)`,
      );
  }
}

/** RFC 7638: SHA-256 over the required members in lexicographic order, no whitespace. */
function thumbprintOf(jwk: JsonWebKey): string {
  const members =
    jwk.kty === 'EC'
      ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y }
      : jwk.kty === 'OKP'
        ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x }
        : { e: jwk.e, kty: jwk.kty, n: jwk.n };
  return createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}

/**
 * Validates a public key as the intake accepts it: a public JWK (EC P-256,
 * OKP Ed25519 or RSA, no private members) or an SPKI PEM. Private keys, small
 * or odd RSA keys and other curves are refused with `validation_failed`.
 */
export function parseIntakePublicKey(input: unknown): IntakePublicKey {
  let key: KeyObject;
  let declaredAlg: unknown;
  if (typeof input === 'string') {
    key = keyFromPem(input);
  } else if (typeof input === 'object' && input !== null && !Array.isArray(input)) {
    ({ key, declaredAlg } = keyFromJwk(input as Record<string, unknown>));
  } else {
    throw invalid('send a public JWK (object) or an SPKI PEM (string)');
  }
  const alg = algorithmOf(key);
  if (declaredAlg !== undefined && declaredAlg !== alg) {
    throw invalid(`the JWK says alg ${JSON.stringify(declaredAlg)} but the key is an ${alg} key`);
  }
  return {
    alg,
    spki: key.export({ type: 'spki', format: 'der' }),
    thumbprint: thumbprintOf(key.export({ format: 'jwk' })),
  };
}

export function intakeKeyView(row: intakeKeys.IntakeKeyRow): IntakeKeyView {
  const jwk = createPublicKey({ key: row.public_key, format: 'der', type: 'spki' }).export({ format: 'jwk' });
  const publicJwk: Record<string, string> = {};
  for (const [k, v] of Object.entries(jwk)) if (typeof v === 'string') publicJwk[k] = v;
  return {
    id: row.id,
    org_id: row.org_id,
    principal_id: row.principal_id,
    alg: row.alg as IntakeKeyAlgorithm,
    public_key: { ...publicJwk, kid: row.id, alg: row.alg, use: 'sig' },
    thumbprint: row.thumbprint,
    name: row.name,
    created_by: row.created_by,
    created_at: row.created_at.toISOString(),
    revoked_at: row.revoked_at?.toISOString() ?? null,
  };
}

async function insertAudited(
  tx: Executor,
  orgId: string,
  principalId: string,
  key: IntakePublicKey,
  name: string | null,
  actor: Actor,
  context?: ApplyContext,
): Promise<IntakeKeyView> {
  const row = await intakeKeys
    .insertIntakeKey(tx, {
      id: context?.id,
      orgId,
      principalId,
      alg: key.alg,
      publicKey: key.spki,
      thumbprint: key.thumbprint,
      name,
      createdBy: actor.id,
    })
    .catch((err: unknown) => {
      if (pgCode(err) === UNIQUE_VIOLATION && pgConstraint(err) === 'intake_keys_live_thumbprint') {
        throw new DomainError('conflict', `public key ${key.thumbprint} is already registered in this org`);
      }
      throw err;
    });
  await appendAudit(tx, {
    orgId,
    actor,
    action: 'intake_key_registered',
    resourceType: 'intake_key',
    resourceId: row.id,
    details: {
      principal_id: principalId,
      alg: row.alg,
      thumbprint: row.thumbprint,
      name: row.name,
      own: actor.id === principalId,
      ...(context?.configRequestId ? { config_request_id: context.configRequestId } : {}),
    },
  });
  return intakeKeyView(row);
}

function requireService(p: { name: string; kind: string; disabled_at: Date | null }): void {
  if (p.kind !== 'service') {
    throw new DomainError(
      'validation_failed',
      `principal ${p.name} is a ${p.kind}; intake keys are registered for service principals`,
    );
  }
  if (p.disabled_at !== null) throw new DomainError('validation_failed', `principal ${p.name} is disabled`);
}

/**
 * An admin registers an intake key for a service principal of its org: a
 * credential made for another principal, which then files requests in that
 * principal's name. The one place this write happens, so that it can become a
 * configuration request once an org has two admins.
 */
/**
 * An admin registers a key for a service principal: a credential made for
 * someone else. The configuration module decides whether it applies at once
 * or waits for a second admin (configureIntakeKey); this is the write.
 */
export async function applyRegisterIntakeKeyFor(
  tx: Executor,
  orgId: string,
  actor: Actor,
  principalId: string,
  key: IntakePublicKey,
  name: string | null,
  context?: ApplyContext,
): Promise<IntakeKeyView> {
  const owner = await identity.findPrincipal(tx, orgId, principalId);
  if (!owner) throw notFound('principal');
  requireService(owner);
  return insertAudited(tx, orgId, principalId, key, name, actor, context);
}

/** A service principal registers a key of its own. */
export async function registerOwnIntakeKey(db: Db, self: Principal, input: IntakeKeyInput): Promise<IntakeKeyView> {
  if (self.kind !== 'service') {
    throw new DomainError('forbidden', 'only service principals sign intake messages and register intake keys');
  }
  const key = parseIntakePublicKey(input.public_key);
  return db.transaction().execute(async (tx) => {
    const owner = await identity.findPrincipal(tx, self.orgId, self.id);
    if (!owner) throw notFound('principal');
    requireService(owner);
    return insertAudited(tx, self.orgId, self.id, key, input.name ?? null, actorOf(self));
  });
}

export async function listIntakeKeys(
  db: Db,
  caller: Principal,
  q: { principalId?: string | undefined; cursor?: string | undefined; limit?: number | undefined },
): Promise<Page<IntakeKeyView>> {
  requireRole(caller, ['admin', 'auditor'], 'list intake keys');
  const limit = q.limit ?? 50;
  const rows = await intakeKeys.listIntakeKeys(db, {
    orgId: caller.orgId,
    ...(q.principalId ? { principalId: q.principalId } : {}),
    after: decodeCursor(q.cursor),
    limit,
  });
  return pageOf(rows, limit, (r) => ({ at: r.created_at, id: r.id }), intakeKeyView);
}

/** An admin revokes any key of its org; a principal revokes its own. Revoking twice is a no-op. */
export async function revokeIntakeKey(db: Db, caller: Principal, id: string): Promise<IntakeKeyView> {
  return db.transaction().execute(async (tx) => {
    const existing = await intakeKeys.findIntakeKey(tx, caller.orgId, id);
    if (!existing) throw notFound('intake key');
    if (caller.role !== 'admin' && existing.principal_id !== caller.id) {
      throw new DomainError('forbidden', 'only an admin or the key’s own principal may revoke an intake key');
    }
    const row = await intakeKeys.revokeIntakeKey(tx, caller.orgId, id);
    if (!row) return intakeKeyView((await intakeKeys.findIntakeKey(tx, caller.orgId, id)) ?? existing);
    await appendAudit(tx, {
      orgId: caller.orgId,
      actor: actorOf(caller),
      action: 'intake_key_revoked',
      resourceType: 'intake_key',
      resourceId: row.id,
      details: { principal_id: row.principal_id, thumbprint: row.thumbprint },
    });
    return intakeKeyView(row);
  });
}
