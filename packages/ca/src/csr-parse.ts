/**
 * PKCS#10 (RFC 2986) parsing and checking.
 *
 * CSRs are untrusted input, so this parser is strict DER, bounded in size, and
 * checks the self-signature with Node's crypto before anything is extracted
 * from the request. It is synchronous so callers can validate inside request
 * handlers without WebCrypto's promise overhead.
 */

import type { KeyObject } from 'node:crypto';
import { createPublicKey, verify as cryptoVerify } from 'node:crypto';
import type { DerElement } from './der.ts';
import {
  children,
  content,
  DerError,
  readOid,
  readTopLevel,
  TAG_BIT_STRING,
  TAG_BMP_STRING,
  TAG_IA5_STRING,
  TAG_INTEGER,
  TAG_PRINTABLE_STRING,
  TAG_SEQUENCE,
  TAG_SET,
  TAG_T61_STRING,
  TAG_UTF8_STRING,
  whole,
} from './der.ts';
import { normalizeDnsName } from './dns-names.ts';
import { OID } from './oids.ts';
import { decodePemBlocks, PemError } from './pem.ts';
import { parseSpki } from './x509-der.ts';

export type KeyAlgorithm = 'ecdsa-p256' | 'ecdsa-p384' | 'rsa' | 'ed25519';

export interface ParsedCsr {
  /** Subject CN, normalised like a DNS name (lower-case), or null when absent. */
  commonName: string | null;
  /** dNSName SANs, normalised and de-duplicated, in request order. */
  dnsNames: string[];
  /** DER SubjectPublicKeyInfo exactly as it appears in the CSR. */
  publicKeySpki: Buffer;
  keyAlgorithm: KeyAlgorithm;
  /** RSA modulus size or EC/EdDSA field size. */
  keyBits?: number;
}

/** Machine-readable cause, for API error codes and metrics; `message` is for humans. */
export type CsrErrorReason =
  | 'not-pem'
  | 'not-csr'
  | 'too-large'
  | 'malformed'
  | 'unsupported-key'
  | 'unsupported-signature-algorithm'
  | 'bad-signature'
  | 'unsupported-name';

export class CsrError extends Error {
  readonly reason: CsrErrorReason;

  constructor(reason: CsrErrorReason, message: string) {
    super(message);
    this.name = 'CsrError';
    this.reason = reason;
  }
}

// Real CSRs are a few KiB at most (an RSA-16384 key is ~2 KiB of DER); the cap
// keeps a hostile request from costing more than a normal one.
const MAX_PEM_LENGTH = 64 * 1024;
const MIN_RSA_BITS = 2048;
// OpenSSL refuses to verify with larger moduli anyway; say so clearly instead.
const MAX_RSA_BITS = 16384;
// CA/B Baseline Requirements 6.1.6 recommend 2^16+1 <= e <= 2^256-1. A larger
// exponent makes checking the self-signature cost what a private-key operation
// does, before the signature is known to be bad: OpenSSL takes exponents as
// large as the modulus up to 3072 bits (5.6 ms per CSR against 0.05 ms for
// 65537; csr-hostile.test.ts).
const MAX_RSA_EXPONENT = (1n << 256n) - 1n;

const CSR_LABELS = new Set(['CERTIFICATE REQUEST', 'NEW CERTIFICATE REQUEST']);

export function parseCsr(pem: string): ParsedCsr {
  if (typeof pem !== 'string') throw new CsrError('not-pem', 'CSR must be a PEM string');
  if (pem.length > MAX_PEM_LENGTH) {
    throw new CsrError('too-large', `CSR is larger than ${MAX_PEM_LENGTH} characters`);
  }
  let blocks: ReturnType<typeof decodePemBlocks>;
  try {
    blocks = decodePemBlocks(pem);
  } catch (err) {
    if (err instanceof PemError) throw new CsrError('not-pem', `CSR is not valid PEM: ${err.message}`);
    throw err;
  }
  if (blocks.length === 0) {
    throw new CsrError('not-pem', 'CSR is not PEM-encoded (expected -----BEGIN CERTIFICATE REQUEST-----)');
  }
  const csrs = blocks.filter((b) => CSR_LABELS.has(b.label));
  const first = csrs[0];
  if (first === undefined) {
    const found = [...new Set(blocks.map((b) => b.label))].join(', ');
    throw new CsrError('not-csr', `expected a PEM CERTIFICATE REQUEST, found ${found}`);
  }
  if (csrs.length > 1) {
    throw new CsrError('not-csr', `expected one CERTIFICATE REQUEST, found ${csrs.length}`);
  }
  return parseCsrDer(first.der);
}

