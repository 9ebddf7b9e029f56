import { canonicalJson } from './canonical-json.ts';

/**
 * The canonical (RFC 8785) bytes of audit details stored as jsonb's text
 * rendering (records written before migration 0010; newer ones store the
 * canonical text itself and are hashed as stored), built straight from the
 * bytes PostgreSQL sends, without JSON.parse + re-serialisation.
 *
 * It relies on three properties of PostgreSQL's jsonb text output (jsonb_out):
 * - strings are escaped exactly as ECMAScript JSON.stringify escapes them
 *   (\b \f \n \r \t \" \\ and \u00xx for other controls, everything else
 *   verbatim), so string tokens are already canonical and are copied as bytes;
 * - the only whitespace is one space after ':' and ',';
 * - numbers are decimal text; integers of up to 15 digits are already in
 *   ECMAScript form, anything else is re-rendered through Number (which is
 *   what the appender's canonicalisation did to the original value).
 * Object members are re-sorted by UTF-16 code units (jsonb sorts by length
 * first). Anything unexpected throws, and the caller reports the record as not
 * matching its hash; the unit and integration tests compare this path with
 * canonicalJson(JSON.parse(text)) on PostgreSQL's real output.
 */
export class ByteSink {
  buf: Buffer;
  pos = 0;
  private view: DataView;
  // DataViews of the sources copied from: the current COPY chunk (large) and
  // one other (a long constant). Creating a view costs more than a short copy.
  private chunkBuf: Buffer | null = null;
  private chunkView: DataView | null = null;
  private otherBuf: Buffer | null = null;
  private otherView: DataView | null = null;

  constructor(size = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(size);
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
  }

  ensure(extra: number): void {
    if (this.pos + extra <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + extra + 1024));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
    this.view = new DataView(next.buffer, next.byteOffset, next.byteLength);
  }

  /**
   * Copies src[start..end). Buffer#copy and TypedArray#set have a fixed cost
   * several times that of copying a short span 4 bytes at a time through
   * DataViews, and spans here are short (ids, keys, small values).
   */
  bytes(src: Buffer, start: number, end: number): void {
    const n = end - start;
    this.ensure(n);
    const b = this.buf;
    let p = this.pos;
    let i = start;
    let sv: DataView | null = null;
    if (src === this.chunkBuf) sv = this.chunkView;
    else if (src === this.otherBuf) sv = this.otherView;
    else if (n >= 24) {
      sv = new DataView(src.buffer, src.byteOffset, src.byteLength);
      if (src.length > 4096) {
        this.chunkBuf = src;
        this.chunkView = sv;
      } else {
        this.otherBuf = src;
        this.otherView = sv;
      }
    }
    if (sv !== null) {
      const dv = this.view;
      for (; i + 4 <= end; i += 4, p += 4) dv.setUint32(p, sv.getUint32(i));
    }
    for (; i < end; i++) b[p++] = src[i] as number;
    this.pos = p;
  }

  byte(c: number): void {
    this.ensure(1);
    this.buf[this.pos++] = c;
  }

  text(s: string): void {
    this.ensure(s.length * 3);
    this.pos += this.buf.write(s, this.pos, 'utf8');
  }
}

export class CanonicalFormError extends Error {}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;

const isWs = (c: number | undefined) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

function skipWs(src: Buffer, i: number, end: number): number {
  while (i < end && isWs(src[i])) i++;
  return i;
}

/**
 * Index just past the closing quote of the string token starting at i.
 * Escapes other than the ones JSON.stringify writes (\u00xx for a control
 * character without a short form; \" \\ \b \f \n \r \t) throw, so such
 * text takes the exact parse-and-serialise path: jsonb never renders them,
 * but json text stored by hand can hold them.
 */
function stringEnd(src: Buffer, i: number, end: number): number {
  for (let q = i + 1; q < end; q++) {
    const c = src[q] as number;
    if (c === QUOTE) return q + 1;
    if (c < 0x20) throw new CanonicalFormError('control character in a string');
    if (c !== BACKSLASH) continue;
    const e = src[++q];
    if (e === QUOTE || e === BACKSLASH || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74) continue;
    if (e !== 0x75 || q + 4 >= end) throw new CanonicalFormError('escape JSON.stringify does not write');
    // JSON.stringify writes \u00xx in lower case, only for controls without a short form.
    const hex = src.toString('latin1', q + 1, q + 5);
    const code = Number.parseInt(hex, 16);
    const short = code === 0x08 || code === 0x09 || code === 0x0a || code === 0x0c || code === 0x0d;
    if (!(code < 0x20) || short || hex !== code.toString(16).padStart(4, '0')) {
      throw new CanonicalFormError('escape JSON.stringify does not write');
    }
    q += 4;
  }
  throw new CanonicalFormError('unterminated string');
}

