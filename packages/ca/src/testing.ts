/**
 * Test helpers. Exported as "@countersign/ca/testing" rather than from the
 * package index so production code cannot reach for them by accident.
 */
import { generateKeyPairSync } from 'node:crypto';
import {
  children,
  floorToSecond,
  ia5Bytes,
  implicitPrimitive,
  readTopLevel,
  sequence,
  TAG_BIT_STRING,
  TAG_SEQUENCE,
} from './der.ts';
import { OID } from './oids.ts';
import { decodeSinglePem, encodePem } from './pem.ts';
import {
  authorityKeyIdentifier,
  basicConstraints,
  buildTbs,
  commonNameOnly,
  extension,
  extKeyUsage,
  KeyUsageBit,
  keyIdentifier,
  keyUsage,
  parseSpki,
  randomSerial,
  type Signer,
  signCertificate,
  signerFor,
  subjectKeyIdentifier,
} from './x509-der.ts';

/**
 * Returns the CSR with one bit of its signature flipped. The last octet is
 * chosen because for ECDSA it is inside the integer s, so the result is still
 * well-formed DER and fails only at signature verification (what tests want).
 */
export function tamperCsrSignature(pem: string): string {
  const der = Buffer.from(decodeSinglePem(pem, 'CERTIFICATE REQUEST'));
  const top = readTopLevel(der, TAG_SEQUENCE);
  const sig = children(der, top)[2];
  if (sig === undefined || sig.tag !== TAG_BIT_STRING || sig.end - sig.contentStart < 2) {
    throw new Error('not a CSR with a signature');
  }
  der[sig.end - 1] = (der[sig.end - 1] ?? 0) ^ 0x01;
  return encodePem('CERTIFICATE REQUEST', der);
}

/** A throwaway CA for tests that need certificates of their own (mTLS clients and servers). */
export interface TestCa {
  readonly certPem: string;
  readonly keyPem: string;
  readonly name: Buffer;
  readonly keyId: Buffer;
  readonly signer: Signer;
}

export interface TestCertificate {
  readonly certPem: string;
  readonly keyPem: string;
}

const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2';
const HOUR = 3_600_000;

function ecKeyPair() {
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return {
    spki: publicKey.export({ type: 'spki', format: 'der' }),
    privateKey,
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}

/** A self-signed root, valid from an hour ago for a year unless told otherwise. */
export function createTestCa(commonName: string, validity: { notBefore?: Date; notAfter?: Date } = {}): TestCa {
  const key = ecKeyPair();
  const name = commonNameOnly(commonName);
  const keyId = keyIdentifier(parseSpki(key.spki));
  const signer = signerFor(key.privateKey);
  const der = signCertificate(
    buildTbs({
      serial: randomSerial(),
      signatureAlgorithm: signer.algorithmIdentifier,
      issuer: name,
      notBefore: floorToSecond(validity.notBefore ?? new Date(Date.now() - HOUR)),
      notAfter: floorToSecond(validity.notAfter ?? new Date(Date.now() + 365 * 24 * HOUR)),
      subject: name,
      spki: key.spki,
      extensions: [
        basicConstraints(true),
        keyUsage([KeyUsageBit.keyCertSign, KeyUsageBit.cRLSign]),
        subjectKeyIdentifier(keyId),
      ],
    }),
    signer,
  );
  return { certPem: encodePem('CERTIFICATE', der), keyPem: key.keyPem, name, keyId, signer };
}

export interface TestLeafOptions {
  readonly commonName: string;
  /** `server` gets serverAuth, `client` gets clientAuth. */
  readonly usage: 'server' | 'client';
  readonly dnsNames?: readonly string[];
  readonly uris?: readonly string[];
  readonly ipAddresses?: readonly string[];
  readonly notBefore?: Date;
  readonly notAfter?: Date;
}

/** An end-entity certificate signed by `ca` (validity defaults: an hour ago to a day ahead). */
export function issueTestCertificate(ca: TestCa, opts: TestLeafOptions): TestCertificate {
  const key = ecKeyPair();
  const names = [
    ...(opts.dnsNames ?? []).map((n) => implicitPrimitive(2, ia5Bytes(n))),
    ...(opts.uris ?? []).map((u) => implicitPrimitive(6, ia5Bytes(u))),
    ...(opts.ipAddresses ?? []).map((ip) => implicitPrimitive(7, Buffer.from(ip.split('.').map(Number)))),
  ];
  const der = signCertificate(
    buildTbs({
      serial: randomSerial(),
      signatureAlgorithm: ca.signer.algorithmIdentifier,
      issuer: ca.name,
      notBefore: floorToSecond(opts.notBefore ?? new Date(Date.now() - HOUR)),
      notAfter: floorToSecond(opts.notAfter ?? new Date(Date.now() + 24 * HOUR)),
      subject: commonNameOnly(opts.commonName),
      spki: key.spki,
      extensions: [
        basicConstraints(false),
        keyUsage([KeyUsageBit.digitalSignature]),
        extKeyUsage([opts.usage === 'server' ? OID.serverAuth : CLIENT_AUTH]),
        subjectKeyIdentifier(keyIdentifier(parseSpki(key.spki))),
        authorityKeyIdentifier(ca.keyId),
        ...(names.length > 0 ? [extension(OID.subjectAltName, false, sequence(...names))] : []),
      ],
    }),
    ca.signer,
  );
  return { certPem: encodePem('CERTIFICATE', der), keyPem: key.keyPem };
}
