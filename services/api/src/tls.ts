import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';

/**
 * The api's mTLS listener: the same Fastify routes, served over TLS to
 * clients that present a certificate chaining to the configured client CA.
 * A connection without a certificate, with one from another CA, or with an
 * expired one is closed right after the handshake, before any HTTP is read;
 * auth.ts then maps a verified certificate to its principal (an unregistered
 * certificate gets 401). The plain HTTP listener keeps serving API keys.
 *
 * The certificate is checked here rather than by `rejectUnauthorized`, which
 * drops the connection without saying why; an operator debugging a client
 * wants the reason (CERT_HAS_EXPIRED, UNABLE_TO_VERIFY_LEAF_SIGNATURE, ...).
 */
export interface MtlsListenerOptions {
  /** PEM server certificate (chain) and key. */
  readonly cert: string | Buffer;
  readonly key: string | Buffer;
  /** PEM bundle of the CA(s) that client certificates must chain to. */
  readonly clientCa: string | Buffer;
  readonly host: string;
  readonly port: number;
  /** A refused connection and why (OpenSSL verification code, NO_CLIENT_CERTIFICATE, or a TLS error); a log line. */
  readonly onRefused?: (reason: string) => void;
}

export interface MtlsListener {
  readonly server: Server;
  readonly port: number;
  close(): Promise<void>;
}

export async function listenMtls(app: FastifyInstance, opts: MtlsListenerOptions): Promise<MtlsListener> {
  await app.ready();
  const server = createServer(
    {
      cert: opts.cert,
      key: opts.key,
      ca: opts.clientCa,
      requestCert: true,
      // Verified below, before the HTTP layer sees the socket.
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
    },
    (req, res) => app.routing(req, res),
  );
  // Match Fastify's own listener: keep-alive longer than common load balancers' idle timeouts.
  server.keepAliveTimeout = 72_000;
  server.on('tlsClientError', (err: Error & { code?: string }) => opts.onRefused?.(err.code ?? err.message));
  // Prepended, so it runs before the HTTP connection listener that https.Server registered first.
  server.prependListener('secureConnection', (socket) => {
    if (socket.authorized) return;
    const peer = socket.getPeerCertificate();
    const presented = peer !== null && typeof peer === 'object' && Object.keys(peer).length > 0;
    opts.onRefused?.(presented ? String(socket.authorizationError ?? 'UNVERIFIED') : 'NO_CLIENT_CERTIFICATE');
    socket.destroy();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeIdleConnections();
      }),
  };
}