function valueEnd(src: Buffer, i: number, end: number): number {
  const c = src[i];
  if (c === QUOTE) return stringEnd(src, i, end);
  if (c === 0x7b || c === 0x5b) {
    let depth = 0;
    while (i < end) {
      const d = src[i] as number;
      if (d === QUOTE) {
        i = stringEnd(src, i, end);
        continue;
      }
      if (d === 0x7b || d === 0x5b) depth++;
      else if (d === 0x7d || d === 0x5d) {
        depth--;
        if (depth === 0) return i + 1;
      }
      i++;
    }
    throw new CanonicalFormError('unterminated container');
  }
  while (i < end) {
    const d = src[i] as number;
    if (d === COMMA || d === 0x7d || d === 0x5d || isWs(d)) break;
    i++;
  }
  return i;
}

/** Key order of RFC 8785: UTF-16 code units of the unescaped names (tokens include their quotes). */
function compareKeys(src: Buffer, a0: number, a1: number, b0: number, b1: number): number {
  let i = a0 + 1;
  let j = b0 + 1;
  const ae = a1 - 1;
  const be = b1 - 1;
  while (i < ae && j < be) {
    const x = src[i] as number;
    const y = src[j] as number;
    // Escapes and non-ASCII: bytes no longer order like UTF-16 code units.
    if (x >= 0x80 || y >= 0x80 || x === BACKSLASH || y === BACKSLASH) return compareDecoded(src, a0, a1, b0, b1);
    if (x !== y) return x - y;
    i++;
    j++;
  }
  // Equal so far: the shorter name (even counting an escape as one unit) sorts first.
  return ae - i - (be - j);
}

function compareDecoded(src: Buffer, a0: number, a1: number, b0: number, b1: number): number {
  const a = JSON.parse(src.toString('utf8', a0, a1)) as string;
  const b = JSON.parse(src.toString('utf8', b0, b1)) as string;
  return a < b ? -1 : a > b ? 1 : 0;
}

let stack = new Int32Array(1024);
let stackTop = 0;

function ensureStack(n: number): void {
  if (stackTop + n <= stack.length) return;
  const next = new Int32Array(Math.max(stack.length * 2, stackTop + n));
  next.set(stack);
  stack = next;
}

function push4(a: number, b: number, c: number, d: number): void {
  ensureStack(4);
  stack[stackTop++] = a;
  stack[stackTop++] = b;
  stack[stackTop++] = c;
  stack[stackTop++] = d;
}

function writeNumber(src: Buffer, i: number, e: number, out: ByteSink): void {
  let j = i;
  if (src[j] === 0x2d) j++;
  const digitsStart = j;
  while (j < e && (src[j] as number) >= 0x30 && (src[j] as number) <= 0x39) j++;
  const digits = j - digitsStart;
  // "0" is canonical, "-0" and leading zeros are not.
  const plainInt =
    j === e && digits >= 1 && digits <= 15 && (src[digitsStart] !== 0x30 || (digits === 1 && i === digitsStart));
  if (plainInt) {
    out.bytes(src, i, e);
    return;
  }
  const n = Number(src.toString('latin1', i, e));
  if (!Number.isFinite(n)) throw new CanonicalFormError('number out of range');
  out.text(JSON.stringify(n));
}

