/**
 * A deliberately small DER toolkit.
 *
 * Why not a general ASN.1 library: leaf issuance is on the hot path and the
 * schema-driven encoders (asn1js / @peculiar/asn1-schema) spend far more time
 * building object graphs than ECDSA spends signing. Certificates only need a
 * handful of universal types, so we write the TLVs directly and keep every
 * encoder total (it either produces canonical DER or throws).
 *
 * The reader is equally small and strict (definite, minimal lengths only),
 * because it parses attacker-supplied CSRs: anything that is not canonical
 * DER is rejected rather than interpreted.
 */

export const TAG_BOOLEAN = 0x01;
export const TAG_INTEGER = 0x02;
export const TAG_BIT_STRING = 0x03;
export const TAG_OCTET_STRING = 0x04;
export const TAG_NULL = 0x05;
export const TAG_OID = 0x06;
export const TAG_UTF8_STRING = 0x0c;
export const TAG_PRINTABLE_STRING = 0x13;
export const TAG_T61_STRING = 0x14;
export const TAG_IA5_STRING = 0x16;
export const TAG_UTC_TIME = 0x17;
export const TAG_GENERALIZED_TIME = 0x18;
export const TAG_UNIVERSAL_STRING = 0x1c;
export const TAG_BMP_STRING = 0x1e;
export const TAG_SEQUENCE = 0x30;
export const TAG_SET = 0x31;

export class DerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DerError';
  }
}

// ---------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------

function lengthOctetCount(len: number): number {
  if (len < 0x80) return 1;
  if (len < 0x100) return 2;
  if (len < 0x10000) return 3;
  if (len < 0x1000000) return 4;
  return 5;
}

function writeHeader(out: Buffer, tag: number, len: number): number {
  out[0] = tag;
  if (len < 0x80) {
    out[1] = len;
    return 2;
  }
  const n = lengthOctetCount(len) - 1;
  out[1] = 0x80 | n;
  for (let i = 0; i < n; i++) {
    out[2 + i] = (len >>> (8 * (n - 1 - i))) & 0xff;
  }
  return 2 + n;
}

/** Encodes one TLV whose content is already DER. Tags are single-octet (low tag numbers only). */
export function tlv(tag: number, content: Uint8Array): Buffer {
  const len = content.length;
  const out = Buffer.allocUnsafe(1 + lengthOctetCount(len) + len);
  const h = writeHeader(out, tag, len);
  out.set(content, h);
  return out;
}

/** Encodes a constructed TLV from already-encoded children without an intermediate concat. */
export function constructed(tag: number, parts: readonly Uint8Array[]): Buffer {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = Buffer.allocUnsafe(1 + lengthOctetCount(len) + len);
  let pos = writeHeader(out, tag, len);
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

export function sequence(...parts: Uint8Array[]): Buffer {
  return constructed(TAG_SEQUENCE, parts);
}

/**
 * SET OF. DER requires the elements to be sorted by their encodings; every
 * SET we emit has a single element, but sort anyway so the helper is correct.
 */
export function setOf(...parts: Uint8Array[]): Buffer {
  const sorted = parts.length > 1 ? [...parts].sort((a, b) => Buffer.compare(a, b)) : parts;
  return constructed(TAG_SET, sorted);
}

/** [n] EXPLICIT — constructed context-specific wrapper around one encoded element. */
export function explicit(tagNumber: number, inner: Uint8Array): Buffer {
  if (tagNumber < 0 || tagNumber > 30) throw new DerError(`context tag ${tagNumber} out of range`);
  return tlv(0xa0 | tagNumber, inner);
}

/** [n] IMPLICIT on a primitive type — the content octets keep the underlying type's encoding. */
export function implicitPrimitive(tagNumber: number, content: Uint8Array): Buffer {
  if (tagNumber < 0 || tagNumber > 30) throw new DerError(`context tag ${tagNumber} out of range`);
  return tlv(0x80 | tagNumber, content);
}

/**
 * INTEGER from unsigned big-endian magnitude bytes. DER demands the shortest
 * two's-complement form: drop redundant leading zeros, and add one zero back
 * when the top bit is set so the value stays positive.
 */
export function integerFromUnsigned(magnitude: Uint8Array): Buffer {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  const body = magnitude.subarray(start);
  if (body.length === 0) return Buffer.from([TAG_INTEGER, 1, 0]);
  const first = body[0] ?? 0;
  if (first & 0x80) {
    const content = Buffer.allocUnsafe(body.length + 1);
    content[0] = 0;
    content.set(body, 1);
    return tlv(TAG_INTEGER, content);
  }
  return tlv(TAG_INTEGER, body);
}

export function smallInteger(value: number): Buffer {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new DerError(`smallInteger expects a non-negative safe integer, got ${value}`);
  }
  const bytes: number[] = [];
  let v = value;
  do {
    bytes.unshift(v % 256);
    v = Math.floor(v / 256);
  } while (v > 0);
  return integerFromUnsigned(Uint8Array.from(bytes));
}

