import nodemailer from 'nodemailer';

/**
 * The notifier's one edge to the outside: sending a rendered mail over SMTP.
 * Each mail goes to one recipient (approvers never see each other's
 * addresses, and each recipient has its own delivery record) and carries a
 * Message-ID derived from (event, recipient): should a mail ever be sent again
 * after a crash between the server's acceptance and the delivery record, it
 * is the same message, which mail stores recognise.
 */
export interface OutgoingMail {
  readonly to: string;
  readonly subject: string;
  readonly text: string;
  readonly html: string;
  readonly messageId: string;
  readonly headers?: Record<string, string>;
}

export interface Mailer {
  /** Resolves once the SMTP server accepted the message; rejects with an SmtpError otherwise. */
  send(mail: OutgoingMail): Promise<void>;
  close(): void;
  /** Where mail goes, without credentials, for logs. */
  readonly describe: string;
}

/** A failed SMTP transaction; `permanent` for 5xx answers that a retry would only repeat. */
export class SmtpError extends Error {
  constructor(
    message: string,
    readonly permanent: boolean,
    readonly responseCode: number | null,
  ) {
    super(message);
    this.name = 'SmtpError';
  }

  /**
   * No reply from the server at all (a timeout, a dropped connection): if the
   * message had been sent, the server may have taken it. SMTP cannot tell
   * (RFC 1047); the retry reuses the Message-ID so a duplicate is recognisable.
   */
  get unanswered(): boolean {
    return this.responseCode === null;
  }
}

export interface SmtpMailerOptions {
  readonly url: string;
  readonly from: string;
  /** Connection, greeting and socket-inactivity timeout. */
  readonly timeoutMs: number;
  readonly maxConnections?: number;
}

/** host:port of an SMTP URL, never its credentials. */
export function describeSmtpUrl(url: string): string {
  const u = new URL(url);
  return `${u.protocol}//${u.hostname}${u.port ? `:${u.port}` : ''}`;
}

export function createSmtpMailer(opts: SmtpMailerOptions): Mailer {
  // nodemailer reads transport options from the URL's query; options the operator put there win.
  const url = new URL(opts.url);
  const defaults: Record<string, string> = {
    pool: 'true',
    maxConnections: String(opts.maxConnections ?? 5),
    connectionTimeout: String(opts.timeoutMs),
    greetingTimeout: String(opts.timeoutMs),
    socketTimeout: String(opts.timeoutMs),
  };
  for (const [k, v] of Object.entries(defaults)) if (!url.searchParams.has(k)) url.searchParams.set(k, v);
  const transport = nodemailer.createTransport(url.toString(), { from: opts.from });
  return {
    describe: describeSmtpUrl(opts.url),
    async send(mail) {
      try {
        await transport.sendMail({
          to: mail.to,
          subject: mail.subject,
          text: mail.text,
          html: mail.html,
          messageId: mail.messageId,
          headers: { 'Auto-Submitted': 'auto-generated', ...(mail.headers ?? {}) },
          // What nodemailer would pick for our mostly-ASCII mails; named, it skips counting every letter of
          // every part to choose (5-7% of the notifier's CPU in the benchmark).
          textEncoding: 'quoted-printable',
        });
      } catch (err) {
        throw toSmtpError(err);
      }
    },
    close: () => transport.close(),
  };
}

export function toSmtpError(err: unknown): SmtpError {
  if (err instanceof SmtpError) return err;
  const e = err as { message?: unknown; responseCode?: unknown; code?: unknown };
  const code = typeof e.responseCode === 'number' ? e.responseCode : null;
  const message = typeof e.message === 'string' ? e.message : String(err);
  const tag = typeof e.code === 'string' ? `${e.code}: ` : '';
  // 5xx is the server's final word on this message (bad recipient, policy); 4xx and network errors pass.
  return new SmtpError(`${tag}${message}`, code !== null && code >= 500 && code < 600, code);
}
