import { type ByteSink, writeCanonicalJsonb, writeJsonString } from './audit-canonical.ts';

/**
 * Reading audit records from `COPY ... TO STDOUT (FORMAT binary)` without
 * allocating per field: tuples are handed over as the buffer they arrived in
 * plus a table of field offsets and lengths, and the canonical record body is written from
 * those bytes (see audit-canonical.ts for why that is exact).
 */
const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');

/** The column list every binary COPY of audit records uses, in this order. */
export const RECORD_COLUMNS =
  'seq, at, actor_id, actor_type, action, resource_type, resource_id, details, prev_hash, hash';
export const F = {
  seq: 0,
  at: 1,
  actorId: 2,
  actorType: 3,
  action: 4,
  resourceType: 5,
  resourceId: 6,
  details: 7,
  prevHash: 8,
  hash: 9,
} as const;
const FIELDS = 10;

/** `field[2i]` is the offset of field i in the tuple buffer, `field[2i+1]` its length (-1: NULL). */
export type TupleHandler = (buf: Buffer, field: Int32Array) => boolean;

/**
 * Splits the CopyData payloads of a binary COPY (copy-out.ts) into tuples,
 * in place. A payload is one row; the first also carries the file header,
 * the last is the trailer.
 */
export class CopyRowParser {
  private headerDone = false;
  private readonly field = new Int32Array(FIELDS * 2);
  /** The trailer was seen: every row arrived. */
  done = false;

  constructor(private readonly onTuple: TupleHandler) {}

  /** One CopyData payload buf[start..end); returns false when the handler asked to stop. */
  readonly payload = (buf: Buffer, start: number, end: number): boolean => {
    let p = start;
    if (!this.headerDone) {
      if (end - p < 19 || buf.compare(SIGNATURE, 0, 11, p, p + 11) !== 0) throw new Error('unexpected COPY header');
      p += 19 + buf.readInt32BE(p + 15);
      this.headerDone = true;
    }
    const field = this.field;
    while (p < end) {
      if (p + 2 > end) throw new Error('truncated COPY tuple');
      const count = buf.readInt16BE(p);
      if (count === -1) {
        this.done = true;
        return true;
      }
      if (count !== FIELDS) throw new Error(`unexpected COPY tuple of ${count} fields`);
      let q = p + 2;
      for (let f = 0; f < FIELDS; f++) {
        if (q + 4 > end) throw new Error('truncated COPY tuple');
        const len = buf.readInt32BE(q);
        field[f * 2] = q + 4;
        field[f * 2 + 1] = len;
        q += 4 + (len > 0 ? len : 0);
      }
      if (q > end) throw new Error('truncated COPY tuple');
      if (!this.onTuple(buf, field)) return false;
      p = q;
    }
    return true;
  };
}

const PG_EPOCH_MS = 946_684_800_000;
const lit = (s: string) => Buffer.from(s, 'utf8');
const K_ACTION = lit('{"action":');
const K_ACTOR_ID = lit(',"actor_id":');
const K_ACTOR_TYPE = lit(',"actor_type":');
const K_AT = lit(',"at":"');
const K_DETAILS = lit('","details":');
const K_RESOURCE_TYPE = lit(',"resource_type":');

/** Seq of a tuple (int8, big-endian). */
export const tupleSeq = (buf: Buffer, field: Int32Array): number => {
  const o = field[F.seq * 2] as number;
  return buf.readInt32BE(o) * 4_294_967_296 + buf.readUInt32BE(o + 4);
};

/**
 * Writes the canonical body of one tuple (the same bytes canonicalAuditBody
 * produces for the record's columns) into the sink. Keys are in RFC 8785
 * order: action, actor_id, actor_type, at, details, org_id, resource_id, resource_type.
 */
export class RecordBodyWriter {
  private readonly orgKeys: Buffer;
  private minuteCached = Number.NaN;
  private minutePrefix = Buffer.alloc(0);

  constructor(orgId: string) {
    this.orgKeys = lit(`,"org_id":${JSON.stringify(orgId)},"resource_id":`);
  }

  /**
   * `canonicalDetails` false: the details text is written as stored (the
   * canonical text the appender hashed, since migration 0010); true: it is
   * canonicalised first (jsonb's rendering, stored before that migration).
   */
  write(buf: Buffer, f: Int32Array, s: ByteSink, canonicalDetails = false): void {
    // Hot path: offsets are read inline (no per-record closures).
    s.bytes(K_ACTION, 0, K_ACTION.length);
    writeJsonString(buf, f[8] as number, (f[8] as number) + (f[9] as number), s);
    s.bytes(K_ACTOR_ID, 0, K_ACTOR_ID.length);
    writeJsonString(buf, f[4] as number, (f[4] as number) + (f[5] as number), s);
    s.bytes(K_ACTOR_TYPE, 0, K_ACTOR_TYPE.length);
    writeJsonString(buf, f[6] as number, (f[6] as number) + (f[7] as number), s);
    s.bytes(K_AT, 0, K_AT.length);
    const at = f[2] as number;
    const us = buf.readInt32BE(at) * 4_294_967_296 + buf.readUInt32BE(at + 4);
    const ms = Math.floor(us / 1000) + PG_EPOCH_MS;
    const minute = Math.floor(ms / 60_000);
    if (minute !== this.minuteCached) {
      // Consecutive records mostly share their minute: format it once ("YYYY-MM-DDTHH:MM:").
      this.minuteCached = minute;
      const iso = new Date(minute * 60_000).toISOString();
      this.minutePrefix = Buffer.from(iso.slice(0, iso.length - 7), 'latin1');
    }
    s.bytes(this.minutePrefix, 0, this.minutePrefix.length);
    const inMinute = ms - minute * 60_000;
    const sec = Math.floor(inMinute / 1000);
    const frac = inMinute - sec * 1000;
    s.ensure(6);
    const b = s.buf;
    b[s.pos++] = 0x30 + Math.floor(sec / 10);
    b[s.pos++] = 0x30 + (sec % 10);
    b[s.pos++] = 0x2e;
    b[s.pos++] = 0x30 + Math.floor(frac / 100);
    b[s.pos++] = 0x30 + (Math.floor(frac / 10) % 10);
    b[s.pos++] = 0x30 + (frac % 10);
    // Appends store whole milliseconds; sub-millisecond digits were never
    // hashed, so writing them makes such a stored value fail its hash.
    const sub = ((us % 1000) + 1000) % 1000;
    if (sub !== 0) s.text(String(sub).padStart(3, '0'));
    s.byte(0x5a);
    s.bytes(K_DETAILS, 0, K_DETAILS.length);
    // json in binary is its text, exactly as stored.
    const d = f[14] as number;
    const dEnd = d + Math.max(0, f[15] as number);
    if (dEnd === d) {
      s.byte(0);
    } else if (!canonicalDetails) {
      s.bytes(buf, d, dEnd);
    } else {
      try {
        writeCanonicalJsonb(buf, d, dEnd, s);
      } catch {
        // Not canonicalisable: cannot be what was hashed, and the hash will say so.
        s.byte(0);
      }
    }
    s.bytes(this.orgKeys, 0, this.orgKeys.length);
    writeJsonString(buf, f[12] as number, (f[12] as number) + (f[13] as number), s);
    s.bytes(K_RESOURCE_TYPE, 0, K_RESOURCE_TYPE.length);
    writeJsonString(buf, f[10] as number, (f[10] as number) + (f[11] as number), s);
    s.byte(0x7d);
  }
}