export function boolean(value: boolean): Buffer {
  // DER fixes TRUE as 0xFF (BER would allow any non-zero octet).
  return Buffer.from([TAG_BOOLEAN, 1, value ? 0xff : 0x00]);
}

export function nullValue(): Buffer {
  return Buffer.from([TAG_NULL, 0]);
}

export function octetString(content: Uint8Array): Buffer {
  return tlv(TAG_OCTET_STRING, content);
}

export function bitString(content: Uint8Array, unusedBits = 0): Buffer {
  if (unusedBits < 0 || unusedBits > 7 || (content.length === 0 && unusedBits !== 0)) {
    throw new DerError(`invalid unused bit count ${unusedBits}`);
  }
  const out = Buffer.allocUnsafe(1 + content.length);
  out[0] = unusedBits;
  out.set(content, 1);
  return tlv(TAG_BIT_STRING, out);
}

/**
 * Named-bit-list BIT STRING (e.g. KeyUsage). DER (X.690 11.2.2) requires
 * trailing zero bits to be removed, so the length and unused-bit count depend
 * on the highest bit set.
 */
export function namedBits(bits: readonly number[]): Buffer {
  if (bits.length === 0) return bitString(new Uint8Array(0));
  const highest = Math.max(...bits);
  const byteCount = Math.floor(highest / 8) + 1;
  const content = new Uint8Array(byteCount);
  for (const bit of bits) {
    const idx = Math.floor(bit / 8);
    content[idx] = (content[idx] ?? 0) | (0x80 >> (bit % 8));
  }
  return bitString(content, 7 - (highest % 8));
}

// Certificates use a few dozen distinct OIDs; caching their encodings takes
// string parsing off the issuance path. Encoders only ever copy their inputs,
// so sharing the cached Buffers is safe.
const oidCache = new Map<string, Buffer>();

export function oid(dotted: string): Buffer {
  let encoded = oidCache.get(dotted);
  if (encoded === undefined) {
    encoded = encodeOid(dotted);
    if (oidCache.size < 1024) oidCache.set(dotted, encoded);
  }
  return encoded;
}

function encodeOid(dotted: string): Buffer {
  const arcs = dotted.split('.').map((s) => {
    if (!/^(0|[1-9][0-9]*)$/.test(s)) throw new DerError(`invalid OID ${dotted}`);
    const n = Number(s);
    if (!Number.isSafeInteger(n)) throw new DerError(`OID arc too large in ${dotted}`);
    return n;
  });
  const [a, b, ...rest] = arcs;
  if (a === undefined || b === undefined || a > 2 || (a < 2 && b > 39)) {
    throw new DerError(`invalid OID ${dotted}`);
  }
  const bytes: number[] = [];
  for (const arc of [a * 40 + b, ...rest]) {
    const chunk: number[] = [];
    let v = arc;
    do {
      chunk.unshift(v % 128);
      v = Math.floor(v / 128);
    } while (v > 0);
    for (let i = 0; i < chunk.length - 1; i++) chunk[i] = (chunk[i] ?? 0) | 0x80;
    bytes.push(...chunk);
  }
  return tlv(TAG_OID, Uint8Array.from(bytes));
}

