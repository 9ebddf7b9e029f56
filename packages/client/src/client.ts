import { ApiError, errorFromResponse } from './errors.ts';
import { type OperationId, ROUTES } from './routes.ts';
import type {
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
  CreatedApiKey,
  Job,
  Page,
  PageQuery,
  Principal,
  Profile,
  ProfileInput,
  RenewalInput,
  RenewResult,
  RequestResult,
} from './types.ts';

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

  me(): Promise<Principal> {
    return this.json('me');
  }

  listProfiles(query: PageQuery = {}): Promise<Page<Profile>> {
    return this.json('listProfiles', { query: { ...query } });
  }
  getProfile(id: string): Promise<Profile> {
    return this.json('getProfile', { params: { id } });
  }
  createProfile(body: ProfileInput): Promise<Profile> {
    return this.json('createProfile', { body });
  }
  updateProfile(id: string, body: ProfileInput): Promise<Profile> {
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
  }): Promise<Principal> {
    return this.json('createPrincipal', { body });
  }
  createApiKey(principalId: string, body: { name?: string; expires_at?: string } = {}): Promise<CreatedApiKey> {
    return this.json('createApiKey', { params: { id: principalId }, body });
  }
  revokeApiKey(id: string): Promise<{ id: string; revoked: boolean }> {
    return this.json('revokeApiKey', { params: { id } });
  }

  /** Binds a client certificate (mTLS) to a principal: by fingerprint, SAN, or the certificate itself. */
  bindClientCertificate(principalId: string, body: ClientCertificateInput): Promise<ClientCertificateBinding> {
    return this.json('bindClientCertificate', { params: { id: principalId }, body });
  }
  listClientCertificates(query: PageQuery & { principal_id?: string } = {}): Promise<Page<ClientCertificateBinding>> {
    return this.json('listClientCertificates', { query: { ...query } });
  }
  deleteClientCertificate(id: string): Promise<{ id: string; deleted: boolean }> {
    return this.json('deleteClientCertificate', { params: { id } });
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
