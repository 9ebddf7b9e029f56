/**
 * Every API operation the client calls, as data. The client builds each
 * request from this table only, so the test that holds it against the served
 * OpenAPI document (both ways: nothing called that the server lacks, nothing
 * served that the client lacks) covers the whole client.
 */
export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface RouteSpec {
  readonly method: HttpMethod;
  /** OpenAPI path template, `{id}` for path parameters. */
  readonly path: string;
  /**
   * Routes a server may not offer yet (the audit endpoints came after the
   * first api release); callers see ApiError.routeMissing and degrade.
   */
  readonly optional?: boolean;
}

export const ROUTES = {
  me: { method: 'GET', path: '/api/v1/me' },
  getOrg: { method: 'GET', path: '/api/v1/org' },

  listConfigRequests: { method: 'GET', path: '/api/v1/configuration-requests' },
  getConfigRequest: { method: 'GET', path: '/api/v1/configuration-requests/{id}' },
  approveConfigRequest: { method: 'POST', path: '/api/v1/configuration-requests/{id}/approve' },
  rejectConfigRequest: { method: 'POST', path: '/api/v1/configuration-requests/{id}/reject' },
  cancelConfigRequest: { method: 'POST', path: '/api/v1/configuration-requests/{id}/cancel' },

  listProfiles: { method: 'GET', path: '/api/v1/profiles' },
  createProfile: { method: 'POST', path: '/api/v1/profiles' },
  getProfile: { method: 'GET', path: '/api/v1/profiles/{id}' },
  updateProfile: { method: 'PUT', path: '/api/v1/profiles/{id}' },

  listPrincipals: { method: 'GET', path: '/api/v1/principals' },
  createPrincipal: { method: 'POST', path: '/api/v1/principals' },
  updatePrincipal: { method: 'PATCH', path: '/api/v1/principals/{id}' },
  createApiKey: { method: 'POST', path: '/api/v1/principals/{id}/api-keys' },
  listApiKeys: { method: 'GET', path: '/api/v1/principals/{id}/api-keys' },
  mintOwnApiKey: { method: 'POST', path: '/api/v1/me/api-keys' },
  revokeApiKey: { method: 'DELETE', path: '/api/v1/api-keys/{id}' },
  bindClientCertificate: { method: 'POST', path: '/api/v1/principals/{id}/client-certificates' },
  bindOwnClientCertificate: { method: 'POST', path: '/api/v1/me/client-certificates' },
  listClientCertificates: { method: 'GET', path: '/api/v1/client-certificates' },
  deleteClientCertificate: { method: 'DELETE', path: '/api/v1/client-certificates/{id}' },
  registerIntakeKey: { method: 'POST', path: '/api/v1/principals/{id}/intake-keys' },
  registerOwnIntakeKey: { method: 'POST', path: '/api/v1/me/intake-keys' },
  listIntakeKeys: { method: 'GET', path: '/api/v1/intake-keys' },
  revokeIntakeKey: { method: 'DELETE', path: '/api/v1/intake-keys/{id}' },

  requestCertificate: { method: 'POST', path: '/api/v1/certificates' },
  listCertificates: { method: 'GET', path: '/api/v1/certificates' },
  getCertificate: { method: 'GET', path: '/api/v1/certificates/{id}' },
  renewCertificate: { method: 'POST', path: '/api/v1/certificates/{id}/renew' },
  getCertificatePem: { method: 'GET', path: '/api/v1/certificates/{id}/pem' },

  listJobs: { method: 'GET', path: '/api/v1/jobs' },
  getJob: { method: 'GET', path: '/api/v1/jobs/{id}' },

  listApprovals: { method: 'GET', path: '/api/v1/approvals' },
  getApproval: { method: 'GET', path: '/api/v1/approvals/{id}' },
  getApprovalDiff: { method: 'GET', path: '/api/v1/approvals/{id}/diff' },
  approve: { method: 'POST', path: '/api/v1/approvals/{id}/approve' },
  reject: { method: 'POST', path: '/api/v1/approvals/{id}/reject' },
  voidApproval: { method: 'POST', path: '/api/v1/approvals/{id}/void' },

  listAudit: { method: 'GET', path: '/api/v1/audit', optional: true },
  verifyAudit: { method: 'GET', path: '/api/v1/audit/verify', optional: true },
  listAuditCheckpoints: { method: 'GET', path: '/api/v1/audit/checkpoints', optional: true },
  createAuditCheckpoint: { method: 'POST', path: '/api/v1/audit/checkpoints', optional: true },
  getAuditCheckpoint: { method: 'GET', path: '/api/v1/audit/checkpoints/{id}', optional: true },
  getAuditPublicKey: { method: 'GET', path: '/api/v1/audit/public-key', optional: true },
  exportAudit: { method: 'GET', path: '/api/v1/audit/export', optional: true },
} as const satisfies Record<string, RouteSpec>;

export type OperationId = keyof typeof ROUTES;
