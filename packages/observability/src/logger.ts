import { type DestinationStream, type Logger, pino } from 'pino';

export type { Logger } from 'pino';

/**
 * Paths never written to logs: keys, tokens, authorization headers, CSRs and
 * any PEM or private material that might ride along in an object.
 */
export const REDACT_PATHS = [
  'authorization',
  'headers.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-api-key"]',
  'req.headers["set-cookie"]',
  'res.headers["set-cookie"]',
  'headers.cookie',
  'headers["set-cookie"]',
  'cookie',
  '*.authorization',
  '*.cookie',
  'body.key',
  'keyPem',
  'key_pem',
  'caKeyPem',
  'passphrase',
  'session',
  '*.keyPem',
  '*.key_pem',
  '*.passphrase',
  '*.privateKey',
  '*.key',
  '*.apiKey',
  'apiKey',
  'api_key',
  'key',
  'secret',
  'token',
  'password',
  'csr',
  'body.csr',
  'private_key',
  'privateKey',
  'privateKeyPem',
  '*.api_key',
  '*.csr',
  '*.secret',
  '*.token',
  '*.password',
  '*.private_key',
  '*.privateKeyPem',
];

/** `destination` defaults to stdout; tests pass a stream to read what would be written. */
export function createLogger(service: string, level = 'info', destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { service },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
  };
  return destination ? pino(options, destination) : pino(options);
}