export function utf8String(value: string): Buffer {
  return tlv(TAG_UTF8_STRING, Buffer.from(value, 'utf8'));
}

const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;

export function printableString(value: string): Buffer {
  if (!PRINTABLE.test(value)) throw new DerError(`not a PrintableString: ${JSON.stringify(value)}`);
  return tlv(TAG_PRINTABLE_STRING, Buffer.from(value, 'latin1'));
}

/** Content octets of an IA5String (also used under IMPLICIT tags, e.g. dNSName). */
export function ia5Bytes(value: string): Buffer {
  // IA5 is 7-bit ASCII; silently re-encoding other characters would change the name.
  for (let i = 0; i < value.length; i++) {
    if (value.charCodeAt(i) > 0x7f) throw new DerError(`not an IA5String: ${JSON.stringify(value)}`);
  }
  return Buffer.from(value, 'latin1');
}

export function ia5String(value: string): Buffer {
  return tlv(TAG_IA5_STRING, ia5Bytes(value));
}

function pad2(n: number): string {
  return n < 10 ? `0${n}` : String(n);
}

/**
 * RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050, always
 * in UTC ("Z") with whole seconds. Sub-second precision is truncated, so
 * callers that report the time should truncate first (see floorToSecond).
 */
export function time(date: Date): Buffer {
  const ms = date.getTime();
  if (!Number.isFinite(ms)) throw new DerError('invalid date');
  const year = date.getUTCFullYear();
  const rest =
    pad2(date.getUTCMonth() + 1) +
    pad2(date.getUTCDate()) +
    pad2(date.getUTCHours()) +
    pad2(date.getUTCMinutes()) +
    pad2(date.getUTCSeconds()) +
    'Z';
  if (year >= 1950 && year <= 2049) {
    return tlv(TAG_UTC_TIME, Buffer.from(pad2(year % 100) + rest, 'latin1'));
  }
  if (year < 0 || year > 9999) throw new DerError(`year ${year} cannot be encoded`);
  return tlv(TAG_GENERALIZED_TIME, Buffer.from(String(year).padStart(4, '0') + rest, 'latin1'));
}

export function floorToSecond(date: Date): Date {
  return new Date(Math.floor(date.getTime() / 1000) * 1000);
}

// ---------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------

export interface DerElement {
  /** The single identifier octet (class, constructed bit, tag number). */
  readonly tag: number;
  /** Offset of the identifier octet. */
  readonly start: number;
  /** Offset of the first content octet. */
  readonly contentStart: number;
  /** Offset just past the last content octet. */
  readonly end: number;
}

