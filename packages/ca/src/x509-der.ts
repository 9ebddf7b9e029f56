/**
 * X.509 building blocks on top of der.ts: names, extensions, TBSCertificate,
 * signing, and a minimal certificate reader for the CA's own certificates.
 */

import type { KeyObject } from 'node:crypto';
import { createHash, sign as cryptoSign, randomFillSync } from 'node:crypto';
import {
  bitString,
  boolean,
  children,
  constructed,
  content,
  DerError,
  expectElement,
  explicit,
  ia5Bytes,
  implicitPrimitive,
  integerFromUnsigned,
  namedBits,
  nullValue,
  octetString,
  oid,
  readOid,
  readTime,
  readTopLevel,
  sequence,
  setOf,
  smallInteger,
  TAG_BIT_STRING,
  TAG_BOOLEAN,
  TAG_INTEGER,
  TAG_OCTET_STRING,
  TAG_OID,
  TAG_SEQUENCE,
  time,
  utf8String,
  whole,
} from './der.ts';
import { OID } from './oids.ts';

// ---------------------------------------------------------------------------
// Keys and signing
// ---------------------------------------------------------------------------

export interface SpkiInfo {
  /** SubjectPublicKeyInfo algorithm OID. */
  readonly algorithm: string;
  /** Named curve OID for EC keys, otherwise null. */
  readonly curve: string | null;
  /** Contents of the subjectPublicKey BIT STRING (without the unused-bits octet). */
  readonly subjectPublicKey: Buffer;
}

/**
 * Structural parse of a SubjectPublicKeyInfo. Deliberately does not call
 * crypto.createPublicKey: that costs ~150 µs, several times an ECDSA
 * signature, and CSR parsing has already validated the key properly.
 */
export function parseSpki(spki: Uint8Array): SpkiInfo {
  const top = readTopLevel(spki, TAG_SEQUENCE);
  const [algEl, keyEl, extra] = children(spki, top);
  if (algEl === undefined || keyEl === undefined || extra !== undefined) {
    throw new DerError('SubjectPublicKeyInfo must have two elements');
  }
  if (algEl.tag !== TAG_SEQUENCE || keyEl.tag !== TAG_BIT_STRING) {
    throw new DerError('malformed SubjectPublicKeyInfo');
  }
  const [oidEl, paramsEl] = children(spki, algEl);
  if (oidEl === undefined) throw new DerError('AlgorithmIdentifier without OID');
  const algorithm = readOid(spki, oidEl);
  const curve = paramsEl !== undefined && paramsEl.tag === TAG_OID ? readOid(spki, paramsEl) : null;
  const bits = content(spki, keyEl);
  if (bits.length < 2 || bits[0] !== 0) throw new DerError('public key BIT STRING must be whole octets');
  return { algorithm, curve, subjectPublicKey: bits.subarray(1) };
}

/** RFC 5280 4.2.1.2 method (1): SHA-1 of the subjectPublicKey bits. */
export function keyIdentifier(info: SpkiInfo): Buffer {
  return createHash('sha1').update(info.subjectPublicKey).digest();
}

export interface Signer {
  /** DER AlgorithmIdentifier, used both inside the TBS and after it. */
  readonly algorithmIdentifier: Buffer;
  sign(tbs: Uint8Array): Buffer;
}

/**
 * Picks the signature algorithm matching the CA key. ECDSA output from
 * crypto.sign is already the DER Ecdsa-Sig-Value that X.509 expects.
 */
