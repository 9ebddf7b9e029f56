import { ApiError, errorFromResponse } from './errors.ts';
import { type OperationId, ROUTES } from './routes.ts';
import type {
  ApiKeyInfo,
  Approval,
  ApprovalDiff,
  ApprovalQuery,
  AuditCheckpoint,
  AuditPublicKey,
  AuditQuery,
  AuditRecord,
  AuditVerification,
  Certificate,
  CertificateRequest,
  ClientCertificateBinding,
  ClientCertificateInput,
  ConfigRequest,
  CreatedApiKey,
  IntakeKey,
  IntakeKeyInput,
  Job,
  Me,
  OrgStatus,
  Page,
  PageQuery,
  PendingConfiguration,
  Principal,
  PrincipalChange,
  Profile,
  ProfileInput,
  RenewalInput,
  RenewResult,
  RequestResult,
} from './types.ts';

export const isPendingConfiguration = (x: unknown): x is PendingConfiguration =>
  typeof x === 'object' && x !== null && 'configuration_request' in x;

/**
 * The result of a configuration change that must have applied at once (an org
 * that is not yet two-person ready, or a change that does not weaken the gate);
 * throws, naming the request, when it waits for another admin instead.
 */
export function applied<T>(x: T | PendingConfiguration): T {
  if (isPendingConfiguration(x)) {
    throw new Error(
      `the change waits for another admin: configuration request ${x.configuration_request.id} (${x.configuration_request.summary})`,
    );
  }
  return x;
}

/**
 * A small typed client for the Countersign HTTP API. It runs wherever `fetch`
 * does (Node 20+, browsers), has no dependencies, and turns every problem+json
 * answer into an ApiError with the server's code, status and detail.
 */
export interface ClientOptions {
  /** API origin, e.g. `https://countersign.internal:8080`; '' for same-origin (the web console). */
  baseUrl: string;
  /** An API key; sent as `Authorization: Bearer <key>`. */
  apiKey?: string | null;
  /** Per-request timeout; default 30 s. */
  timeoutMs?: number;
  /** Injected fetch (tests, proxies); defaults to the global one. */
  fetch?: typeof fetch;
  /** Sent as User-Agent where the runtime allows it. */
  userAgent?: string;
}

type Query = Record<string, string | number | boolean | undefined | null>;

interface CallOptions {
  params?: Record<string, string>;
  query?: Query;
  body?: unknown;
  headers?: Record<string, string>;
  accept?: string;
}

export interface IdempotencyOptions {
  /** Same key and principal returns the first answer instead of a second request. */
  idempotencyKey?: string;
}

const ID_SAFE = /^[A-Za-z0-9._~-]+$/;

export class CountersignClient {
  readonly baseUrl: string;
  private readonly apiKey: string | null;
  private readonly timeoutMs: number;
  private readonly fetchImpl: typeof fetch;
  private readonly userAgent: string | undefined;

