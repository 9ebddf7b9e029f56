// CSR generation (for the CLI and tests) is its own entry point, '@countersign/ca/csr-generate':
// it needs @peculiar/x509 and reflect-metadata, which the api and issuer would otherwise load for nothing.
export type { CsrErrorReason, KeyAlgorithm, ParsedCsr } from './csr-parse.ts';
export { CsrError, parseCsr, parseCsrDer } from './csr-parse.ts';
export { domainAllowed, isValidDnsName, isWildcardName, normalizeDnsName } from './dns-names.ts';
export type { CaMaterial, LoadLocalCaFromFilesOptions, LocalCa } from './local-ca.ts';
export {
  createCaMaterial,
  IssueError,
  loadLocalCaFromFiles,
  localConnector,
  MAX_COMMON_NAME_LENGTH,
} from './local-ca.ts';
export type { LoadOrCreateLocalCaOptions } from './local-ca-store.ts';
export { CA_FILES, loadOrCreateLocalCa } from './local-ca-store.ts';
export type { IssuedCertificate, IssueRequest, IssuerConnector } from './types.ts';
