import { hash } from 'node:crypto';
import { ByteSink } from './audit-canonical.ts';

/**
 * The chain walk shared by every verifier (database stream, exported ledger
 * file): records arrive in seq order with their canonical body already written
 * into `sink` after a 40-byte prefix; the walk checks the sequence, the
 * prev_hash link, the recomputed hash and any signed checkpoint at that seq,
 * and stops at the first record that fails, naming it.
 *
 * hash = SHA-256(prev_hash || seq as 8-byte big-endian || canonical body); the
 * prefix of `sink` holds the first two so one native call hashes a record.
 */
export interface ChainReport {
  ok: boolean;
  /** Records whose hash was recomputed. */
  checked: number;
  /** The last record that verified (on success, the chain head). */
  head: { seq: string; hash: string };
  first_bad_seq: string | null;
  reason: string | null;
  /** The newest signed checkpoint the chain was matched against, if any. */
  checkpoint: { id: string; seq: string } | null;
}

/** A checkpoint whose signature the caller has already verified. */
export interface TrustedCheckpoint {
  readonly id: string;
  readonly seq: number;
  readonly headHash: Buffer;
}

export interface ChainWalkOptions {
  /** First seq to check (1 for a full walk). */
  readonly fromSeq: number;
  /** Hash the first record must link to; null trusts its stored prev_hash (tail mode). */
  readonly prevHash: Buffer | null;
  /** Signed checkpoints, any order; those before fromSeq are ignored. */
  readonly checkpoints?: readonly TrustedCheckpoint[];
}

export const BODY_OFFSET = 40;
const ZERO_HASH = Buffer.alloc(32);

export class ChainWalk {
  readonly sink = new ByteSink();
  private expected: number;
  /** Hash of the last good record as a latin1 string: comparing strings is cheaper than allocating Buffers. */
  private prev: string;
  private linked: boolean;
  private readonly cps: (TrustedCheckpoint & { hashKey: string })[];
  private cpIdx = 0;
  /** Seq of the last record vouched for by a matching checkpoint (or the anchor). */
  private vouched: number;
  private matched: TrustedCheckpoint | null = null;
  checked = 0;
  failure: { seq: number; reason: string } | null = null;

  constructor(opts: ChainWalkOptions) {
    this.expected = opts.fromSeq;
    this.vouched = opts.fromSeq - 1;
    this.linked = opts.prevHash !== null;
    this.prev = (opts.prevHash ?? ZERO_HASH).toString('latin1');
    this.cps = (opts.checkpoints ?? [])
      .filter((c) => c.seq >= opts.fromSeq)
      .sort((a, b) => a.seq - b.seq)
      .map((c) => ({ ...c, hashKey: c.headHash.toString('latin1') }));
  }

  get nextSeq(): number {
    return this.expected;
  }

  /** Resets the sink so the caller can write the next record's canonical body. */
  startBody(): ByteSink {
    this.sink.ensure(BODY_OFFSET);
    this.sink.pos = BODY_OFFSET;
    return this.sink;
  }

  /**
   * Checks the record whose body is in the sink. `seqBytes` at `seqOff` is
   * the 8-byte big-endian seq, `prevHash`/`hash` the stored 32-byte values.
   * `rewrite`, if given, writes another rendering of the same record into the
   * sink it is handed (the body after the prefix); it is tried when the first
   * body does not hash to the stored value. Returns false once the chain is broken.
   */
  record(
    seq: number,
    seqBytes: Buffer,
    seqOff: number,
    store: Buffer,
    prevOff: number,
    prevLen: number,
    hashOff: number,
    hashLen: number,
    rewrite?: (sink: ByteSink) => void,
  ): boolean {
    if (seq !== this.expected) {
      return this.fail(
        this.expected,
        seq > this.expected
          ? `record ${this.expected} is missing (the next stored record is ${seq})`
          : `record ${seq} is out of order`,
      );
    }
    if (prevLen !== 32 || hashLen !== 32) return this.fail(seq, `record ${seq} has a malformed hash column`);
    const buf = this.sink.buf;
    const prev = this.prev;
    // Byte loops instead of Buffer copies and temporary strings: this runs for every record.
    if (this.linked) {
      for (let i = 0; i < 32; i++) {
        if (store[prevOff + i] !== prev.charCodeAt(i)) {
          return this.fail(seq, `record ${seq} does not link to record ${seq - 1} (its prev_hash differs)`);
        }
      }
    }
    for (let i = 0; i < 32; i++) buf[i] = store[prevOff + i] as number;
    for (let i = 0; i < 8; i++) buf[32 + i] = seqBytes[seqOff + i] as number;
    // latin1 ('binary') output: a string digest is much cheaper for node than a new Buffer.
    let digest = hash('sha256', buf.subarray(0, this.sink.pos), 'binary');
    if (!sameHash(store, hashOff, digest)) {
      if (rewrite !== undefined) {
        // The prefix stays; startBody() only moves the write position back to the body.
        rewrite(this.startBody());
        digest = hash('sha256', this.sink.buf.subarray(0, this.sink.pos), 'binary');
      }
      if (!sameHash(store, hashOff, digest)) {
        return this.fail(seq, `record ${seq} does not match its hash: its content was changed`);
      }
    }
    const cp = this.cps[this.cpIdx];
    if (cp !== undefined && cp.seq === seq) {
      if (digest !== cp.hashKey) {
        return this.fail(
          this.vouched + 1,
          `record ${seq} differs from signed checkpoint ${cp.id}: the chain was rewritten after record ${this.vouched}`,
        );
      }
      this.vouched = seq;
      this.matched = cp;
      this.cpIdx++;
    }
    this.prev = digest;
    this.linked = true;
    this.expected = seq + 1;
    this.checked++;
    return true;
  }

  /** Ends the walk: the stored head row and the newest checkpoint must agree with the last record. */
  finish(head: { seq: number; hash: Buffer } | null): ChainReport {
    if (this.failure === null) {
      const last = this.expected - 1;
      const newest = this.cps[this.cps.length - 1];
      if (newest !== undefined && newest.seq > last) {
        this.fail(
          last + 1,
          `records ${last + 1}..${newest.seq} are covered by signed checkpoint ${newest.id} but missing: the newest records were removed`,
        );
      } else if (head !== null && head.seq > last) {
        this.fail(last + 1, `the chain ends at record ${last} but its head says ${head.seq}: records were removed`);
      } else if (head !== null && head.seq < last) {
        this.fail(head.seq + 1, `record ${head.seq + 1} lies beyond the chain head (${head.seq}): it was not appended`);
      } else if (head !== null && this.linked && head.hash.toString('latin1') !== this.prev) {
        this.fail(last, `the chain head's hash differs from record ${last}`);
      }
    }
    return {
      ok: this.failure === null,
      checked: this.checked,
      head: { seq: String(this.expected - 1), hash: Buffer.from(this.prev, 'latin1').toString('hex') },
      first_bad_seq: this.failure ? String(this.failure.seq) : null,
      reason: this.failure?.reason ?? null,
      checkpoint: this.matched ? { id: this.matched.id, seq: String(this.matched.seq) } : null,
    };
  }

  private fail(seq: number, reason: string): false {
    this.failure ??= { seq, reason };
    return false;
  }
}

function sameHash(store: Buffer, off: number, digest: string): boolean {
  for (let i = 0; i < 32; i++) if (store[off + i] !== digest.charCodeAt(i)) return false;
  return true;
}

/** Seq as the 8 big-endian bytes the hash covers. */
export function seqBytes(seq: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(BigInt(seq));
  return b;
}
