import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import type { Db } from '@countersign/db';
import { actorOf, type Principal, type Role } from '@countersign/domain';
import { applyRegisterIntakeKeyFor, parseIntakePublicKey } from '@countersign/workflow';
import { type SeededPrincipal, seedPrincipal } from './fixtures.ts';

/**
 * A service principal that files requests over the `renewal-requests` queue:
 * enrolled like every seeded principal (it holds its own API key), with an
 * intake key an admin registered for it. `signer` has what a producer keeps:
 * the key id (the JWS kid), who it speaks for, and the private key, which
 * only the test holds (Countersign stores the public key).
 */
export interface IntakeSignerFixture {
  readonly keyId: string;
  readonly principalId: string;
  readonly orgId: string;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  readonly alg: 'ES256' | 'EdDSA' | 'RS256';
}

export interface SeededService {
  readonly principal: SeededPrincipal;
  readonly signer: IntakeSignerFixture;
}

function keyPair(alg: IntakeSignerFixture['alg']) {
  if (alg === 'EdDSA') return generateKeyPairSync('ed25519');
  if (alg === 'RS256') return generateKeyPairSync('rsa', { modulusLength: 2048 });
  return generateKeyPairSync('ec', { namedCurve: 'P-256' });
}

/** Registers one more intake key for an existing service principal (as `admin`). */
export async function addIntakeKey(
  db: Db,
  admin: Principal,
  principal: Pick<Principal, 'id' | 'orgId'>,
  alg: IntakeSignerFixture['alg'] = 'ES256',
): Promise<IntakeSignerFixture> {
  const { publicKey, privateKey } = keyPair(alg);
  // The direct write, as in an org that is not yet two-person ready (the database refuses it in one that is).
  const key = parseIntakePublicKey(publicKey.export({ format: 'jwk' }));
  const reg = await db
    .transaction()
    .execute((tx) => applyRegisterIntakeKeyFor(tx, admin.orgId, actorOf(admin), principal.id, key, `test ${alg}`));
  return { keyId: reg.id, principalId: principal.id, orgId: principal.orgId, privateKey, publicKey, alg };
}

export async function seedService(
  db: Db,
  admin: Principal,
  name: string,
  opts: { role?: Role; alg?: IntakeSignerFixture['alg'] } = {},
): Promise<SeededService> {
  const principal = await seedPrincipal(db, admin, name, opts.role ?? 'requester', 'service');
  const signer = await addIntakeKey(db, admin, principal, opts.alg);
  return { principal, signer };
}