export function parseCsrDer(der: Uint8Array): ParsedCsr {
  try {
    return parseChecked(der);
  } catch (err) {
    if (err instanceof DerError) throw new CsrError('malformed', `CSR is not valid DER: ${err.message}`);
    throw err;
  }
}

function malformed(detail: string): CsrError {
  return new CsrError('malformed', `CSR is malformed: ${detail}`);
}

function parseChecked(der: Uint8Array): ParsedCsr {
  const top = readTopLevel(der, TAG_SEQUENCE);
  const [infoEl, sigAlgEl, sigEl, extra] = children(der, top);
  if (infoEl?.tag !== TAG_SEQUENCE || sigAlgEl?.tag !== TAG_SEQUENCE || sigEl?.tag !== TAG_BIT_STRING) {
    throw malformed('expected CertificationRequest ::= SEQUENCE { info, signatureAlgorithm, signature }');
  }
  if (extra !== undefined) throw malformed('unexpected trailing element');

  const [versionEl, subjectEl, spkiEl, attrsEl, extraInfo] = children(der, infoEl);
  if (versionEl?.tag !== TAG_INTEGER || subjectEl?.tag !== TAG_SEQUENCE || spkiEl?.tag !== TAG_SEQUENCE) {
    throw malformed('expected CertificationRequestInfo ::= SEQUENCE { version, subject, subjectPKInfo, attributes }');
  }
  const version = content(der, versionEl);
  if (version.length !== 1 || version[0] !== 0) throw malformed('unsupported CSR version');
  // attributes is [0] IMPLICIT SET OF; tolerated when absent since some encoders drop an empty set.
  if (attrsEl !== undefined && attrsEl.tag !== 0xa0) throw malformed('expected [0] attributes');
  if (extraInfo !== undefined) throw malformed('unexpected element in CertificationRequestInfo');

  // Copy: the SPKI outlives this call and should not pin the caller's buffer.
  const publicKeySpki = Buffer.from(whole(der, spkiEl));
  parseSpki(publicKeySpki); // the CA re-parses it structurally at issuance; fail early here
  const { key, keyAlgorithm, keyBits } = checkKey(publicKeySpki);

  verifySignature(der, infoEl, sigAlgEl, sigEl, key);

  const commonName = readCommonName(der, subjectEl);
  const dnsNames = attrsEl === undefined ? [] : readDnsNames(der, attrsEl);
  return { commonName, dnsNames, publicKeySpki, keyAlgorithm, keyBits };
}

