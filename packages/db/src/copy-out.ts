import type pg from 'pg';

/**
 * Runs `COPY ... TO STDOUT` on a pg client and hands every CopyData payload to
 * a callback straight from the socket's buffers.
 *
 * Why not pg-copy-streams: it re-frames the payloads into a Readable (a list
 * of slices per chunk, one concatenating copy, a stream push and an
 * async-iterator turn), and that transport cost was as large as the whole
 * hash check of a record in the audit verifier. Here the protocol is read in
 * place: the only copy is of a message split across two socket reads.
 *
 * Like pg-copy-streams, it borrows the connection's socket for the duration
 * of the COPY (pg's own 'data' listener is set aside) and gives everything
 * after CopyDone, or an ErrorResponse, back to pg, which then reports
 * CommandComplete/ReadyForQuery or the error to this query as usual.
 *
 * PostgreSQL sends one CopyData message per row (the binary header rides with
 * the first row, the trailer has one of its own).
 */
export type CopyPayloadHandler = (buf: Buffer, start: number, end: number) => boolean;

/**
 * Resolves true once the COPY completed and the connection is ready again;
 * false as soon as the handler returned false (the rest is not read: release
 * the client with `release(true)` so the half-read connection is discarded).
 */
export function copyOut(client: pg.ClientBase, sql: string, onPayload: CopyPayloadHandler): Promise<boolean> {
  return new Promise<boolean>((resolve, reject) => {
    client.query(new CopyOutQuery(sql, onPayload, resolve, reject) as unknown as pg.QueryConfig);
  });
}

/** Renders one CopyData payload as text (e.g. lines of an export). */
export type CopyPayloadRenderer = (buf: Buffer, start: number, end: number) => string;

/**
 * The same COPY as text batches pulled by the consumer: the socket is paused
 * while a batch of about `batchChars` waits, so a slow reader (an HTTP
 * download) holds back PostgreSQL instead of filling memory.
 */
export async function* copyOutText(
  client: pg.ClientBase,
  sql: string,
  render: CopyPayloadRenderer,
  batchChars = 256 * 1024,
): AsyncGenerator<string> {
  let pending = '';
  let finished = false;
  let failure: Error | null = null;
  let wake: (() => void) | null = null;
  const signal = () => {
    const w = wake;
    wake = null;
    w?.();
  };
  const query = new CopyOutQuery(
    sql,
    (buf, start, end) => {
      pending += render(buf, start, end);
      if (pending.length >= batchChars) {
        query.pause();
        signal();
      }
      return true;
    },
    () => {
      finished = true;
      signal();
    },
    (err) => {
      failure = err;
      signal();
    },
  );
  client.query(query as unknown as pg.QueryConfig);
  for (;;) {
    if (failure !== null) throw failure;
    if (pending.length >= batchChars || (finished && pending.length > 0)) {
      const out = pending;
      pending = '';
      yield out;
      query.resume();
      continue;
    }
    if (finished) return;
    await new Promise<void>((r) => {
      wake = r;
    });
  }
}

const MSG_COPY_DATA = 0x64; // 'd'
const MSG_COPY_DONE = 0x63; // 'c'
const MSG_COPY_OUT_RESPONSE = 0x48; // 'H'
const MSG_ERROR = 0x45; // 'E'
const MSG_NOTICE = 0x4e; // 'N'
const MSG_PARAMETER_STATUS = 0x53; // 'S'
const MSG_NOTIFICATION = 0x41; // 'A'

type DataListener = (chunk: Buffer) => void;
interface Socket {
  pause(): void;
  resume(): void;
  listeners(event: 'data'): DataListener[];
  on(event: 'data', l: DataListener): void;
  removeListener(event: 'data', l: DataListener): void;
}
interface Connection {
  stream: Socket;
  query(text: string): void;
}

class CopyOutQuery {
  private socket: Socket | null = null;
  /** Kept after the socket is handed back, so a paused reader can still be resumed. */
  private flow: Socket | null = null;
  private pgListener: DataListener | null = null;
  /** A message split across socket reads is assembled here. */
  private carry = Buffer.allocUnsafe(16 * 1024);
  private carryLen = 0;
  private settled = false;
  private readonly onData = (chunk: Buffer) => this.receive(chunk);

  constructor(
    readonly text: string,
    private readonly onPayload: CopyPayloadHandler,
    private readonly resolve: (complete: boolean) => void,
    private readonly reject: (err: Error) => void,
  ) {}

