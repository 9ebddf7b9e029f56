import type { ByteSink } from './audit-canonical.ts';
import { type ChainReport, ChainWalk } from './audit-chain.ts';
import type { SignedCheckpoint } from './audit-checkpoint.ts';
import { CopyRowParser, F, tupleSeq } from './audit-copy.ts';
import { canonicalAuditBody } from './audit-ledger.ts';
import { type AuditDatabase, copyRecords } from './audit-verify.ts';
import { copyOutText } from './copy-out.ts';

/**
 * An auditor's copy of the ledger: JSON lines, the signed checkpoint first,
 * then every record from seq 1 up to the checkpoint's seq with all hashed
 * columns and both hashes. `countersign audit verify --ledger` checks such a
 * file offline with the public key alone, and an auditor who keeps earlier
 * exports can show exactly which records changed.
 */
export interface LedgerRecordLine {
  type: 'record';
  seq: string;
  at: string;
  actor_id: string;
  actor_type: string;
  action: string;
  resource_type: string;
  resource_id: string;
  details: unknown;
  prev_hash: string;
  hash: string;
}

const PG_EPOCH_MS = 946_684_800_000;

/** ISO timestamp of a binary timestamptz; microseconds are kept when present so nothing is silently rounded. */
function isoOf(buf: Buffer, off: number): string {
  const us = buf.readInt32BE(off) * 4_294_967_296 + buf.readUInt32BE(off + 4);
  const ms = Math.floor(us / 1000);
  const iso = new Date(ms + PG_EPOCH_MS).toISOString();
  const sub = us - ms * 1000;
  return sub === 0 ? iso : `${iso.slice(0, -1)}${String(sub).padStart(3, '0')}Z`;
}

/** Yields the export in pieces of whole lines; stream it to the client as it comes. */
export async function* exportLedger(database: AuditDatabase, checkpoint: SignedCheckpoint): AsyncGenerator<string> {
  yield `${JSON.stringify(checkpoint)}\n`;
  const through = Number(checkpoint.seq);
  if (through < 1) return;
  const client = await database.pool.connect();
  let healthy = false;
  try {
    const str = (buf: Buffer, f: Int32Array, i: number) =>
      JSON.stringify(buf.toString('utf8', f[i * 2] as number, (f[i * 2] as number) + (f[i * 2 + 1] as number)));
    const hex = (buf: Buffer, f: Int32Array, i: number) =>
      `"${buf.toString('hex', f[i * 2] as number, (f[i * 2] as number) + (f[i * 2 + 1] as number))}"`;
    let line = '';
    const rows = new CopyRowParser((buf, f) => {
      const d = f[F.details * 2] as number;
      // json text is valid JSON already; it is embedded as stored.
      const details = buf.toString('utf8', d, d + (f[F.details * 2 + 1] as number));
      line = `{"type":"record","seq":"${tupleSeq(buf, f)}","at":"${isoOf(buf, f[F.at * 2] as number)}","actor_id":${str(buf, f, F.actorId)},"actor_type":${str(buf, f, F.actorType)},"action":${str(buf, f, F.action)},"resource_type":${str(buf, f, F.resourceType)},"resource_id":${str(buf, f, F.resourceId)},"details":${details},"prev_hash":${hex(buf, f, F.prevHash)},"hash":${hex(buf, f, F.hash)}}\n`;
      return true;
    });
    const render = (buf: Buffer, start: number, end: number): string => {
      line = '';
      rows.payload(buf, start, end);
      return line;
    };
    yield* copyOutText(client, copyRecords(checkpoint.org_id, 1, through), render);
    if (!rows.done) throw new Error('the audit COPY ended without its trailer');
    healthy = true;
  } finally {
    client.release(healthy ? undefined : true);
  }
}

const HEX64 = /^[0-9a-f]{64}$/;

/**
 * Verifies an exported ledger (lines as strings, checkpoint lines skipped)
 * against checkpoints whose signatures the caller has verified. Needs no
 * database: the org id comes from the checkpoint.
 */
export async function verifyLedgerLines(
  lines: AsyncIterable<string> | Iterable<string>,
  orgId: string,
  checkpoints: readonly { id: string; seq: number; headHash: Buffer }[],
): Promise<ChainReport> {
  const walk = new ChainWalk({ fromSeq: 1, prevHash: Buffer.alloc(32), checkpoints });
  const hashes = Buffer.alloc(64);
  const seqBuf = Buffer.alloc(8);
  let lineNo = 0;
  for await (const line of lines) {
    lineNo++;
    if (line.trim() === '') continue;
    let r: Partial<LedgerRecordLine> & { type?: string };
    try {
      r = JSON.parse(line) as Partial<LedgerRecordLine>;
    } catch {
      throw new Error(`line ${lineNo} is not JSON`);
    }
    if (r.type !== 'record') continue;
    const seq = Number(r.seq);
    if (!Number.isSafeInteger(seq) || seq < 1) throw new Error(`line ${lineNo}: seq is not a positive integer`);
    const sink: ByteSink = walk.startBody();
    try {
      const body = canonicalAuditBody({
        orgId,
        at: String(r.at),
        actorId: String(r.actor_id),
        actorType: String(r.actor_type),
        action: String(r.action),
        resourceType: String(r.resource_type),
        resourceId: String(r.resource_id),
        details: r.details,
      });
      sink.bytes(body, 0, body.length);
    } catch {
      sink.byte(0);
    }
    const prevOk = typeof r.prev_hash === 'string' && HEX64.test(r.prev_hash);
    const hashOk = typeof r.hash === 'string' && HEX64.test(r.hash);
    if (prevOk) hashes.write(r.prev_hash as string, 0, 'hex');
    if (hashOk) hashes.write(r.hash as string, 32, 'hex');
    seqBuf.writeBigInt64BE(BigInt(seq));
    if (!walk.record(seq, seqBuf, 0, hashes, 0, prevOk ? 32 : 0, 32, hashOk ? 32 : 0)) break;
  }
  return walk.finish(null);
}
