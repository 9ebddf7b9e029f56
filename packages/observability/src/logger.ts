import { type Logger, pino } from 'pino';

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

export function createLogger(service: string, level = 'info'): Logger {
  return pino({
    level,
    base: { service },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  });
}
