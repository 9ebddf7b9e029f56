import type { Logger } from '@countersign/observability';
import pg from 'pg';

/**
 * The relay's LISTEN session on `countersign_outbox`: its own client, as LISTEN
 * does not survive transaction pooling. A lost session is ended and replaced
 * after `retryMs`, once. pg reports a terminated session twice (the server's
 * FATAL message, then the closed socket) unless the client is ended first,
 * and the relay used to retry on every report without ending the client: the
 * sessions doubled on every loss (chaos seed 131: 256 LISTEN sessions after
 * five rounds of pg_terminate_backend, until PostgreSQL refused all clients).
 */
export interface OutboxListenerOptions {
  readonly url: string;
  readonly log: Logger;
  /** A committed outbox write's notification (its payload names the newest row). */
  readonly onNotify: (payload: string) => void;
  /** Each time a session is listening again: work may have been missed meanwhile. */
  readonly onListening: () => void;
  readonly retryMs?: number;
  readonly applicationName?: string;
}

export interface OutboxListener {
  /** Whether a session is listening now (readiness). */
  listening(): boolean;
  close(): Promise<void>;
}

export async function startOutboxListener(opts: OutboxListenerOptions): Promise<OutboxListener> {
  const retryMs = opts.retryMs ?? 1_000;
  let current: pg.Client | null = null;
  let stopping = false;
  let retryTimer: NodeJS.Timeout | null = null;

  async function open(): Promise<void> {
    retryTimer = null;
    const client = new pg.Client({
      connectionString: opts.url,
      application_name: opts.applicationName ?? 'countersign-approval-listen',
    });
    let lost = false;
    /** Ends this session and schedules its one replacement, however many times it is reported lost. */
    const replace = (err: unknown, what: string) => {
      if (lost) return;
      lost = true;
      if (current === client) current = null;
      opts.log.warn({ err: err instanceof Error ? err.message : String(err) }, what);
      void client.end().catch(() => {});
      if (!stopping) retryTimer = setTimeout(() => void open(), retryMs);
    };
    client.on('notification', (msg) => opts.onNotify(msg.payload ?? ''));
    client.on('error', (err) => replace(err, 'outbox listener lost its connection; reconnecting'));
    try {
      await client.connect();
      await client.query('LISTEN countersign_outbox');
    } catch (err) {
      replace(err, 'outbox listener could not connect; retrying');
      return;
    }
    if (lost) return;
    if (stopping) {
      await client.end().catch(() => {});
      return;
    }
    current = client;
    opts.onListening();
  }

  await open();
  return {
    listening: () => current !== null,
    close: async () => {
      stopping = true;
      if (retryTimer) clearTimeout(retryTimer);
      const last = current;
      current = null;
      await last?.end().catch(() => {});
    },
  };
}