export function signerFor(key: KeyObject): Signer {
  if (key.type !== 'private') throw new TypeError('CA signing key must be a private key');
  let hash: string | null;
  let algorithmIdentifier: Buffer;
  switch (key.asymmetricKeyType) {
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      // Hash strength matched to curve size, as RFC 5480 section 4 recommends.
      if (curve === 'prime256v1') {
        hash = 'sha256';
        algorithmIdentifier = sequence(oid(OID.ecdsaWithSha256));
      } else if (curve === 'secp384r1') {
        hash = 'sha384';
        algorithmIdentifier = sequence(oid(OID.ecdsaWithSha384));
      } else if (curve === 'secp521r1') {
        hash = 'sha512';
        algorithmIdentifier = sequence(oid(OID.ecdsaWithSha512));
      } else {
        throw new TypeError(`unsupported CA curve ${String(curve)}`);
      }
      break;
    }
    case 'rsa':
      hash = 'sha256';
      // RFC 4055: the PKCS#1 v1.5 algorithms carry explicit NULL parameters.
      algorithmIdentifier = sequence(oid(OID.sha256WithRsa), nullValue());
      break;
    case 'ed25519':
      hash = null;
      algorithmIdentifier = sequence(oid(OID.ed25519));
      break;
    default:
      throw new TypeError(`unsupported CA key type ${String(key.asymmetricKeyType)}`);
  }
  return { algorithmIdentifier, sign: (tbs) => cryptoSign(hash, tbs, key) };
}

// ---------------------------------------------------------------------------
// Serial numbers
// ---------------------------------------------------------------------------

// randomFillSync per certificate is a syscall-sized cost; drawing from a pool
// amortises it. The pool never leaves this module and bytes are not reused.
const SERIAL_LENGTH = 16;
const pool = Buffer.allocUnsafe(SERIAL_LENGTH * 256);
let poolPos = pool.length;

/**
 * 16 random octets usable as DER INTEGER content as-is: the top bit is cleared
 * so the value is positive, and a zero first octet is redrawn so the encoding
 * is minimal and always exactly 16 octets (RFC 5280 allows up to 20). That
 * leaves ~127 bits of entropy, well above the 64 the CA/B Forum requires.
 */
export function randomSerial(): Buffer {
  for (;;) {
    if (poolPos + SERIAL_LENGTH > pool.length) {
      randomFillSync(pool);
      poolPos = 0;
    }
    const serial = Buffer.from(pool.subarray(poolPos, poolPos + SERIAL_LENGTH));
    poolPos += SERIAL_LENGTH;
    serial[0] = (serial[0] ?? 0) & 0x7f;
    if (serial[0] !== 0) return serial;
  }
}

// ---------------------------------------------------------------------------
// Names and extensions
// ---------------------------------------------------------------------------

const CN_OID = oid(OID.commonName);

/** Name consisting of a single CN RDN. UTF8String because "*" is not PrintableString. */
export function commonNameOnly(cn: string): Buffer {
  return sequence(setOf(sequence(CN_OID, utf8String(cn))));
}

export function extension(extnId: string, critical: boolean, value: Uint8Array): Buffer {
  // DER omits DEFAULT values, so a non-critical extension has no BOOLEAN at all.
  return critical
    ? sequence(oid(extnId), boolean(true), octetString(value))
    : sequence(oid(extnId), octetString(value));
}

export function basicConstraints(ca: boolean, pathLen?: number): Buffer {
  const parts: Buffer[] = [];
  if (ca) parts.push(boolean(true));
  if (ca && pathLen !== undefined) parts.push(smallInteger(pathLen));
  return extension(OID.basicConstraints, true, sequence(...parts));
}

export const KeyUsageBit = {
  digitalSignature: 0,
  keyEncipherment: 2,
  keyCertSign: 5,
  cRLSign: 6,
} as const;

export function keyUsage(bits: readonly number[]): Buffer {
  return extension(OID.keyUsage, true, namedBits(bits));
}

export function extKeyUsage(purposes: readonly string[]): Buffer {
  return extension(OID.extKeyUsage, false, sequence(...purposes.map((p) => oid(p))));
}

export function subjectKeyIdentifier(id: Uint8Array): Buffer {
  return extension(OID.subjectKeyIdentifier, false, octetString(id));
}

export function authorityKeyIdentifier(id: Uint8Array): Buffer {
  // keyIdentifier [0] IMPLICIT KeyIdentifier (an OCTET STRING).
  return extension(OID.authorityKeyIdentifier, false, sequence(implicitPrimitive(0, id)));
}

const DNS_NAME_TAG = 2;

export function subjectAltNameDns(names: readonly string[]): Buffer {
  const generalNames = names.map((n) => implicitPrimitive(DNS_NAME_TAG, ia5Bytes(n)));
  // Non-critical because the subject is never empty (RFC 5280 4.2.1.6).
  return extension(OID.subjectAltName, false, sequence(...generalNames));
}

