/**
 * The local CA: an in-process issuing CA that signs leaf certificates.
 *
 * Issuance is the hot path, so everything that is constant per CA (issuer
 * name bytes, AKI, signature AlgorithmIdentifier, fixed extensions, the chain
 * PEM) is encoded once here, and each leaf costs a few small DER
 * concatenations, two hashes and one signature.
 */

import type { KeyObject } from 'node:crypto';
import { createHash, createPrivateKey, generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto';
import { content, floorToSecond, readTopLevel, TAG_OCTET_STRING } from './der.ts';
import { isValidDnsName, normalizeDnsName } from './dns-names.ts';
import { OID } from './oids.ts';
import { decodePemBlocks, decodeSinglePem, encodePem, PemError } from './pem.ts';
import type { IssuedCertificate, IssueRequest, IssuerConnector } from './types.ts';
import type { SpkiInfo } from './x509-der.ts';
import {
  authorityKeyIdentifier,
  basicConstraints,
  buildTbs,
  commonNameOnly,
  extKeyUsage,
  KeyUsageBit,
  keyIdentifier,
  keyUsage,
  parseSpki,
  randomSerial,
  readCertificate,
  signCertificate,
  signerFor,
  subjectAltNameDns,
  subjectKeyIdentifier,
} from './x509-der.ts';

export interface LocalCa {
  /** Self-signed root, for trust stores. */
  readonly rootPem: string;
  /** Issuing CA first, then each issuer up to and including the root. */
  readonly chainPems: readonly string[];
  issue(req: IssueRequest): IssuedCertificate;
}

/** The request cannot be issued as asked (bad name, validity, key); not a CA fault. */
export class IssueError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IssueError';
  }
}

export interface LoadLocalCaFromFilesOptions {
  /** Issuing CA certificate (normally an intermediate). */
  certPem: string;
  /** Its private key (PKCS#8, SEC1 or PKCS#1 PEM; unencrypted). */
  keyPem: string;
  /** The issuing CA's issuers in order, ending with a self-signed root. Empty if certPem is itself the root. */
  chainPems: string[];
}

const DAY_MS = 86_400_000;
const CLOCK_SKEW_MS = 60_000;
/**
 * X.520 ub-common-name: longer CNs are rejected by strict clients, so issue()
 * refuses them. Exported so request intake can reject such names up front
 * rather than after approval.
 */
export const MAX_COMMON_NAME_LENGTH = 64;

const LEAF_BASIC_CONSTRAINTS = basicConstraints(false);
const LEAF_EKU = extKeyUsage([OID.serverAuth]);
// keyEncipherment only matters for RSA key transport (TLS 1.2 RSA kx); an EC
// or Ed25519 key cannot encipher, so asserting it there would be wrong.
const KU_SIGN = keyUsage([KeyUsageBit.digitalSignature]);
const KU_SIGN_ENCIPHER = keyUsage([KeyUsageBit.digitalSignature, KeyUsageBit.keyEncipherment]);
const LEAF_KEY_ALGORITHMS = new Set<string>([OID.ecPublicKey, OID.rsaEncryption, OID.ed25519]);
const LEAF_CURVES = new Set<string>([OID.secp256r1, OID.secp384r1]);

function certsFromPem(text: string, what: string): Buffer[] {
  let blocks: ReturnType<typeof decodePemBlocks>;
  try {
    blocks = decodePemBlocks(text);
  } catch (err) {
    if (err instanceof PemError) throw new Error(`${what}: ${err.message}`);
    throw err;
  }
  const certs = blocks.filter((b) => b.label === 'CERTIFICATE').map((b) => b.der);
  if (certs.length === 0) throw new Error(`${what}: no PEM CERTIFICATE found`);
  return certs;
}