/** Reads one TLV at `offset`, which must end at or before `limit`. */
export function readElement(buf: Uint8Array, offset: number, limit: number = buf.length): DerElement {
  if (offset + 2 > limit) throw new DerError('truncated element header');
  const tag = buf[offset] ?? 0;
  if ((tag & 0x1f) === 0x1f) throw new DerError('high-tag-number form is not supported');
  const first = buf[offset + 1] ?? 0;
  let pos = offset + 2;
  let len: number;
  if (first < 0x80) {
    len = first;
  } else {
    const n = first & 0x7f;
    if (n === 0) throw new DerError('indefinite length is not DER');
    if (n > 4) throw new DerError('length too large');
    if (pos + n > limit) throw new DerError('truncated length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (buf[pos + i] ?? 0);
    pos += n;
    // Minimal length encoding: long form only when needed, no leading zero octets.
    if (len < 0x80 || (buf[pos - n] ?? 0) === 0) throw new DerError('non-minimal length encoding');
  }
  const end = pos + len;
  if (end > limit) throw new DerError('element extends past its container');
  return { tag, start: offset, contentStart: pos, end };
}

/** Reads an element and checks its tag. */
export function expectElement(buf: Uint8Array, offset: number, tag: number, limit?: number): DerElement {
  const el = readElement(buf, offset, limit);
  if (el.tag !== tag) {
    throw new DerError(`expected tag 0x${tag.toString(16)}, found 0x${el.tag.toString(16)}`);
  }
  return el;
}

/** Splits the content of a constructed element into its children. */
export function children(buf: Uint8Array, parent: DerElement): DerElement[] {
  if ((parent.tag & 0x20) === 0) throw new DerError('expected a constructed element');
  const out: DerElement[] = [];
  let pos = parent.contentStart;
  while (pos < parent.end) {
    const el = readElement(buf, pos, parent.end);
    out.push(el);
    pos = el.end;
  }
  return out;
}

/** Parses `buf` as exactly one top-level element (trailing bytes are an error). */
export function readTopLevel(buf: Uint8Array, tag: number): DerElement {
  const el = expectElement(buf, 0, tag);
  if (el.end !== buf.length) throw new DerError('trailing data after DER element');
  return el;
}

export function content(buf: Uint8Array, el: DerElement): Buffer {
  return Buffer.from(buf.buffer, buf.byteOffset + el.contentStart, el.end - el.contentStart);
}

export function whole(buf: Uint8Array, el: DerElement): Buffer {
  return Buffer.from(buf.buffer, buf.byteOffset + el.start, el.end - el.start);
}

export function decodeOid(bytes: Uint8Array): string {
  if (bytes.length === 0) throw new DerError('empty OID');
  const arcs: number[] = [];
  let value = 0;
  let fresh = true;
  for (const b of bytes) {
    if (fresh && b === 0x80) throw new DerError('non-minimal OID arc');
    value = value * 128 + (b & 0x7f);
    if (!Number.isSafeInteger(value)) throw new DerError('OID arc too large');
    fresh = false;
    if ((b & 0x80) === 0) {
      arcs.push(value);
      value = 0;
      fresh = true;
    }
  }
  if (!fresh) throw new DerError('truncated OID');
  const [first, ...rest] = arcs;
  if (first === undefined) throw new DerError('empty OID');
  const head = first < 40 ? [0, first] : first < 80 ? [1, first - 40] : [2, first - 80];
  return [...head, ...rest].join('.');
}

export function readOid(buf: Uint8Array, el: DerElement): string {
  if (el.tag !== TAG_OID) throw new DerError('expected an OBJECT IDENTIFIER');
  return decodeOid(content(buf, el));
}

/** Decodes UTCTime / GeneralizedTime in the restricted RFC 5280 form (Z, whole seconds). */
export function readTime(buf: Uint8Array, el: DerElement): Date {
  const s = content(buf, el).toString('latin1');
  let m: RegExpExecArray | null;
  let year: number;
  if (el.tag === TAG_UTC_TIME) {
    m = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s);
    if (!m) throw new DerError(`invalid UTCTime ${JSON.stringify(s)}`);
    const yy = Number(m[1]);
    year = yy >= 50 ? 1900 + yy : 2000 + yy;
  } else if (el.tag === TAG_GENERALIZED_TIME) {
    m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s);
    if (!m) throw new DerError(`invalid GeneralizedTime ${JSON.stringify(s)}`);
    year = Number(m[1]);
  } else {
    throw new DerError('expected a time value');
  }
  const d = new Date(Date.UTC(2000, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])));
  // Date.UTC maps years 0-99 to 1900-1999, so set the real year separately.
  d.setUTCFullYear(year);
  // Date.UTC would silently roll over e.g. month 13; reject instead.
  if (d.getUTCMonth() !== Number(m[2]) - 1 || d.getUTCDate() !== Number(m[3])) {
    throw new DerError(`invalid date ${JSON.stringify(s)}`);
  }
  return d;
}
