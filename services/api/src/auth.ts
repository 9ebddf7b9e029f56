import { createHash, X509Certificate } from 'node:crypto';
import { TLSSocket } from 'node:tls';
import { clientCertificates, type Db } from '@countersign/db';
import { DomainError, type PrincipalKind, type Role } from '@countersign/domain';
import { type Authenticated, authenticateApiKey } from '@countersign/workflow';
import type { FastifyRequest } from 'fastify';

declare module 'fastify' {
  interface FastifyRequest {
    principal: Authenticated | null;
  }
}

/**
 * Resolves the caller from a verified mTLS client certificate (mapped to its
 * principal by fingerprint or SAN) and/or `Authorization: Bearer <key>`.
 * Identity is the principal (SPEC §1.2): a certificate and a key of one
 * principal are the same actor; a certificate and a key of two different
 * principals are refused rather than guessed between. Routes call `who(req)`
 * to require a caller.
 */
export function authenticator(db: Db) {
  return async (req: FastifyRequest): Promise<void> => {
    const byCertificate = await authenticateClientCertificate(db, req);
    const header = req.headers.authorization;
    let byKey: Authenticated | null = null;
    if (header !== undefined) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
      if (!m?.[1]) throw new DomainError('unauthenticated', 'use Authorization: Bearer <api key>');
      byKey = await authenticateApiKey(db, m[1]);
    }
    if (byCertificate && byKey && byCertificate.id !== byKey.id) {
      throw new DomainError(
        'unauthenticated',
        'the client certificate and the API key belong to different principals; send one identity',
      );
    }
    // Both of one principal: decide with whichever is the principal's own credential.
    req.principal = byCertificate && byKey && !byCertificate.credential.own ? byKey : (byCertificate ?? byKey);
  };
}

export function who(req: FastifyRequest): Authenticated {
  if (!req.principal) {
    throw new DomainError('unauthenticated', 'a valid API key is required (Authorization: Bearer <key>)');
  }
  return req.principal;
}

export interface PresentedCertificate {
  /** SHA-256 of the DER certificate, lower-case hex without separators. */
  readonly fingerprint: string;
  /** Its DNS and URI subjectAltNames as `DNS:<name>` / `URI:<uri>` (DNS lower-cased). */
  readonly sans: readonly string[];
}

/** The form a binding stores: what `openssl x509 -fingerprint -sha256` prints, normalised. */
export function normaliseFingerprint(input: string): string | null {
  const hex = input
    .replace(/^sha256[:/=]?/i, '')
    .replaceAll(':', '')
    .toLowerCase();
  return /^[0-9a-f]{64}$/.test(hex) ? hex : null;
}

/** `DNS:<name>` (lower-cased) or `URI:<uri>`; anything else (IP, email, quoted values) cannot be bound. */
export function normaliseSan(input: string): string | null {
  const m = /^(DNS|URI):([^\s,"]{1,500})$/i.exec(input.trim());
  if (!m?.[1] || !m[2]) return null;
  const kind = m[1].toUpperCase();
  return kind === 'DNS' ? `DNS:${m[2].toLowerCase()}` : `URI:${m[2]}`;
}

export function describeCertificate(der: Buffer): PresentedCertificate {
  const fingerprint = createHash('sha256').update(der).digest('hex');
  // Node lists SANs as "DNS:a, URI:b, IP Address:c"; values with a separator in them come quoted and never match.
  const listed = new X509Certificate(der).subjectAltName ?? '';
  const sans = listed
    .split(', ')
    .map((s) => normaliseSan(s))
    .filter((s): s is string => s !== null);
  return { fingerprint, sans: [...new Set(sans)] };
}

// The certificate of a connection does not change (TLS 1.3 has no renegotiation); parse it once per socket.
const presented = new WeakMap<TLSSocket, PresentedCertificate | null>();

function presentedCertificate(req: FastifyRequest): PresentedCertificate | null {
  const socket = req.raw.socket;
  // Only a certificate that the TLS layer verified against the client CA counts.
  if (!(socket instanceof TLSSocket) || !socket.authorized) return null;
  const cached = presented.get(socket);
  if (cached !== undefined) return cached;
  const peer = socket.getPeerCertificate();
  const found = peer && Buffer.isBuffer(peer.raw) && peer.raw.length > 0 ? describeCertificate(peer.raw) : null;
  presented.set(socket, found);
  return found;
}

async function authenticateClientCertificate(db: Db, req: FastifyRequest): Promise<Authenticated | null> {
  const cert = presentedCertificate(req);
  if (!cert) return null;
  const rows = await clientCertificates.findPrincipalsForCertificate(db, cert.fingerprint, cert.sans);
  const principals = new Set(rows.map((r) => r.principal_id));
  if (principals.size > 1) {
    throw new DomainError(
      'unauthenticated',
      'this client certificate matches bindings of more than one principal; an admin must remove one',
    );
  }
  // One principal may have several bindings matching this certificate: its own one counts first.
  const row = rows.find((r) => r.created_by === r.principal_id) ?? rows[0];
  if (!row) {
    throw new DomainError(
      'unauthenticated',
      `client certificate sha256:${cert.fingerprint} is not registered to a principal`,
    );
  }
  if (row.disabled_at !== null)
    throw new DomainError('unauthenticated', 'the principal of this certificate is disabled');
  return {
    id: row.principal_id,
    orgId: row.org_id,
    role: row.role as Role,
    kind: row.kind as PrincipalKind,
    name: row.name,
    keyId: `client-certificate:${row.binding_id}`,
    credential: {
      kind: 'client_certificate',
      id: row.binding_id,
      own: row.created_by === row.principal_id,
      createdBy: row.created_by,
    },
  };
}
