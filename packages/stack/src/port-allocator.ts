import { freePort } from '@countersign/devstack';

/**
 * Loopback ports for one stack's services, never the same one twice. freePort
 * asks the kernel for a port and releases it at once, so two calls in a row
 * can return the same number: the fresh-clone CI once gave the issuer and the
 * notifier one metrics port. The notifier died on EADDRINUSE while the
 * issuer answered its readiness probe, and the benchmark then waited on mail
 * nobody sent.
 */
export function portAllocator(pick: () => Promise<number> = freePort, attempts = 20) {
  const taken = new Set<number>();
  return {
    /** Marks a port chosen elsewhere (an explicit api port) as taken. */
    reserve(port: number): void {
      taken.add(port);
    },
    async next(): Promise<number> {
      for (let i = 0; i < attempts; i++) {
        const port = await pick();
        if (!taken.has(port)) {
          taken.add(port);
          return port;
        }
      }
      throw new Error(`no free loopback port distinct from ${[...taken].join(', ')} after ${attempts} attempts`);
    },
  };
}
