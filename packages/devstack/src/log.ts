/**
 * Devstack functions accept either a plain function or a pino-style logger, so the
 * dev stack (structured logger) and tests (console.log or a no-op) can both pass theirs.
 */
export type DevstackLog = ((message: string) => void) | { info(message: string): void; warn?(message: string): void };

export interface NormalizedLog {
  info(message: string): void;
  warn(message: string): void;
}

export function normalizeLog(log: DevstackLog | undefined): NormalizedLog {
  if (log === undefined) return { info: () => {}, warn: () => {} };
  if (typeof log === 'function') return { info: (m) => log(m), warn: (m) => log(`WARN ${m}`) };
  return {
    info: (m) => log.info(m),
    warn: (m) => (log.warn ? log.warn(m) : log.info(`WARN ${m}`)),
  };
}