export function loadLocalCaFromFiles(opts: LoadLocalCaFromFilesOptions): LocalCa {
  let certDer: Buffer;
  try {
    certDer = decodeSinglePem(opts.certPem, 'CERTIFICATE');
  } catch (err) {
    if (err instanceof PemError) throw new Error(`issuing CA certificate: ${err.message}`);
    throw err;
  }
  const chainDers = opts.chainPems.flatMap((pem, i) => certsFromPem(pem, `CA chain entry ${i}`));
  let key: KeyObject;
  try {
    key = createPrivateKey(opts.keyPem);
  } catch (err) {
    throw new Error(`issuing CA private key could not be loaded: ${(err as Error).message}`);
  }

  // Validate the whole chain once at start-up, so a misconfigured operator CA
  // fails loudly here instead of producing leaves nobody can verify.
  const certs = [certDer, ...chainDers].map((der) => new X509Certificate(der));
  const issuing = certs[0];
  if (issuing === undefined) throw new Error('issuing CA certificate missing');
  if (!issuing.ca)
    throw new Error(`issuing CA certificate (${issuing.subject}) is not a CA (basicConstraints CA:false)`);
  if (!issuing.checkPrivateKey(key)) throw new Error('issuing CA private key does not match its certificate');
  for (let i = 0; i < certs.length; i++) {
    const cert = certs[i];
    const parent = certs[i + 1] ?? cert;
    if (cert === undefined || parent === undefined) continue;
    if (!cert.checkIssued(parent) || !cert.verify(parent.publicKey)) {
      throw new Error(
        i + 1 < certs.length
          ? `CA chain broken: "${cert.subject}" is not signed by "${parent.subject}"`
          : `CA chain must end with a self-signed root; "${cert.subject}" is not self-signed`,
      );
    }
  }

  const fields = readCertificate(certDer);
  const ku = fields.extensions.get(OID.keyUsage);
  // keyCertSign is bit 5, i.e. 0x04 in the first content octet after the unused-bits octet.
  if (ku !== undefined && ((ku.value[3] ?? 0) & 0x04) === 0) {
    throw new Error('issuing CA certificate lacks the keyCertSign key usage');
  }
  if (Date.now() >= fields.notAfter.getTime()) {
    throw new Error(`issuing CA certificate expired at ${fields.notAfter.toISOString()}`);
  }
  const skiExt = fields.extensions.get(OID.subjectKeyIdentifier);
  // AKI must equal the issuer's SKI so chain builders can match keys; compute
  // it per RFC 5280 method (1) when an operator's CA omitted the extension.
  const issuerKeyId =
    skiExt !== undefined
      ? content(skiExt.value, readTopLevel(skiExt.value, TAG_OCTET_STRING))
      : keyIdentifier(parseSpki(fields.spki));

  return new LocalCaImpl({
    signer: signerFor(key),
    issuerName: fields.subject,
    akiExtension: authorityKeyIdentifier(issuerKeyId),
    caNotAfterMs: fields.notAfter.getTime(),
    chainPems: [certDer, ...chainDers].map((der) => encodePem('CERTIFICATE', der)),
  });
}

interface LocalCaParts {
  signer: ReturnType<typeof signerFor>;
  issuerName: Buffer;
  akiExtension: Buffer;
  caNotAfterMs: number;
  chainPems: string[];
}

class LocalCaImpl implements LocalCa {
  readonly rootPem: string;
  readonly chainPems: readonly string[];
  readonly #parts: LocalCaParts;
  readonly #chainPem: string;

  constructor(parts: LocalCaParts) {
    this.#parts = parts;
    this.chainPems = Object.freeze([...parts.chainPems]);
    this.rootPem = parts.chainPems[parts.chainPems.length - 1] ?? '';
    this.#chainPem = parts.chainPems.join('');
  }

  issue(req: IssueRequest): IssuedCertificate {
    const p = this.#parts;
    const { commonName, sans } = prepareNames(req.commonName, req.dnsNames);

    let spki: SpkiInfo;
    try {
      spki = parseSpki(req.publicKeySpki);
    } catch (err) {
      throw new IssueError(`publicKeySpki is not a valid SubjectPublicKeyInfo: ${(err as Error).message}`);
    }
    // Same key policy as parseCsr, cheaply: the CA should not certify a key
    // the intake would have refused, whatever path the request took.
    if (!LEAF_KEY_ALGORITHMS.has(spki.algorithm)) {
      throw new IssueError(`unsupported public key algorithm ${spki.algorithm}`);
    }
    if (spki.algorithm === OID.ecPublicKey && !LEAF_CURVES.has(spki.curve ?? '')) {
      throw new IssueError(`unsupported elliptic curve ${String(spki.curve)}`);
    }

    const nowMs = Date.now();
    if (nowMs >= p.caNotAfterMs) throw new IssueError('issuing CA certificate has expired');
    if (!(Number.isFinite(req.validityDays) && req.validityDays > 0)) {
      throw new IssueError(`validityDays must be a positive number, got ${req.validityDays}`);
    }
    // Whole seconds, because that is all the DER time types can carry and the
    // returned dates must match what is in the certificate.
    const notBefore = floorToSecond(new Date(req.notBefore?.getTime() ?? nowMs - CLOCK_SKEW_MS));
    if (Number.isNaN(notBefore.getTime())) throw new IssueError('notBefore is not a valid date');
    // Never outlive the issuing CA: a leaf valid past its issuer is unverifiable
    // for the tail of its life, so clamp (the caller sees the real notAfter).
    const notAfter = new Date(
      Math.min(notBefore.getTime() + Math.floor((req.validityDays * DAY_MS) / 1000) * 1000, p.caNotAfterMs),
    );
    if (notAfter.getTime() <= notBefore.getTime()) {
      throw new IssueError('validity period is empty (issuing CA expires before notBefore)');
    }

    const serial = randomSerial();
    const tbs = buildTbs({
      serial,
      signatureAlgorithm: p.signer.algorithmIdentifier,
      issuer: p.issuerName,
      notBefore,
      notAfter,
      subject: commonNameOnly(commonName),
      spki: req.publicKeySpki,
      extensions: [
        LEAF_BASIC_CONSTRAINTS,
        spki.algorithm === OID.rsaEncryption ? KU_SIGN_ENCIPHER : KU_SIGN,
        LEAF_EKU,
        subjectKeyIdentifier(keyIdentifier(spki)),
        p.akiExtension,
        subjectAltNameDns(sans),
      ],
    });
    const leafDer = signCertificate(tbs, p.signer);
    return {
      serialHex: serial.toString('hex'),
      fingerprintSha256: createHash('sha256').update(leafDer).digest('hex'),
      notBefore,
      notAfter,
      leafPem: encodePem('CERTIFICATE', leafDer),
      chainPem: this.#chainPem,
      leafDer,
    };
  }
}

