import type { Logger } from 'pino';

/**
 * Ordered graceful shutdown with a hard deadline: steps run in the order they
 * were registered (stop intake, drain workers, close queues, Redis, database);
 * if they do not finish in time the process exits anyway so an orchestrator
 * never waits on a stuck connection.
 */
export interface Shutdown {
  add(name: string, step: () => Promise<unknown>): void;
  run(reason: string): Promise<void>;
  installSignalHandlers(): void;
}

export function createShutdown(log: Logger, timeoutMs: number, exit: (code: number) => void = process.exit): Shutdown {
  const steps: { name: string; step: () => Promise<unknown> }[] = [];
  let running: Promise<void> | null = null;

  const run = (reason: string): Promise<void> => {
    if (running) return running;
    running = (async () => {
      log.info({ reason }, 'shutting down');
      const timer = setTimeout(() => {
        log.error({ timeoutMs }, 'shutdown timed out; exiting');
        exit(1);
      }, timeoutMs);
      timer.unref();
      for (const { name, step } of steps) {
        try {
          await step();
        } catch (err) {
          log.warn({ err, step: name }, 'shutdown step failed');
        }
      }
      clearTimeout(timer);
      log.info('shutdown complete');
    })();
    return running;
  };

  return {
    add: (name, step) => steps.push({ name, step }),
    run,
    installSignalHandlers: () => {
      for (const signal of ['SIGTERM', 'SIGINT'] as const) {
        process.once(signal, () => {
          void run(signal).then(() => exit(0));
        });
      }
    },
  };
}
