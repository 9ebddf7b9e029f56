/**
 * Key + CSR generation for tests and the CLI.
 *
 * Uses @peculiar/x509 rather than our own DER writer on purpose: CSRs built by
 * an independent encoder exercise parseCsr against something other than our
 * own assumptions. Not on any hot path.
 */
// @peculiar/x509 2.x resolves its services through tsyringe, which needs the
// Reflect metadata polyfill loaded before the library module evaluates.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { OID } from './oids.ts';
import { encodePem } from './pem.ts';

export interface GenerateCsrOptions {
  commonName: string;
  dnsNames: string[];
  /** Defaults to 'ecdsa-p256'. */
  keyAlgorithm?: 'ecdsa-p256' | 'rsa';
  /** RSA modulus size; defaults to 2048. Smaller values exist so tests can produce rejectable CSRs. */
  rsaBits?: number;
}

export interface GeneratedKeyAndCsr {
  csrPem: string;
  /** PKCS#8 PEM. */
  privateKeyPem: string;
  /** DER SubjectPublicKeyInfo. */
  publicKeySpki: Buffer;
}

export async function generateKeyAndCsr(opts: GenerateCsrOptions): Promise<GeneratedKeyAndCsr> {
  const subtle = webcrypto.subtle;
  const algorithm =
    (opts.keyAlgorithm ?? 'ecdsa-p256') === 'rsa'
      ? {
          name: 'RSASSA-PKCS1-v1_5',
          modulusLength: opts.rsaBits ?? 2048,
          publicExponent: new Uint8Array([1, 0, 1]),
          hash: 'SHA-256',
        }
      : { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = await subtle.generateKey(algorithm, true, ['sign', 'verify']);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create(
    {
      // JSON form rather than a "CN=..." string so names need no RFC 4514 escaping.
      name: [{ [OID.commonName]: [opts.commonName] }],
      keys,
      signingAlgorithm: algorithm,
      extensions:
        opts.dnsNames.length > 0
          ? [new x509.SubjectAlternativeNameExtension(opts.dnsNames.map((value) => ({ type: 'dns', value })))]
          : [],
    },
    webcrypto,
  );
  const pkcs8 = Buffer.from(await subtle.exportKey('pkcs8', keys.privateKey));
  const spki = Buffer.from(await subtle.exportKey('spki', keys.publicKey));
  return {
    csrPem: encodePem('CERTIFICATE REQUEST', Buffer.from(csr.rawData)),
    privateKeyPem: encodePem('PRIVATE KEY', pkcs8),
    publicKeySpki: spki,
  };
}
