import { generateKeyPairSync } from 'node:crypto';
import { DomainError } from '@countersign/domain';
import { describe, expect, it } from 'vitest';
import { parseIntakePublicKey } from './intake-keys.ts';

/**
 * What an intake key registration accepts: public keys of the three
 * algorithms, as a JWK or an SPKI PEM, and nothing else. Every refusal is
 * validation_failed with a sentence that says what was wrong.
 */
const refused = (input: unknown, message: RegExp) => {
  let err: unknown;
  try {
    parseIntakePublicKey(input);
  } catch (e) {
    err = e;
  }
  expect(err, `accepted ${JSON.stringify(input).slice(0, 80)}`).toBeInstanceOf(DomainError);
  expect((err as DomainError).code).toBe('validation_failed');
  expect((err as DomainError).message).toMatch(message);
};

const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const ed = generateKeyPairSync('ed25519');
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });

describe('parseIntakePublicKey', () => {
  it('takes P-256, Ed25519 and RSA public keys as JWK or SPKI PEM, storing the same SPKI either way', () => {
    for (const [pair, alg] of [
      [ec, 'ES256'],
      [ed, 'EdDSA'],
      [rsa, 'RS256'],
    ] as const) {
      const fromJwk = parseIntakePublicKey({ ...pair.publicKey.export({ format: 'jwk' }), use: 'sig', alg });
      const fromPem = parseIntakePublicKey(pair.publicKey.export({ type: 'spki', format: 'pem' }).toString());
      expect(fromJwk.alg).toBe(alg);
      expect(fromPem.alg).toBe(alg);
      expect(fromJwk.spki.equals(pair.publicKey.export({ type: 'spki', format: 'der' }))).toBe(true);
      expect(fromPem.spki.equals(fromJwk.spki)).toBe(true);
      expect(fromPem.thumbprint).toBe(fromJwk.thumbprint);
    }
  });

  it('computes the RFC 7638 thumbprint (the RFC’s own example)', () => {
    const jwk = {
      kty: 'RSA',
      n: '0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw',
      e: 'AQAB',
      alg: 'RS256',
      kid: '2011-04-29',
    };
    expect(parseIntakePublicKey(jwk).thumbprint).toBe('NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs');
  });

  it('refuses private keys in every form', () => {
    refused(ec.privateKey.export({ format: 'jwk' }), /private or secret members \(d\)/);
    refused(rsa.privateKey.export({ format: 'jwk' }), /private or secret members/);
    refused(ec.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), /private key/);
    refused(ec.privateKey.export({ type: 'sec1', format: 'pem' }).toString(), /private key/);
    refused(rsa.privateKey.export({ type: 'pkcs1', format: 'pem' }).toString(), /private key/);
    refused({ kty: 'oct', k: 'c2VjcmV0' }, /private or secret members \(k\)/);
  });

  it('refuses small RSA keys, odd exponents, unknown curves and other key types', () => {
    const small = generateKeyPairSync('rsa', { modulusLength: 1024 });
    refused(small.publicKey.export({ format: 'jwk' }), /at least 2048 bits \(this one has 1024\)/);
    refused(small.publicKey.export({ type: 'spki', format: 'pem' }).toString(), /at least 2048 bits/);
    const e3 = generateKeyPairSync('rsa', { modulusLength: 2048, publicExponent: 3 });
    refused(e3.publicKey.export({ format: 'jwk' }), /exponent 65537/);
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    refused(p384.publicKey.export({ format: 'jwk' }), /unknown or unsupported curve "P-384"/);
    refused(p384.publicKey.export({ type: 'spki', format: 'pem' }).toString(), /unknown or unsupported curve/);
    const k1 = generateKeyPairSync('ec', { namedCurve: 'secp256k1' });
    refused(k1.publicKey.export({ type: 'spki', format: 'pem' }).toString(), /unknown or unsupported curve/);
    const x25519 = generateKeyPairSync('x25519');
    refused(x25519.publicKey.export({ format: 'jwk' }), /unknown or unsupported curve "X25519"/);
    refused(x25519.publicKey.export({ type: 'spki', format: 'pem' }).toString(), /not supported/);
    const pss = generateKeyPairSync('rsa-pss', { modulusLength: 2048 });
    refused(pss.publicKey.export({ type: 'spki', format: 'pem' }).toString(), /rsa-pss is not supported/);
  });

  it('refuses malformed keys, unknown JWK members, a mismatched alg, certificates and junk', () => {
    const jwk = ec.publicKey.export({ format: 'jwk' });
    refused({ ...jwk, x: 'AAAA' }, /not a valid public key/);
    refused({ ...jwk, x: 'not base64url!' }, /base64url/);
    refused({ ...jwk, x5c: ['MIIB'] }, /unexpected JWK members: x5c/);
    refused({ ...jwk, alg: 'RS256' }, /says alg "RS256" but the key is an ES256 key/);
    refused({ ...jwk, use: 'enc' }, /use must be "sig"/);
    refused({ ...jwk, key_ops: ['sign'] }, /key_ops/);
    refused({ kty: 'EC' }, /JWK member crv/);
    refused({ kty: 'DSA' }, /kty "DSA" is not supported/);
    refused('-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----', /SPKI PEM/);
    refused('-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----', /not a valid SubjectPublicKeyInfo/);
    refused(42, /public JWK \(object\) or an SPKI PEM/);
    refused(['kty'], /public JWK \(object\) or an SPKI PEM/);
    refused(null, /public JWK \(object\) or an SPKI PEM/);
  });
});
