/**
 * Standalone SMTP sink for the dev stack:
 *   SMTP_SINK_DIR=.devstack/mail SMTP_SINK_PORT=1025 pnpm exec tsx packages/devstack/src/smtp-sink-main.ts
 * SMTP_SINK_PORT unset or 0 picks a free port; the URL is printed either way.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSmtpSink } from './smtp-sink.ts';

const dir = process.env.SMTP_SINK_DIR || join(tmpdir(), 'countersign-smtp-sink');
const portText = process.env.SMTP_SINK_PORT ?? '0';
const port = Number(portText);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`SMTP_SINK_PORT must be a port number, got "${portText}"`);
  process.exit(2);
}

const log = (message: string): void => console.log(`${new Date().toISOString()} ${message}`);
const sink = await startSmtpSink({ dir, port, log });
console.log(`SMTP_URL=${sink.url}`);

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    log(`smtp-sink: ${sig}, shutting down`);
    sink.stop().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  });
}