/** Writes the canonical form of the JSON value at src[i..]; returns the index after it. */
export function writeCanonicalValue(src: Buffer, i: number, end: number, out: ByteSink): number {
  i = skipWs(src, i, end);
  const c = src[i];
  if (c === QUOTE) {
    const e = stringEnd(src, i, end);
    out.bytes(src, i, e);
    return e;
  }
  if (c === 0x7b) {
    // Member spans [keyStart, keyEnd, valueStart, valueEnd] go on a shared
    // stack (no per-object arrays), are sorted by index, then written.
    const base = stackTop;
    i = skipWs(src, i + 1, end);
    if (src[i] !== 0x7d) {
      for (;;) {
        if (src[i] !== QUOTE) throw new CanonicalFormError('expected a member name');
        const ke = stringEnd(src, i, end);
        let v = skipWs(src, ke, end);
        if (src[v] !== COLON) throw new CanonicalFormError('expected ":"');
        v = skipWs(src, v + 1, end);
        const ve = valueEnd(src, v, end);
        push4(i, ke, v, ve);
        i = skipWs(src, ve, end);
        if (src[i] === COMMA) {
          i = skipWs(src, i + 1, end);
          continue;
        }
        if (src[i] === 0x7d) break;
        stackTop = base;
        throw new CanonicalFormError('expected "," or "}"');
      }
    }
    const count = (stackTop - base) / 4;
    const order = stackTop;
    ensureStack(count);
    stackTop += count;
    const st = stack;
    // Insertion sort of member indexes: objects in audit details are small.
    for (let k = 0; k < count; k++) {
      const k0 = st[base + k * 4] as number;
      const k1 = st[base + k * 4 + 1] as number;
      let p = k;
      while (p > 0) {
        const prev = base + (st[order + p - 1] as number) * 4;
        if (compareKeys(src, st[prev] as number, st[prev + 1] as number, k0, k1) <= 0) break;
        st[order + p] = st[order + p - 1] as number;
        p--;
      }
      st[order + p] = k;
    }
    out.byte(0x7b);
    try {
      for (let k = 0; k < count; k++) {
        const idx = base + (stack[order + k] as number) * 4;
        if (k > 0) out.byte(COMMA);
        out.bytes(src, stack[idx] as number, stack[idx + 1] as number);
        out.byte(COLON);
        const vs = stack[idx + 2] as number;
        // Strings are already canonical: copy the span found above without scanning it again.
        if (src[vs] === QUOTE) out.bytes(src, vs, stack[idx + 3] as number);
        else writeCanonicalValue(src, vs, end, out);
      }
    } finally {
      stackTop = base;
    }
    out.byte(0x7d);
    return i + 1;
  }
  if (c === 0x5b) {
    out.byte(0x5b);
    i = skipWs(src, i + 1, end);
    if (src[i] !== 0x5d) {
      let first = true;
      for (;;) {
        if (!first) out.byte(COMMA);
        first = false;
        i = skipWs(src, writeCanonicalValue(src, i, end, out), end);
        if (src[i] === COMMA) {
          i++;
          continue;
        }
        if (src[i] === 0x5d) break;
        throw new CanonicalFormError('expected "," or "]"');
      }
    }
    out.byte(0x5d);
    return i + 1;
  }
  const e = valueEnd(src, i, end);
  if (e === i) throw new CanonicalFormError('expected a value');
  if (c === 0x74 || c === 0x66 || c === 0x6e) {
    const word = src.toString('latin1', i, e);
    if (word !== 'true' && word !== 'false' && word !== 'null') throw new CanonicalFormError(`unexpected ${word}`);
    out.bytes(src, i, e);
    return e;
  }
  writeNumber(src, i, e, out);
  return e;
}

/** Canonical JSON of the jsonb text in src[start..end), falling back to parse + canonicalize on odd input. */
export function writeCanonicalJsonb(src: Buffer, start: number, end: number, out: ByteSink): void {
  const mark = out.pos;
  try {
    const e = skipWs(src, writeCanonicalValue(src, start, end, out), end);
    if (e !== end) throw new CanonicalFormError('trailing bytes');
  } catch (err) {
    if (!(err instanceof CanonicalFormError)) throw err;
    out.pos = mark;
    // Throws again (a record whose details cannot be canonicalized cannot verify).
    out.text(canonicalJson(JSON.parse(src.toString('utf8', start, end))));
  }
}

/** A JSON string token for raw UTF-8 text bytes (a text column), escaped like JSON.stringify. */
export function writeJsonString(src: Buffer, start: number, end: number, out: ByteSink): void {
  for (let i = start; i < end; i++) {
    const c = src[i] as number;
    if (c < 0x20 || c === QUOTE || c === BACKSLASH) {
      out.text(JSON.stringify(src.toString('utf8', start, end)));
      return;
    }
  }
  // Almost every value needs no escaping: quote it and copy the bytes.
  out.byte(QUOTE);
  out.bytes(src, start, end);
  out.byte(QUOTE);
}