// ---------------------------------------------------------------------------
// TBSCertificate and Certificate
// ---------------------------------------------------------------------------

const VERSION_V3 = explicit(0, smallInteger(2));

export interface TbsFields {
  /** Serial as unsigned magnitude octets. */
  readonly serial: Uint8Array;
  readonly signatureAlgorithm: Uint8Array;
  /** Encoded issuer Name, byte-identical to the issuer certificate's subject. */
  readonly issuer: Uint8Array;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly subject: Uint8Array;
  readonly spki: Uint8Array;
  readonly extensions: readonly Uint8Array[];
}

export function buildTbs(f: TbsFields): Buffer {
  return sequence(
    VERSION_V3,
    integerFromUnsigned(f.serial),
    f.signatureAlgorithm,
    f.issuer,
    sequence(time(f.notBefore), time(f.notAfter)),
    f.subject,
    f.spki,
    explicit(3, constructed(TAG_SEQUENCE, f.extensions)),
  );
}

export function signCertificate(tbs: Buffer, signer: Signer): Buffer {
  return sequence(tbs, signer.algorithmIdentifier, bitString(signer.sign(tbs)));
}

// ---------------------------------------------------------------------------
// Reading certificates (CA certificates only; not for untrusted input at scale)
// ---------------------------------------------------------------------------

export interface CertificateFields {
  readonly serial: Buffer;
  readonly issuer: Buffer;
  readonly subject: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly spki: Buffer;
  readonly extensions: ReadonlyMap<string, { critical: boolean; value: Buffer }>;
}

export function readCertificate(der: Uint8Array): CertificateFields {
  const cert = readTopLevel(der, TAG_SEQUENCE);
  const [tbsEl] = children(der, cert);
  if (tbsEl === undefined || tbsEl.tag !== TAG_SEQUENCE) throw new DerError('certificate without TBS');
  const fields = children(der, tbsEl);
  let i = 0;
  if (fields[0]?.tag === 0xa0) i++; // explicit version
  const serialEl = fields[i++];
  const sigAlgEl = fields[i++];
  const issuerEl = fields[i++];
  const validityEl = fields[i++];
  const subjectEl = fields[i++];
  const spkiEl = fields[i++];
  if (
    serialEl?.tag !== TAG_INTEGER ||
    sigAlgEl?.tag !== TAG_SEQUENCE ||
    issuerEl?.tag !== TAG_SEQUENCE ||
    validityEl?.tag !== TAG_SEQUENCE ||
    subjectEl?.tag !== TAG_SEQUENCE ||
    spkiEl?.tag !== TAG_SEQUENCE
  ) {
    throw new DerError('malformed TBSCertificate');
  }
  const [nbEl, naEl] = children(der, validityEl);
  if (nbEl === undefined || naEl === undefined) throw new DerError('malformed validity');
  const extensions = new Map<string, { critical: boolean; value: Buffer }>();
  for (const f of fields.slice(i)) {
    if (f.tag !== 0xa3) continue; // skip issuerUniqueID / subjectUniqueID
    const extsEl = expectElement(der, f.contentStart, TAG_SEQUENCE, f.end);
    for (const extEl of children(der, extsEl)) {
      const parts = children(der, extEl);
      const idEl = parts[0];
      const valueEl = parts[parts.length - 1];
      if (idEl === undefined || valueEl?.tag !== TAG_OCTET_STRING) throw new DerError('malformed extension');
      const critEl = parts.length === 3 ? parts[1] : undefined;
      const critical = critEl?.tag === TAG_BOOLEAN && content(der, critEl)[0] === 0xff;
      extensions.set(readOid(der, idEl), { critical, value: content(der, valueEl) });
    }
  }
  return {
    serial: content(der, serialEl),
    issuer: whole(der, issuerEl),
    subject: whole(der, subjectEl),
    notBefore: readTime(der, nbEl),
    notAfter: readTime(der, naEl),
    spki: whole(der, spkiEl),
    extensions,
  };
}
