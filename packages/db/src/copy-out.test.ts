import { EventEmitter } from 'node:events';
import type pg from 'pg';
import { describe, expect, it } from 'vitest';
import { copyOut, copyOutText } from './copy-out.ts';

/**
 * The protocol framing of copy-out.ts, fed through a stand-in socket in every
 * possible split of the byte stream (the database tests run it against a real
 * PostgreSQL, where the splits are whatever the kernel delivers).
 */
const msg = (code: string, body: Buffer = Buffer.alloc(0)) => {
  const head = Buffer.alloc(5);
  head.write(code, 0, 'latin1');
  head.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([head, body]);
};
const payloads = ['first row', '', 'x'.repeat(300), 'last'].map((s) => Buffer.from(s));
const copyStream = Buffer.concat([
  msg('H', Buffer.from([1, 0, 0])),
  msg('N', Buffer.from('notice\0')),
  ...payloads.map((p) => msg('d', p)),
  msg('c'),
]);
const afterCopy = Buffer.concat([msg('C', Buffer.from('COPY 4\0')), msg('Z', Buffer.from('I'))]);
const errorStream = Buffer.concat([
  msg('H', Buffer.from([1, 0, 0])),
  msg('d', payloads[0] as Buffer),
  msg('E', Buffer.from('Sboom\0')),
]);

/** A pg client stand-in: a socket whose own 'data' listener collects what copy-out hands back. */
function fakeClient(
  onPg: (bytes: Buffer, query: { handleReadyForQuery(): void; handleError(e: Error): void }) => void,
) {
  const socket = new EventEmitter() as EventEmitter & { pause(): void; resume(): void; paused: boolean };
  socket.paused = false;
  socket.pause = () => {
    socket.paused = true;
  };
  socket.resume = () => {
    socket.paused = false;
  };
  let query: { handleReadyForQuery(): void; handleError(e: Error): void } | null = null;
  socket.on('data', (b: Buffer) => onPg(b, query as NonNullable<typeof query>));
  const sent: string[] = [];
  const client = {
    query(q: { submit(c: unknown): void; handleReadyForQuery(): void; handleError(e: Error): void }) {
      query = q;
      q.submit({ stream: socket, query: (text: string) => sent.push(text) });
    },
  };
  return { client: client as unknown as pg.ClientBase, socket, sent };
}

function feed(socket: EventEmitter, bytes: Buffer, cuts: number[]) {
  let from = 0;
  for (const c of [...cuts, bytes.length]) {
    if (c > from) socket.emit('data', bytes.subarray(from, c));
    from = c;
  }
}

describe('copyOut', () => {
  it('hands every payload over and gives the rest back to pg, whatever the socket reads split', async () => {
    const whole = Buffer.concat([copyStream, afterCopy]);
    for (let a = 1; a < whole.length; a++) {
      for (const b of [a + 1, a + 7, whole.length - 1]) {
        const handedBack: Buffer[] = [];
        const { client, socket, sent } = fakeClient((bytes, q) => {
          handedBack.push(bytes);
          if (Buffer.concat(handedBack).equals(afterCopy)) q.handleReadyForQuery();
        });
        const got: string[] = [];
        const done = copyOut(client, 'COPY x TO STDOUT', (buf, s, e) => {
          got.push(buf.toString('latin1', s, e));
          return true;
        });
        feed(socket, whole, b > a && b < whole.length ? [a, b] : [a]);
        await expect(done).resolves.toBe(true);
        expect(sent).toEqual(['COPY x TO STDOUT']);
        expect(got).toEqual(payloads.map((p) => p.toString('latin1')));
        expect(Buffer.concat(handedBack).equals(afterCopy)).toBe(true);
        // The socket is pg's again.
        expect(socket.listeners('data')).toHaveLength(1);
      }
    }
  });

  it('gives an ErrorResponse to pg untouched, and the query fails with it', async () => {
    for (let a = 1; a < errorStream.length; a++) {
      const handedBack: Buffer[] = [];
      const { client, socket } = fakeClient((bytes, q) => {
        handedBack.push(bytes);
        if (Buffer.concat(handedBack).equals(msg('E', Buffer.from('Sboom\0')))) q.handleError(new Error('boom'));
      });
      const done = copyOut(client, 'COPY x TO STDOUT', () => true);
      feed(socket, errorStream, [a]);
      await expect(done).rejects.toThrow('boom');
    }
  });

  it('stops at once when the handler says so, and fails (not crashes) when it throws', async () => {
    const first = fakeClient(() => {});
    let calls = 0;
    const stopped = copyOut(first.client, 'COPY', () => ++calls < 2);
    feed(first.socket, copyStream, []);
    await expect(stopped).resolves.toBe(false);
    expect(calls).toBe(2);

    const second = fakeClient(() => {});
    const failed = copyOut(second.client, 'COPY', () => {
      throw new Error('bad tuple');
    });
    feed(second.socket, copyStream, [3]);
    await expect(failed).rejects.toThrow('bad tuple');
  });
});

describe('copyOutText', () => {
  it('pauses the socket while a batch waits for the reader and yields everything in order', async () => {
    const { client, socket } = fakeClient((_bytes, q) => q.handleReadyForQuery());
    const gen = copyOutText(client, 'COPY', (buf, s, e) => `${buf.toString('latin1', s, e)}\n`, 10);
    const first = gen.next();
    feed(socket, Buffer.concat([copyStream, afterCopy]), []);
    expect(socket.paused).toBe(true);
    const out = [(await first).value as string];
    for await (const piece of gen) out.push(piece);
    expect(out.join('')).toBe(payloads.map((p) => `${p.toString('latin1')}\n`).join(''));
    expect(socket.paused).toBe(false);
  });
});