function checkKey(spki: Buffer): { key: KeyObject; keyAlgorithm: KeyAlgorithm; keyBits: number } {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch {
    throw new CsrError('unsupported-key', 'CSR public key could not be parsed or uses an unsupported algorithm');
  }
  const accepted = 'accepted: ECDSA P-256/P-384, RSA >= 2048 bits, Ed25519';
  const details = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case 'ec':
      if (details.namedCurve === 'prime256v1') return { key, keyAlgorithm: 'ecdsa-p256', keyBits: 256 };
      if (details.namedCurve === 'secp384r1') return { key, keyAlgorithm: 'ecdsa-p384', keyBits: 384 };
      throw new CsrError('unsupported-key', `unsupported elliptic curve ${String(details.namedCurve)}; ${accepted}`);
    case 'rsa': {
      const bits = details.modulusLength ?? 0;
      if (bits < MIN_RSA_BITS) {
        throw new CsrError('unsupported-key', `RSA key is ${bits} bits; at least ${MIN_RSA_BITS} bits are required`);
      }
      if (bits > MAX_RSA_BITS) {
        throw new CsrError('unsupported-key', `RSA key is ${bits} bits; at most ${MAX_RSA_BITS} bits are supported`);
      }
      // CA/B Baseline Requirements 6.1.6: the public exponent must be odd and at least 3.
      const e = details.publicExponent ?? 0n;
      if (e < 3n || e % 2n === 0n) throw new CsrError('unsupported-key', 'RSA public exponent must be odd and >= 3');
      if (e > MAX_RSA_EXPONENT) {
        throw new CsrError('unsupported-key', 'RSA public exponent must be at most 2^256 - 1 (65537 is usual)');
      }
      return { key, keyAlgorithm: 'rsa', keyBits: bits };
    }
    case 'ed25519':
      return { key, keyAlgorithm: 'ed25519', keyBits: 256 };
    default:
      throw new CsrError('unsupported-key', `unsupported key type ${String(key.asymmetricKeyType)}; ${accepted}`);
  }
}

interface SignatureAlgorithm {
  readonly hash: string | null;
  readonly keyType: 'ec' | 'rsa' | 'ed25519';
}

const SIGNATURE_ALGORITHMS: ReadonlyMap<string, SignatureAlgorithm> = new Map([
  [OID.ecdsaWithSha256, { hash: 'sha256', keyType: 'ec' }],
  [OID.ecdsaWithSha384, { hash: 'sha384', keyType: 'ec' }],
  [OID.ecdsaWithSha512, { hash: 'sha512', keyType: 'ec' }],
  [OID.sha256WithRsa, { hash: 'sha256', keyType: 'rsa' }],
  [OID.sha384WithRsa, { hash: 'sha384', keyType: 'rsa' }],
  [OID.sha512WithRsa, { hash: 'sha512', keyType: 'rsa' }],
  [OID.ed25519, { hash: null, keyType: 'ed25519' }],
]);

