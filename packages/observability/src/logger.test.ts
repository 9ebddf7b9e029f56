import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from './logger.ts';

/** What reaches the log stream, parsed: the redaction list is checked on real pino output. */
function capture() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return { lines, log: createLogger('api', 'info', stream) };
}

const KEY = 'cs_0123456789abcdef0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
const PRIVATE = '-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n-----END PRIVATE KEY-----';
const CSR = '-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----';

describe('log redaction', () => {
  it('never writes keys, tokens, cookies, CSRs or private key material', () => {
    const { lines, log } = capture();
    log.info(
      {
        req: {
          headers: { authorization: `Bearer ${KEY}`, cookie: 'countersign_queues_session=abc', 'x-api-key': KEY },
        },
        res: { headers: { 'set-cookie': 'countersign_queues_session=abc; HttpOnly' } },
        body: { key: KEY, csr: CSR, justification: 'kept' },
        api_key: KEY,
        token: 'tok',
        password: 'pw',
        privateKeyPem: PRIVATE,
        ca: { keyPem: PRIVATE, private_key: PRIVATE, passphrase: 'pp' },
        principal: { apiKey: KEY, key: KEY, name: 'alice' },
      },
      'request',
    );
    const out = JSON.stringify(lines);
    for (const secret of [
      KEY,
      'BEGIN PRIVATE KEY',
      'BEGIN CERTIFICATE REQUEST',
      'countersign_queues_session=abc',
      '"tok"',
      '"pw"',
      '"pp"',
    ])
      expect(out, secret).not.toContain(secret);
    expect(out).toContain('kept');
    expect(out).toContain('alice');
    expect(lines[0]).toMatchObject({ service: 'api', level: 'info', msg: 'request' });
  });
});
