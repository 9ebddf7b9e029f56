/** Shapes shared by the local CA and any other issuer connector. */

export interface IssueRequest {
  /** Subject CN; also placed in the SAN list if missing from dnsNames. */
  commonName: string;
  dnsNames: string[];
  /** DER SubjectPublicKeyInfo, normally ParsedCsr.publicKeySpki. */
  publicKeySpki: Buffer;
  validityDays: number;
  /** Defaults to now minus 60 s, so clients with a slightly slow clock accept the certificate. */
  notBefore?: Date;
}

export interface IssuedCertificate {
  /** Lower-case hex of the serial's DER INTEGER content octets (always 32 hex digits for this CA). */
  serialHex: string;
  /** Lower-case hex SHA-256 of the leaf DER. */
  fingerprintSha256: string;
  notBefore: Date;
  notAfter: Date;
  leafPem: string;
  /** Issuing CA PEM followed by the rest of the chain up to the root; the leaf is not included. */
  chainPem: string;
  leafDer: Buffer;
}

/**
 * What the issuer service talks to. The local CA is one implementation;
 * external CAs (ACME, cloud PCAs) can implement the same contract.
 */
export interface IssuerConnector {
  readonly id: string;
  issue(req: IssueRequest): Promise<IssuedCertificate>;
}