/**
 * The CA re-validates names even though the policy layer already did: it is
 * the last point before something is signed, and an invalid name would make
 * an unusable (or, with odd bytes, misleading) certificate.
 */
function prepareNames(rawCommonName: string, rawDnsNames: readonly string[]): { commonName: string; sans: string[] } {
  const commonName = normalizeDnsName(rawCommonName);
  if (!isValidDnsName(commonName)) throw new IssueError(`commonName "${rawCommonName}" is not a valid DNS name`);
  if (commonName.length > MAX_COMMON_NAME_LENGTH) {
    throw new IssueError(`commonName is longer than ${MAX_COMMON_NAME_LENGTH} characters (X.520 ub-common-name)`);
  }
  // The CN goes first in the SAN list: modern clients only look at SANs.
  const sans = [commonName];
  const seen = new Set(sans);
  for (const raw of rawDnsNames) {
    const name = normalizeDnsName(raw);
    if (!isValidDnsName(name)) throw new IssueError(`"${raw}" is not a valid DNS name`);
    if (!seen.has(name)) {
      seen.add(name);
      sans.push(name);
    }
  }
  return { commonName, sans };
}

export function localConnector(ca: LocalCa): IssuerConnector {
  return {
    id: 'local',
    // async so a synchronous throw becomes a rejected promise, as the interface promises.
    issue: async (req) => ca.issue(req),
  };
}

// ---------------------------------------------------------------------------
// CA creation
// ---------------------------------------------------------------------------

export interface CaMaterial {
  rootCertPem: string;
  rootKeyPem: string;
  intermediateCertPem: string;
  intermediateKeyPem: string;
}

/**
 * Generates a fresh root (10 years) and intermediate (5 years, pathLen 0).
 * The CNs carry a random suffix so that re-creating a CA never yields two
 * different roots with the same name in someone's trust store.
 */
export function createCaMaterial(opts: { commonNamePrefix?: string; now?: Date } = {}): CaMaterial {
  const prefix = opts.commonNamePrefix ?? 'Countersign Local';
  const suffix = randomBytes(4).toString('hex');
  // Backdated an hour to tolerate skew between this host and relying parties.
  const notBefore = floorToSecond(new Date((opts.now ?? new Date()).getTime() - 3_600_000));
  const addYears = (years: number): Date => {
    const d = new Date(notBefore);
    d.setUTCFullYear(d.getUTCFullYear() + years);
    return d;
  };

  const root = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const rootSpki = root.publicKey.export({ type: 'spki', format: 'der' });
  const rootKeyId = keyIdentifier(parseSpki(rootSpki));
  const rootName = commonNameOnly(`${prefix} Root CA ${suffix}`);
  const rootSigner = signerFor(root.privateKey);
  const rootDer = signCertificate(
    buildTbs({
      serial: randomSerial(),
      signatureAlgorithm: rootSigner.algorithmIdentifier,
      issuer: rootName,
      notBefore,
      notAfter: addYears(10),
      subject: rootName,
      spki: rootSpki,
      extensions: [
        basicConstraints(true),
        keyUsage([KeyUsageBit.keyCertSign, KeyUsageBit.cRLSign]),
        subjectKeyIdentifier(rootKeyId),
      ],
    }),
    rootSigner,
  );

  const intermediate = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const intSpki = intermediate.publicKey.export({ type: 'spki', format: 'der' });
  const intDer = signCertificate(
    buildTbs({
      serial: randomSerial(),
      signatureAlgorithm: rootSigner.algorithmIdentifier,
      issuer: rootName,
      notBefore,
      notAfter: addYears(5),
      subject: commonNameOnly(`${prefix} Intermediate CA ${suffix}`),
      spki: intSpki,
      extensions: [
        // pathLen 0: this CA may only issue end-entity certificates.
        basicConstraints(true, 0),
        keyUsage([KeyUsageBit.keyCertSign, KeyUsageBit.cRLSign]),
        subjectKeyIdentifier(keyIdentifier(parseSpki(intSpki))),
        authorityKeyIdentifier(rootKeyId),
      ],
    }),
    rootSigner,
  );

  return {
    rootCertPem: encodePem('CERTIFICATE', rootDer),
    rootKeyPem: root.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    intermediateCertPem: encodePem('CERTIFICATE', intDer),
    intermediateKeyPem: intermediate.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
  };
}
