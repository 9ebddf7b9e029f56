import { type ChildProcess, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { connect, createServer, type Server } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, MAIL_FROM, type Pipeline, PUBLIC_URL, sleep, startPipeline } from './test/pipeline-harness.ts';

/**
 * The notifier as a real process (its main.ts), SIGKILLed in the middle of
 * SMTP transactions and started again: every mail arrives, none twice.
 *
 * To kill it mid-send deterministically, mail goes through a proxy that stops
 * forwarding the notifier's bytes once a number of messages went through: the
 * other SMTP transactions are then open, their deliveries claimed, their
 * messages incomplete at the server. Only then is the process killed.
 */
const require = createRequire(import.meta.url);
const TSX = join(dirname(require.resolve('tsx/package.json')), 'dist', 'esm', 'index.mjs');
const MAIN = join(dirname(fileURLToPath(import.meta.url)), 'main.ts');
const TERMINATOR = Buffer.from('\r\n.\r\n');

interface FreezingProxy {
  readonly url: string;
  /** Messages whose final dot was forwarded. */
  forwarded(): number;
  thaw(): void;
  close(): Promise<void>;
}

async function freezingProxy(targetPort: number, freezeAfter: number): Promise<FreezingProxy> {
  let forwarded = 0;
  let frozen = false;
  let limit: number | null = freezeAfter;
  const server: Server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    let tail = Buffer.alloc(0);
    upstream.pipe(client);
    client.on('data', (chunk: Buffer) => {
      if (frozen) return;
      const window = Buffer.concat([tail, chunk]);
      for (let i = window.indexOf(TERMINATOR); i !== -1; i = window.indexOf(TERMINATOR, i + 1)) {
        if (i + TERMINATOR.length > tail.length) forwarded++;
      }
      tail = window.subarray(Math.max(0, window.length - (TERMINATOR.length - 1)));
      upstream.write(chunk);
      if (limit !== null && forwarded >= limit) frozen = true;
    });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.on('error', () => {});
    upstream.on('error', () => {});
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', () => res()));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('proxy has no port');
  return {
    url: `smtp://127.0.0.1:${address.port}`,
    forwarded: () => forwarded,
    thaw: () => {
      limit = null;
      frozen = false;
    },
    close: () =>
      new Promise<void>((res) => {
        server.close(() => res());
        server.emit('close');
      }),
  };
}

let p: Pipeline;
const children: ChildProcess[] = [];
beforeAll(async () => {
  p = await startPipeline();
});
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await p?.close();
});

function startNotifierProcess(smtpUrl: string, output: string[]): ChildProcess {
  const child = spawn(process.execPath, ['--import', TSX, MAIN], {
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      COUNTERSIGN_DATABASE_URL: p.tdb.appUrl,
      COUNTERSIGN_REDIS_URL: p.redisUrl,
      COUNTERSIGN_QUEUE_PREFIX: p.prefix,
      COUNTERSIGN_SMTP_URL: smtpUrl,
      COUNTERSIGN_SMTP_TIMEOUT: '1s',
      COUNTERSIGN_MAIL_FROM: MAIL_FROM,
      COUNTERSIGN_PUBLIC_URL: PUBLIC_URL,
      COUNTERSIGN_METRICS_PORT: '0',
      COUNTERSIGN_METRICS_HOST: '127.0.0.1',
      COUNTERSIGN_NOTIFIER_CONCURRENCY: '4',
      COUNTERSIGN_LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  for (const s of [child.stdout, child.stderr]) s?.on('data', (d: Buffer) => output.push(d.toString()));
  children.push(child);
  return child;
}

const exited = (c: ChildProcess) =>
  c.exitCode !== null || c.signalCode !== null
    ? Promise.resolve()
    : new Promise<void>((r) => c.once('exit', () => r()));

describe('a notifier killed mid-send', () => {
  it('delivers every mail exactly once after a restart', { timeout: 120_000 }, async () => {
    const requests = [];
    for (let i = 0; i < 6; i++) {
      requests.push(await p.submit(p.org.requester, p.org.gated.id, `crash${i}.example.test`));
    }
    await p.drain();
    // Each request asks its two operators (the admin created the requester, so it is not asked).
    const expected = requests.length * 2;

    const proxy = await freezingProxy(p.sink.port, 5);
    const output: string[] = [];
    try {
      const first = startNotifierProcess(proxy.url, output);
      const counts = async () => {
        const r = await p.tdb.superuser<{ sent: string; in_flight: string }>(
          `SELECT count(*) FILTER (WHERE status = 'sent') AS sent,
                  count(*) FILTER (WHERE status = 'pending' AND attempts > 0 AND claimed_until > now()) AS in_flight
           FROM notification_deliveries`,
        );
        return { sent: Number(r.rows[0]?.sent), inFlight: Number(r.rows[0]?.in_flight) };
      };
      // Five messages got through and were recorded; the others are claimed and stuck mid-transaction.
      const atKill = await eventually(
        'five sent, the rest in flight',
        async () => {
          const c = await counts();
          return p.sink.messages().length === 5 && c.sent === 5 && c.inFlight > 0 && c;
        },
        30_000,
      ).catch((err: unknown) => {
        throw new Error(`${String(err)}\n${output.join('')}`);
      });
      first.kill('SIGKILL');
      await exited(first);
      expect(first.signalCode).toBe('SIGKILL');
      expect(p.sink.messages()).toHaveLength(5);

      proxy.thaw();
      const second = startNotifierProcess(proxy.url, output);
      await eventually(
        'every mail delivered',
        async () => p.sink.messages().length >= expected && (await counts()).sent === expected,
        60_000,
      ).catch((err: unknown) => {
        throw new Error(`${String(err)}\n${output.join('').slice(-4000)}`);
      });
      await sleep(1_000);

      const mails = p.sink.messages();
      expect(mails).toHaveLength(expected);
      const pairs = mails.map((m) => `${m.to.join(',')} ${m.subject}`);
      expect(new Set(pairs).size).toBe(expected);
      expect(new Set(mails.map((m) => m.messageId)).size).toBe(expected);
      for (const r of requests) {
        const to = mails.filter((m) => m.text.includes(r.approvalId)).flatMap((m) => m.to);
        expect(to.sort()).toEqual(['operator1@example.test', 'operator2@example.test']);
      }
      const rows = await p.tdb.superuser<{ status: string; attempts: number }>(
        'SELECT status, attempts FROM notification_deliveries',
      );
      expect(rows.rows.every((r) => r.status === 'sent')).toBe(true);
      // The deliveries in flight at the kill were taken over by the second process: their second transaction.
      expect(rows.rows.filter((r) => r.attempts === 2).length).toBeGreaterThanOrEqual(atKill.inFlight);

      second.kill('SIGTERM');
      await exited(second);
      expect(second.exitCode).toBe(0);
    } finally {
      await proxy.close();
    }
  });
});