  /** Called by pg when this query's turn comes. */
  submit(connection: Connection): void {
    const socket = connection.stream;
    const listeners = socket.listeners('data');
    if (listeners.length !== 1)
      throw new Error(`copyOut: expected one data listener on the socket, found ${listeners.length}`);
    this.pgListener = listeners[0] as DataListener;
    socket.removeListener('data', this.pgListener);
    socket.on('data', this.onData);
    this.socket = socket;
    this.flow = socket;
    connection.query(this.text);
  }

  pause(): void {
    this.flow?.pause();
  }

  resume(): void {
    this.flow?.resume();
  }

  handleError(err: Error): void {
    this.detach(null);
    this.settle(() => this.reject(err));
  }

  handleCommandComplete(): void {}

  handleReadyForQuery(): void {
    this.settle(() => this.resolve(true));
  }

  private settle(fn: () => void): void {
    if (this.settled) return;
    this.settled = true;
    fn();
  }

  /** Hands the socket back to pg, with the bytes it has to read first. */
  private detach(rest: Buffer | null): void {
    const socket = this.socket;
    const pgListener = this.pgListener;
    if (socket === null || pgListener === null) return;
    this.socket = null;
    socket.removeListener('data', this.onData);
    socket.on('data', pgListener);
    if (rest !== null && rest.length > 0) pgListener(rest);
  }

  private receive(chunk: Buffer): void {
    if (this.settled) return; // stopped early: the connection is discarded
    try {
      this.read(chunk);
    } catch (err) {
      // A throw here would surface as an uncaught exception of the socket:
      // fail the query instead (the half-read connection must be discarded).
      this.settle(() => this.reject(err as Error));
    }
  }

  private read(chunk: Buffer): void {
    let p = 0;
    if (this.carryLen > 0) {
      p = this.fillCarry(chunk);
      if (p < 0) return;
      const carried = this.carry.subarray(0, this.carryLen);
      this.carryLen = 0;
      // An ErrorResponse is never carried (it is handed to pg as soon as its first byte is seen).
      if (carried[0] === MSG_COPY_DONE) {
        this.detach(chunk.subarray(p));
        return;
      }
      if (!this.message(carried, 0)) {
        if (!this.settled) this.detach(Buffer.concat([carried, chunk.subarray(p)]));
        return;
      }
    }
    const end = chunk.length;
    while (p < end) {
      const code = chunk[p] as number;
      if (code === MSG_ERROR) {
        this.detach(chunk.subarray(p));
        return;
      }
      if (p + 5 > end) {
        this.startCarry(chunk, p);
        return;
      }
      const next = p + 1 + chunk.readInt32BE(p + 1);
      if (next > end) {
        this.startCarry(chunk, p);
        return;
      }
      if (code === MSG_COPY_DONE) {
        this.detach(chunk.subarray(next));
        return;
      }
      if (!this.message(chunk, p)) {
        // Anything but row data, a notice or a status: not ours to read.
        if (!this.settled) this.detach(chunk.subarray(p));
        return;
      }
      p = next;
    }
  }

  /** Handles the complete message at buf[p]; false when reading stops (handler said stop, or not a COPY message). */
  private message(buf: Buffer, p: number): boolean {
    const code = buf[p] as number;
    if (code === MSG_COPY_DATA) {
      const end = p + 1 + buf.readInt32BE(p + 1);
      if (this.onPayload(buf, p + 5, end)) return true;
      this.settle(() => this.resolve(false));
      return false;
    }
    return (
      code === MSG_COPY_OUT_RESPONSE ||
      code === MSG_NOTICE ||
      code === MSG_PARAMETER_STATUS ||
      code === MSG_NOTIFICATION
    );
  }

  private startCarry(chunk: Buffer, p: number): void {
    const n = chunk.length - p;
    this.ensureCarry(n);
    chunk.copy(this.carry, 0, p);
    this.carryLen = n;
  }

  /** Completes the carried message from the chunk; returns the offset after it, or -1 when more is needed. */
  private fillCarry(chunk: Buffer): number {
    let p = 0;
    if (this.carryLen < 5) {
      const n = Math.min(5 - this.carryLen, chunk.length);
      chunk.copy(this.carry, this.carryLen, 0, n);
      this.carryLen += n;
      p = n;
      if (this.carryLen < 5) return -1;
    }
    const total = 1 + this.carry.readInt32BE(1);
    this.ensureCarry(total);
    const n = Math.min(total - this.carryLen, chunk.length - p);
    chunk.copy(this.carry, this.carryLen, p, p + n);
    this.carryLen += n;
    return this.carryLen < total ? -1 : p + n;
  }

  private ensureCarry(n: number): void {
    if (n <= this.carry.length) return;
    const next = Buffer.allocUnsafe(Math.max(n, this.carry.length * 2));
    this.carry.copy(next, 0, 0, this.carryLen);
    this.carry = next;
  }
}
