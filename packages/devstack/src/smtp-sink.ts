import { appendFile, mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { type AddressObject, simpleParser } from 'mailparser';
import { SMTPServer, type SMTPServerAddress } from 'smtp-server';
import { type DevstackLog, normalizeLog } from './log.ts';

export interface SmtpSinkOptions {
  /** Where `<timestamp>-<n>.eml` files and `index.jsonl` are written. Created if missing. */
  dir: string;
  /** 0 or undefined picks a free loopback port. */
  port?: number;
  log?: DevstackLog;
  /**
   * For tests of lost replies: how long to hold back the 250 reply to a
   * message the sink has already stored (by its number, from 1). The mail is
   * kept either way, as a real server that is slow to answer keeps it.
   */
  replyDelayMs?: (n: number) => number;
  /**
   * false: accept and count every message but neither parse nor store it,
   * like a relay on another host (the benchmark: parsing every mail in the
   * harness would take CPU from the services it measures).
   */
  keep?: boolean;
}

export interface SinkMessage {
  /** 1-based sequence number within this sink's lifetime. */
  n: number;
  /** ISO time the message was accepted. */
  at: string;
  /** Header From address (falls back to the envelope sender). */
  from: string;
  /** Envelope recipients: everyone the message was delivered to, including Bcc. */
  to: string[];
  /** Addresses in the To/Cc headers, as the recipient would see them. */
  headerTo: string[];
  headerCc: string[];
  subject: string;
  text: string;
  html: string | null;
  messageId: string | null;
  /** Lower-cased header name -> raw value of its first occurrence (continuation lines unfolded). */
  headers: Record<string, string>;
  envelope: { from: string; to: string[] };
  /** Path of the saved .eml file. */
  file: string;
}

/** One line of index.jsonl. */
export interface SinkIndexEntry {
  at: string;
  from: string;
  to: string[];
  subject: string;
  messageId: string | null;
  file: string;
}

export interface SmtpSink {
  url: string;
  port: number;
  dir: string;
  /** Snapshot of the messages received since start (or the last clear()); empty when not kept. */
  messages(): SinkMessage[];
  /** Messages accepted since start, kept or not. */
  accepted(): number;
  /**
   * Resolves with the first message (already received or arriving later) matching the
   * predicate; rejects after timeoutMs listing what did arrive, which makes failing
   * e2e assertions readable.
   */
  waitFor(predicate: (message: SinkMessage) => boolean, timeoutMs?: number): Promise<SinkMessage>;
  /** Forgets the in-memory messages; the .eml files and index.jsonl stay on disk. */
  clear(): void;
  stop(): Promise<void>;
}

function addresses(value: AddressObject | AddressObject[] | undefined): string[] {
  if (value === undefined) return [];
  const list = Array.isArray(value) ? value : [value];
  return list.flatMap((obj) => obj.value.flatMap((a) => (a.address ? [a.address] : [])));
}

function envelopeAddress(a: SMTPServerAddress | false): string {
  return a === false ? '' : a.address;
}

/**
 * A catch-all SMTP server for local development and e2e tests: accepts any mail without
 * auth or TLS (loopback only), keeps it in memory and writes it to disk so a developer can
 * open the .eml files. Used in-process by tests and standalone via smtp-sink-main.ts.
 */
export async function startSmtpSink(options: SmtpSinkOptions): Promise<SmtpSink> {
  const log = normalizeLog(options.log);
  const dir = resolve(options.dir);
  await mkdir(dir, { recursive: true });
  const indexFile = join(dir, 'index.jsonl');

  let received: SinkMessage[] = [];
  let counter = 0;
  const waiters = new Set<(message: SinkMessage) => void>();
  // Serialises appends so index.jsonl lines never interleave across concurrent sessions.
  let writeChain: Promise<void> = Promise.resolve();

  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    secure: false,
    // AUTH stays advertised and accepts any credentials, so an app configured with SMTP
    // credentials works against the sink as well as one configured without.
    allowInsecureAuth: true,
    onAuth(auth, _session, callback) {
      callback(null, { user: auth.username ?? 'anonymous' });
    },
    logger: false,
    // Without this, stop() waits up to 30 s for pooled client connections to quit.
    closeTimeout: 500,
    size: 25 * 1024 * 1024,
    onData(stream, session, callback) {
      if (options.keep === false) {
        stream.once('error', (err) => callback(err));
        stream.once('end', () => {
          counter++;
          callback();
        });
        stream.resume();
        return;
      }
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.once('error', (err) => callback(err));
      stream.once('end', () => {
        const raw = Buffer.concat(chunks);
        const n = ++counter;
        const at = new Date().toISOString();
        const file = join(dir, `${at.replace(/[:.]/g, '-')}-${n}.eml`);
        const envelope = {
          from: envelopeAddress(session.envelope.mailFrom),
          to: session.envelope.rcptTo.map((r) => r.address),
        };
        const handle = async (): Promise<SinkMessage> => {
          const parsed = await simpleParser(raw, { skipImageLinks: true });
          const headers: Record<string, string> = {};
          for (const { key, line } of parsed.headerLines) {
            const name = key.toLowerCase();
            if (headers[name] !== undefined) continue;
            const colon = line.indexOf(':');
            headers[name] = line
              .slice(colon + 1)
              .replace(/\r?\n[ \t]+/g, ' ')
              .trim();
          }
          const message: SinkMessage = {
            n,
            at,
            from: addresses(parsed.from)[0] ?? envelope.from,
            to: envelope.to,
            headerTo: addresses(parsed.to),
            headerCc: addresses(parsed.cc),
            subject: parsed.subject ?? '',
            text: parsed.text ?? '',
            html: typeof parsed.html === 'string' ? parsed.html : null,
            messageId: parsed.messageId ?? null,
            headers,
            envelope,
            file,
          };
          const entry: SinkIndexEntry = {
            at,
            from: message.from,
            to: message.to,
            subject: message.subject,
            messageId: message.messageId,
            file,
          };
          const write = writeChain.then(async () => {
            await writeFile(file, raw);
            await appendFile(indexFile, `${JSON.stringify(entry)}\n`);
          });
          writeChain = write.catch(() => {});
          await write;
          return message;
        };
        handle().then(
          (message) => {
            received.push(message);
            log.info(`smtp-sink: #${n} "${message.subject}" from ${message.from} to ${message.to.join(', ')}`);
            for (const waiter of waiters) waiter(message);
            const delay = options.replyDelayMs?.(n) ?? 0;
            if (delay > 0) setTimeout(() => callback(), delay);
            else callback();
          },
          (err: unknown) => {
            log.warn(`smtp-sink: failed to store message #${n}: ${(err as Error).message}`);
            callback(err as Error);
          },
        );
      });
    },
  });

  const port = await new Promise<number>((res, rej) => {
    const onError = (err: Error) => rej(err);
    server.once('error', onError);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      server.removeListener('error', onError);
      const address = server.server.address();
      if (address === null || typeof address === 'string') rej(new Error('smtp-sink: could not read the bound port'));
      else res(address.port);
    });
  });
  // Client-side protocol errors must not crash the host process.
  server.on('error', (err) => log.warn(`smtp-sink: ${err.message}`));
  const url = `smtp://127.0.0.1:${port}`;
  log.info(`smtp-sink: listening on ${url}, saving to ${dir}`);

  let stopping: Promise<void> | undefined;
  return {
    url,
    port,
    dir,
    messages: () => [...received],
    accepted: () => counter,
    waitFor(predicate, timeoutMs = 10_000) {
      const existing = received.find(predicate);
      if (existing) return Promise.resolve(existing);
      return new Promise((res, rej) => {
        const waiter = (message: SinkMessage) => {
          if (!predicate(message)) return;
          clearTimeout(timer);
          waiters.delete(waiter);
          res(message);
        };
        const timer = setTimeout(() => {
          waiters.delete(waiter);
          const seen = received.map((m) => `"${m.subject}" -> ${m.to.join(', ')}`).join('; ') || 'none';
          rej(new Error(`smtp-sink: no matching message within ${timeoutMs} ms (received: ${seen})`));
        }, timeoutMs);
        waiters.add(waiter);
      });
    },
    clear() {
      received = [];
    },
    stop() {
      stopping ??= new Promise<void>((res) => server.close(() => res())).then(() => writeChain);
      return stopping;
    },
  };
}