function verifySignature(
  der: Uint8Array,
  infoEl: DerElement,
  sigAlgEl: DerElement,
  sigEl: DerElement,
  key: KeyObject,
): void {
  const [oidEl] = children(der, sigAlgEl);
  if (oidEl === undefined) throw malformed('empty signatureAlgorithm');
  const algOid = readOid(der, oidEl);
  const alg = SIGNATURE_ALGORITHMS.get(algOid);
  if (alg === undefined) {
    const why =
      algOid === OID.sha1WithRsa || algOid === OID.ecdsaWithSha1
        ? 'SHA-1 signatures are not accepted'
        : algOid === OID.rsassaPss
          ? 'RSASSA-PSS signatures are not supported; use sha256WithRSAEncryption'
          : `signature algorithm ${algOid} is not supported`;
    throw new CsrError('unsupported-signature-algorithm', `CSR ${why}`);
  }
  if (alg.keyType !== key.asymmetricKeyType) {
    throw new CsrError(
      'unsupported-signature-algorithm',
      `CSR signature algorithm does not match its ${String(key.asymmetricKeyType)} key`,
    );
  }
  const bits = content(der, sigEl);
  if (bits.length < 2 || bits[0] !== 0) throw new CsrError('bad-signature', 'CSR signature does not verify');
  let ok: boolean;
  try {
    // The signature covers the exact DER of CertificationRequestInfo, so verify
    // over the received bytes rather than a re-encoding.
    ok = cryptoVerify(alg.hash, whole(der, infoEl), key, bits.subarray(1));
  } catch {
    ok = false; // e.g. an ECDSA signature that is not a valid DER Ecdsa-Sig-Value
  }
  if (!ok) throw new CsrError('bad-signature', 'CSR signature does not verify');
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const utf16be = new TextDecoder('utf-16be', { fatal: true });

function decodeDirectoryString(der: Uint8Array, el: DerElement): string {
  const bytes = content(der, el);
  try {
    switch (el.tag) {
      case TAG_UTF8_STRING:
        return utf8.decode(bytes);
      case TAG_PRINTABLE_STRING:
      case TAG_IA5_STRING:
      case TAG_T61_STRING: // in practice used for Latin-1
        return bytes.toString('latin1');
      case TAG_BMP_STRING:
        return utf16be.decode(bytes);
      default:
        throw new CsrError('unsupported-name', `unsupported string type 0x${el.tag.toString(16)} in subject`);
    }
  } catch (err) {
    if (err instanceof CsrError) throw err;
    throw malformed('subject contains an invalid string');
  }
}

function readCommonName(der: Uint8Array, subjectEl: DerElement): string | null {
  let cn: string | null = null;
  for (const rdn of children(der, subjectEl)) {
    if (rdn.tag !== TAG_SET) throw malformed('subject RDN is not a SET');
    for (const atv of children(der, rdn)) {
      const [typeEl, valueEl, extra] = children(der, atv);
      if (atv.tag !== TAG_SEQUENCE || typeEl === undefined || valueEl === undefined || extra !== undefined) {
        throw malformed('subject attribute is not SEQUENCE { type, value }');
      }
      if (readOid(der, typeEl) !== OID.commonName) continue;
      // Which of several CNs a client would check is ambiguous; refuse instead of guessing.
      if (cn !== null) throw new CsrError('unsupported-name', 'CSR subject has more than one common name');
      cn = decodeDirectoryString(der, valueEl);
    }
  }
  if (cn === null) return null;
  const normalized = normalizeDnsName(cn);
  return normalized === '' ? null : normalized;
}

const SAN_KINDS: ReadonlyMap<number, string> = new Map([
  [0xa0, 'otherName'],
  [0x81, 'email address'],
  [0xa3, 'x400Address'],
  [0xa4, 'directoryName'],
  [0xa5, 'ediPartyName'],
  [0x86, 'URI'],
  [0x87, 'IP address'],
  [0x88, 'registeredID'],
]);

function readDnsNames(der: Uint8Array, attrsEl: DerElement): string[] {
  const names: string[] = [];
  let sawExtensionRequest = false;
  let sawSan = false;
  for (const attr of children(der, attrsEl)) {
    const [typeEl, valuesEl] = children(der, attr);
    if (attr.tag !== TAG_SEQUENCE || typeEl === undefined || valuesEl?.tag !== TAG_SET) {
      throw malformed('attribute is not SEQUENCE { type, SET OF value }');
    }
    // Other attributes (challengePassword, etc.) carry nothing the CA uses.
    if (readOid(der, typeEl) !== OID.extensionRequest) continue;
    if (sawExtensionRequest) throw malformed('more than one extensionRequest attribute');
    sawExtensionRequest = true;
    for (const exts of children(der, valuesEl)) {
      if (exts.tag !== TAG_SEQUENCE) throw malformed('extensionRequest is not a SEQUENCE');
      for (const ext of children(der, exts)) {
        const parts = children(der, ext);
        const idEl = parts[0];
        const valueEl = parts[parts.length - 1];
        if (ext.tag !== TAG_SEQUENCE || idEl === undefined || valueEl === undefined || parts.length > 3) {
          throw malformed('malformed requested extension');
        }
        // Requested extensions other than SAN are ignored: the CA decides key
        // usage, basic constraints, etc. itself.
        if (readOid(der, idEl) !== OID.subjectAltName) continue;
        if (sawSan) throw malformed('duplicate subjectAltName extension');
        sawSan = true;
        const value = content(der, valueEl);
        const generalNames = readTopLevel(value, TAG_SEQUENCE);
        for (const gn of children(value, generalNames)) {
          if (gn.tag !== 0x82) {
            const kind = SAN_KINDS.get(gn.tag) ?? `tag 0x${gn.tag.toString(16)}`;
            throw new CsrError('unsupported-name', `only DNS subject alternative names are supported (found ${kind})`);
          }
          names.push(normalizeDnsName(content(value, gn).toString('latin1')));
        }
      }
    }
  }
  return [...new Set(names)];
}
