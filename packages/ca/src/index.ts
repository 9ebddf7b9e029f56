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
export type {
  DevCaDirs,
  InitOfflineCaOptions,
  IssuingCaSource,
  LoadOrCreateLocalCaOptions,
  OfflineCaResult,
  RotateIntermediateOptions,
} from './local-ca-store.ts';
export {
  CA_FILES,
  CA_VARIABLES,
  ensureDevCa,
  ISSUER_CA_FILES,
  IssuingCaError,
  initOfflineCa,
  loadIssuingCa,
  loadOrCreateLocalCa,
  rotateIntermediate,
} from './local-ca-store.ts';
export type { IssuedCertificate, IssueRequest, IssuerConnector } from './types.ts';