  constructor(opts: ClientOptions) {
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '');
    this.apiKey = opts.apiKey ?? null;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    // Bound so a browser's fetch is not called with the client as `this`.
    this.fetchImpl = opts.fetch ?? globalThis.fetch.bind(globalThis);
    this.userAgent = opts.userAgent;
  }

  /** The URL of an operation, for links and messages. */
  url(op: OperationId, params: Record<string, string> = {}, query: Query = {}): string {
    const route = ROUTES[op];
    const path = route.path.replace(/\{(\w+)\}/g, (_m, name: string) => {
      const v = params[name];
      // Ids are UUIDs; anything else would be a path-injection attempt or a typo.
      if (v === undefined || !ID_SAFE.test(v)) {
        throw new ApiError({
          status: 0,
          code: 'validation_failed',
          detail: `${name} "${v ?? ''}" is not a valid id`,
          method: route.method,
          path: route.path,
        });
      }
      return v;
    });
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== '') qs.set(k, String(v));
    const q = qs.toString();
    return `${this.baseUrl}${path}${q ? `?${q}` : ''}`;
  }

  private async call(op: OperationId, opts: CallOptions = {}): Promise<Response> {
    const route = ROUTES[op];
    const url = this.url(op, opts.params, opts.query);
    const headers: Record<string, string> = { accept: opts.accept ?? 'application/json', ...opts.headers };
    if (this.apiKey) headers.authorization = `Bearer ${this.apiKey}`;
    if (this.userAgent) headers['user-agent'] = this.userAgent;
    let body: string | undefined;
    if (opts.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(opts.body);
    }
    let res: Response;
    try {
      res = await this.fetchImpl(url, {
        method: route.method,
        headers,
        ...(body !== undefined ? { body } : {}),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      const timedOut = err instanceof Error && err.name === 'TimeoutError';
      throw new ApiError({
        status: 0,
        code: 'unreachable',
        detail: timedOut
          ? `no answer from ${this.baseUrl || 'the server'} within ${this.timeoutMs} ms`
          : `cannot reach ${this.baseUrl || 'the server'}: ${describeNetworkError(err)}`,
        method: route.method,
        path: route.path,
        cause: err,
      });
    }
    if (!res.ok) {
      throw errorFromResponse(res.status, res.headers, await res.text(), route.method, route.path);
    }
    return res;
  }

  private async json<T>(op: OperationId, opts: CallOptions = {}): Promise<T> {
    const res = await this.call(op, opts);
    return (await res.json()) as T;
  }

  me(): Promise<Me> {
    return this.json('me');
  }
  /** The caller's org and whether it is two-person ready. */
  getOrg(): Promise<OrgStatus> {
    return this.json('getOrg');
  }

  listConfigRequests(query: PageQuery & { state?: ConfigRequest['state'] } = {}): Promise<Page<ConfigRequest>> {
    return this.json('listConfigRequests', { query: { ...query } });
  }
  getConfigRequest(id: string): Promise<ConfigRequest> {
    return this.json('getConfigRequest', { params: { id } });
  }
  /** Another admin than the requester, with its own key: the change is applied in the same step. */
  approveConfigRequest(id: string, note?: string): Promise<ConfigRequest> {
    return this.json('approveConfigRequest', { params: { id }, body: note === undefined ? {} : { note } });
  }
  rejectConfigRequest(id: string, note: string): Promise<ConfigRequest> {
    return this.json('rejectConfigRequest', { params: { id }, body: { note } });
  }
  cancelConfigRequest(id: string, reason: string): Promise<ConfigRequest> {
    return this.json('cancelConfigRequest', { params: { id }, body: { reason } });
  }

  listProfiles(query: PageQuery = {}): Promise<Page<Profile>> {
    return this.json('listProfiles', { query: { ...query } });
  }
  getProfile(id: string): Promise<Profile> {
    return this.json('getProfile', { params: { id } });
  }
  /** Once the org is two-person ready, a profile that could weaken the gate waits for another admin (202). */
  createProfile(body: ProfileInput): Promise<Profile | PendingConfiguration> {
    return this.json('createProfile', { body });
  }
  updateProfile(id: string, body: ProfileInput): Promise<Profile | PendingConfiguration> {
    return this.json('updateProfile', { params: { id }, body });
  }

  listPrincipals(query: PageQuery = {}): Promise<Page<Principal>> {
    return this.json('listPrincipals', { query: { ...query } });
  }
  createPrincipal(body: {
    name: string;
    email?: string | null;
    role: string;
    kind?: 'user' | 'service';
    justification?: string;
  }): Promise<Principal | PendingConfiguration> {
    return this.json('createPrincipal', { body });
  }
  updatePrincipal(id: string, body: PrincipalChange): Promise<Principal | PendingConfiguration> {
    return this.json('updatePrincipal', { params: { id }, body });
  }
  /** A key for another principal is an enrollment key: it reads, requests and mints that principal's own key once. */
  createApiKey(
    principalId: string,
    body: { name?: string; expires_at?: string; justification?: string } = {},
  ): Promise<CreatedApiKey | PendingConfiguration> {
    return this.json('createApiKey', { params: { id: principalId }, body });
  }
  listApiKeys(principalId: string): Promise<{ items: ApiKeyInfo[] }> {
    return this.json('listApiKeys', { params: { id: principalId } });
  }
  /** Mints the caller's own key (the one it may vote with), using the credential the client holds. */
  mintOwnApiKey(body: { name?: string; expires_at?: string } = {}): Promise<CreatedApiKey> {
    return this.json('mintOwnApiKey', { body });
  }
  revokeApiKey(id: string): Promise<{ id: string; revoked: boolean }> {
    return this.json('revokeApiKey', { params: { id } });
  }

  /** Binds a client certificate (mTLS) to a principal: by fingerprint, SAN, or the certificate itself. */
  bindClientCertificate(
    principalId: string,
    body: ClientCertificateInput,
  ): Promise<ClientCertificateBinding | PendingConfiguration> {
    return this.json('bindClientCertificate', { params: { id: principalId }, body });
  }
  /** A service principal registers its own certificate: a credential it may decide with. */
  bindOwnClientCertificate(body: ClientCertificateInput): Promise<ClientCertificateBinding> {
    return this.json('bindOwnClientCertificate', { body });
  }
  listClientCertificates(query: PageQuery & { principal_id?: string } = {}): Promise<Page<ClientCertificateBinding>> {
    return this.json('listClientCertificates', { query: { ...query } });
  }
  deleteClientCertificate(id: string): Promise<{ id: string; deleted: boolean }> {
    return this.json('deleteClientCertificate', { params: { id } });
  }

  /**
   * Registers the public key a service principal signs its `renewal-requests` messages with (an admin, for a
   * service principal of its org). Send a public JWK or an SPKI PEM, never the private key.
   */
  registerIntakeKey(principalId: string, body: IntakeKeyInput): Promise<IntakeKey> {
    return this.json('registerIntakeKey', { params: { id: principalId }, body });
  }
  /** The same, by the service principal for itself. */
  registerOwnIntakeKey(body: IntakeKeyInput): Promise<IntakeKey> {
    return this.json('registerOwnIntakeKey', { body });
  }
  listIntakeKeys(query: PageQuery & { principal_id?: string } = {}): Promise<Page<IntakeKey>> {
    return this.json('listIntakeKeys', { query: { ...query } });
  }
  /** Messages signed with a revoked key are refused (intake_revoked_key). */
  revokeIntakeKey(id: string): Promise<IntakeKey> {
    return this.json('revokeIntakeKey', { params: { id } });
  }

  requestCertificate(body: CertificateRequest, opts: IdempotencyOptions = {}): Promise<RequestResult> {
    return this.json('requestCertificate', { body, headers: idempotencyHeader(opts) });
  }
  renewCertificate(id: string, body: RenewalInput = {}, opts: IdempotencyOptions = {}): Promise<RenewResult> {
    return this.json('renewCertificate', { params: { id }, body, headers: idempotencyHeader(opts) });
  }
  listCertificates(query: PageQuery & { profile_id?: string } = {}): Promise<Page<Certificate>> {
    return this.json('listCertificates', { query: { ...query } });
  }
  getCertificate(id: string): Promise<Certificate> {
    return this.json('getCertificate', { params: { id } });
  }
  /** The current version as a PEM chain: leaf first, then the issuing chain. */
  async getCertificatePem(id: string): Promise<string> {
    const res = await this.call('getCertificatePem', { params: { id }, accept: 'application/pem-certificate-chain' });
    return res.text();
  }

  listJobs(query: PageQuery & { certificate_id?: string } = {}): Promise<Page<Job>> {
    return this.json('listJobs', { query: { ...query } });
  }
  getJob(id: string): Promise<Job> {
    return this.json('getJob', { params: { id } });
  }

  listApprovals(query: ApprovalQuery = {}): Promise<Page<Approval>> {
    return this.json('listApprovals', { query: { ...query } });
  }
  getApproval(id: string): Promise<Approval> {
    return this.json('getApproval', { params: { id } });
  }
  /** What a renewal changes against the certificate it renews. */
  getApprovalDiff(id: string): Promise<ApprovalDiff> {
    return this.json('getApprovalDiff', { params: { id } });
  }
  approve(id: string, body: { note?: string } = {}): Promise<Approval> {
    return this.json('approve', { params: { id }, body });
  }
  reject(id: string, body: { note: string }): Promise<Approval> {
    return this.json('reject', { params: { id }, body });
  }
  voidApproval(id: string, body: { reason: string }): Promise<Approval> {
    return this.json('voidApproval', { params: { id }, body });
  }

  listAudit(query: AuditQuery = {}): Promise<Page<AuditRecord>> {
    return this.json('listAudit', { query: { ...query } });
  }
  /** Verifies the org's hash chain on the server: `full` (default) or only the `tail` since the last checkpoint. */
  verifyAudit(query: { mode?: 'full' | 'tail' } = {}): Promise<AuditVerification> {
    return this.json('verifyAudit', { query: { ...query } });
  }
  listAuditCheckpoints(query: PageQuery = {}): Promise<Page<AuditCheckpoint>> {
    return this.json('listAuditCheckpoints', { query: { ...query } });
  }
  createAuditCheckpoint(): Promise<AuditCheckpoint> {
    return this.json('createAuditCheckpoint', { body: {} });
  }
  getAuditCheckpoint(id: string): Promise<AuditCheckpoint> {
    return this.json('getAuditCheckpoint', { params: { id } });
  }
  getAuditPublicKey(): Promise<AuditPublicKey> {
    return this.json('getAuditPublicKey');
  }
  /** The ledger as JSON lines (a checkpoint first), for `countersign audit verify --checkpoint` offline. */
  async exportAudit(query: { checkpoint_id?: string } = {}): Promise<string> {
    const res = await this.call('exportAudit', { query: { ...query }, accept: '*/*' });
    return res.text();
  }

  /** Walks every page of a list endpoint; `maxPages` bounds a runaway listing. */
  async *pages<T, Q extends PageQuery>(
    list: (query?: Q) => Promise<Page<T>>,
    query: NoInfer<Q>,
    maxPages = 1_000,
  ): AsyncGenerator<T[]> {
    let cursor: string | undefined = query.cursor;
    for (let i = 0; i < maxPages; i++) {
      const page = await list.call(this, { ...query, ...(cursor ? { cursor } : {}) });
      yield page.items;
      if (!page.next_cursor) return;
      cursor = page.next_cursor;
    }
  }
}

function idempotencyHeader(opts: IdempotencyOptions): Record<string, string> {
  return opts.idempotencyKey ? { 'idempotency-key': opts.idempotencyKey } : {};
}

function describeNetworkError(err: unknown): string {
  // Node's fetch hides the socket error (ECONNREFUSED, ENOTFOUND) in `cause`.
  const cause = err instanceof Error ? (err.cause as { code?: string; message?: string } | undefined) : undefined;
  if (cause?.code) return cause.code;
  if (cause?.message) return cause.message;
  return err instanceof Error ? err.message : String(err);
}
