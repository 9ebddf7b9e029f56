import { createPublicKey, generateKeyPairSync, type KeyObject, randomBytes, sign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  bitString,
  constructed,
  ia5Bytes,
  implicitPrimitive,
  nullValue,
  octetString,
  oid,
  sequence,
  setOf,
  smallInteger,
  utf8String,
} from './der.ts';
import { CsrError, parseCsr } from './index.ts';
import { OID } from './oids.ts';
import { encodePem } from './pem.ts';

/**
 * CSRs are parsed on every request before anything else is known about them,
 * so what one costs must not depend on what an attacker puts in beyond its
 * length (capped at 64 KiB). pem.test.ts covers the PEM layer; these cover
 * the DER and crypto behind it.
 */

const bestOf = (runs: number, fn: () => void): number => {
  let best = Number.POSITIVE_INFINITY;
  for (let i = 0; i < runs; i++) {
    const started = performance.now();
    fn();
    best = Math.min(best, performance.now() - started);
  }
  return best;
};

function reasonOf(fn: () => unknown): string | null {
  try {
    fn();
    return null;
  } catch (err) {
    if (err instanceof CsrError) return err.reason;
    throw err;
  }
}

/** A PKCS#10 request built by hand, so its parts can be what no encoder would produce. */
function csrOf(opts: {
  spki: Buffer;
  subject: Buffer;
  extensions?: Buffer[];
  signer?: KeyObject;
  signatureAlgorithm?: Buffer;
}): string {
  const attributes =
    opts.extensions === undefined
      ? constructed(0xa0, [])
      : constructed(0xa0, [sequence(oid(OID.extensionRequest), setOf(sequence(...opts.extensions)))]);
  const info = sequence(smallInteger(0), opts.subject, opts.spki, attributes);
  const algorithm = opts.signatureAlgorithm ?? sequence(oid(OID.ecdsaWithSha256));
  const signature = opts.signer ? sign('sha256', info, opts.signer) : randomBytes(256);
  return encodePem('CERTIFICATE REQUEST', sequence(info, algorithm, bitString(signature)));
}

const subjectCn = (cn: string) => sequence(setOf(sequence(oid(OID.commonName), utf8String(cn))));

describe('RSA public exponents', () => {
  /**
   * Verifying with a public exponent of e bits costs e modular squarings, and
   * OpenSSL lets e be as large as the modulus up to 3072 bits: a 3072-bit key
   * with a 3070-bit exponent took 5.6 ms to verify (a random, failing
   * signature: the cost is paid before it fails) against 0.05 ms for e = 65537
   * (and 0.47 ms at 254 bits). CA/B Baseline Requirements 6.1.6 recommend
   * 2^16+1 <= e <= 2^256-1; above that a CSR is refused before verifying.
   */
  const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 3072 });
  const jwk = publicKey.export({ format: 'jwk' }) as { n: string };
  const rsaSpki = (e: Buffer) =>
    createPublicKey({ key: { kty: 'RSA', n: jwk.n, e: e.toString('base64url') }, format: 'jwk' }).export({
      type: 'spki',
      format: 'der',
    });
  const exponentOf = (bits: number) => {
    const e = randomBytes(Math.ceil(bits / 8));
    e[0] = ((e[0] ?? 0) & (0xff >> (8 - (bits % 8 || 8)))) | (1 << ((bits - 1) % 8));
    e[e.length - 1] = (e[e.length - 1] ?? 0) | 1;
    return e;
  };
  const rsaCsr = (e: Buffer) =>
    csrOf({
      spki: rsaSpki(e),
      subject: subjectCn('rsa.example.com'),
      signatureAlgorithm: sequence(oid(OID.sha256WithRsa), nullValue()),
    });

  it('refuses an exponent above 2^256 - 1 before verifying', () => {
    const huge = rsaCsr(exponentOf(3070));
    expect(reasonOf(() => parseCsr(huge))).toBe('unsupported-key');
    expect(() => parseCsr(huge)).toThrow(/public exponent/);
    // 0.4 ms measured (parsing the key), against 5.6 ms for verifying with that exponent.
    expect(bestOf(5, () => reasonOf(() => parseCsr(huge)))).toBeLessThan(2);
  });

  it('accepts exponents up to 2^256 - 1 (the signature is what fails here)', () => {
    expect(reasonOf(() => parseCsr(rsaCsr(exponentOf(256))))).toBe('bad-signature');
    expect(reasonOf(() => parseCsr(rsaCsr(Buffer.from([1, 0, 1]))))).toBe('bad-signature');
  });
});

describe('64 KiB of names', () => {
  // Measured on the 2-core dev container (best of 9): 1.4 ms for 2,700 SANs
  // (61 KB of PEM), 1.4 ms for 2,600 subject RDNs (55 KB), both linear in the
  // count; the budget leaves room for a loaded machine. (How many names a
  // request may carry is the workflow's cap, MAX_CERTIFICATE_NAMES; the
  // parser reports what is there.)
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const spki = publicKey.export({ type: 'spki', format: 'der' });

  it('a CSR with thousands of SANs parses in a few ms', () => {
    const names = Array.from({ length: 2700 }, (_, i) => `${i.toString(36)}.example.com`);
    const san = sequence(
      oid(OID.subjectAltName),
      octetString(sequence(...names.map((n) => implicitPrimitive(2, ia5Bytes(n))))),
    );
    const pem = csrOf({ spki, subject: subjectCn('a.example.com'), extensions: [san], signer: privateKey });
    expect(pem.length).toBeLessThan(64 * 1024);
    expect(parseCsr(pem).dnsNames).toHaveLength(2700);
    expect(bestOf(5, () => parseCsr(pem))).toBeLessThan(15);
  });

  it('a subject of thousands of RDNs parses in a few ms', () => {
    const rdns = Array.from({ length: 2600 }, (_, i) => setOf(sequence(oid('2.5.4.10'), utf8String(`o${i}`))));
    const subject = sequence(...rdns, setOf(sequence(oid(OID.commonName), utf8String('a.example.com'))));
    const pem = csrOf({ spki, subject, signer: privateKey });
    expect(pem.length).toBeLessThan(64 * 1024);
    expect(parseCsr(pem).commonName).toBe('a.example.com');
    expect(bestOf(5, () => parseCsr(pem))).toBeLessThan(15);
  });
});
