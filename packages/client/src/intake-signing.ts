import { createPrivateKey, generateKeyPairSync, type JsonWebKey, KeyObject, randomUUID, webcrypto } from 'node:crypto';
import {
  checkRenewalRequest,
  INTAKE_JWS_MAX_CHARS,
  INTAKE_JWS_TYP,
  type IntakeAlgorithm,
  type RenewalRequest,
  type RenewalRequestClaims,
} from '@countersign/queues';
import { CompactSign } from 'jose';

/**
 * Signing `renewal-requests` messages (SPEC §4): a producer proves which
 * service principal it speaks for by signing each message with a private key
 * whose public half is registered with Countersign as an intake key. The
 * private key never leaves the producer; the queue carries only the JWS.
 */
export type { IntakeAlgorithm, RenewalRequest } from '@countersign/queues';

export interface IntakeSigner {
  /** The intake key's id: `id` of the registration answer. It becomes the JWS `kid`. */
  readonly keyId: string;
  /** The service principal the key is registered to (`principal_id` of the answer): the `sub` claim. */
  readonly principalId: string;
  /** Its org (`org_id` of the answer): the `org` claim. */
  readonly orgId: string;
  /** The private key: a KeyObject, a WebCrypto CryptoKey, a private JWK or a PKCS#8 PEM. */
  readonly privateKey: KeyObject | webcrypto.CryptoKey | JsonWebKey | string;
}

function privateKeyObject(k: IntakeSigner['privateKey']): KeyObject {
  if (k instanceof KeyObject) return k;
  if (typeof k === 'string') return createPrivateKey({ key: k, format: 'pem' });
  if (k instanceof webcrypto.CryptoKey) return KeyObject.from(k);
  return createPrivateKey({ key: k as JsonWebKey, format: 'jwk' });
}

/** The JWS algorithm of a private key, as the intake key was registered: ES256, EdDSA or RS256. */
export function intakeAlgorithmOf(key: KeyObject): IntakeAlgorithm {
  if (key.type !== 'private') throw new Error('the signer needs the private key');
  switch (key.asymmetricKeyType) {
    case 'ed25519':
      return 'EdDSA';
    case 'ec':
      if (key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ES256';
      break;
    case 'rsa':
      return 'RS256';
  }
  throw new Error(`intake keys are ES256 (P-256), EdDSA (Ed25519) or RS256 (RSA); not ${key.asymmetricKeyType}`);
}

/**
 * Signs one request as the signer's service principal: a compact JWS with
 * `alg`, `kid` and `typ` in its protected header and the request plus `sub`,
 * `org`, `iat` (now) and a fresh `jti` as its payload. The request is checked
 * against the queue contract first, so a bad one throws here, naming the
 * field, before anything is signed or sent.
 */
export async function signRenewalRequest(
  request: RenewalRequest,
  signer: IntakeSigner,
  opts: { readonly now?: number } = {},
): Promise<string> {
  const checked = checkRenewalRequest(request);
  if (!checked.ok) throw new Error(`invalid renewal-requests payload: ${checked.problems}`);
  const key = privateKeyObject(signer.privateKey);
  const alg = intakeAlgorithmOf(key);
  const claims: RenewalRequestClaims = {
    ...checked.value,
    sub: signer.principalId,
    org: signer.orgId,
    iat: Math.floor((opts.now ?? Date.now()) / 1000),
    jti: randomUUID(),
  };
  const jws = await new CompactSign(new TextEncoder().encode(JSON.stringify(claims)))
    .setProtectedHeader({ alg, kid: signer.keyId, typ: INTAKE_JWS_TYP })
    .sign(key);
  if (jws.length > INTAKE_JWS_MAX_CHARS) {
    throw new Error(`the signed message has ${jws.length} characters; the queue takes at most ${INTAKE_JWS_MAX_CHARS}`);
  }
  return jws;
}

export interface GeneratedIntakeKey {
  readonly alg: IntakeAlgorithm;
  /** Register this with Countersign (POST /api/v1/me/intake-keys or, as an admin, /principals/{id}/intake-keys). */
  readonly publicJwk: JsonWebKey;
  /** PKCS#8 PEM: keep it where the producer keeps its secrets; it is the signer's `privateKey`. */
  readonly privateKeyPem: string;
  readonly privateKey: KeyObject;
}

/** A new key pair for signing intake messages (default ES256, P-256). */
export function generateIntakeKeyPair(alg: IntakeAlgorithm = 'ES256'): GeneratedIntakeKey {
  const { publicKey, privateKey } =
    alg === 'EdDSA'
      ? generateKeyPairSync('ed25519')
      : alg === 'RS256'
        ? generateKeyPairSync('rsa', { modulusLength: 3072 })
        : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    alg,
    publicJwk: publicKey.export({ format: 'jwk' }),
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    privateKey,
  };
}
