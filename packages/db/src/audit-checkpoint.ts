import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  sign,
  verify,
} from 'node:crypto';
import { link, mkdir, open, readFile, unlink, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type pg from 'pg';
import { canonicalJson } from './canonical-json.ts';

/**
 * Signed checkpoints of the audit chain. A bare hash chain cannot show that
 * its newest records were cut off, nor that someone with database access
 * recomputed every hash after an edit. A checkpoint `{org, seq, head_hash, at}`
 * signed with an Ed25519 key that lives outside the database closes both
 * gaps: the verifier (audit-verify.ts, `countersign audit verify`) needs only
 * the public key to check that the record at `seq` still has `head_hash` and
 * that every record up to it is present.
 *
 * The signed bytes are the RFC 8785 JSON of the statement below, including a
 * `type` naming the format, so a signature can never be replayed as anything else.
 */
export const CHECKPOINT_TYPE = 'countersign.audit.checkpoint.v1';

export interface SignedCheckpoint {
  type: typeof CHECKPOINT_TYPE;
  id: string;
  org_id: string;
  seq: string;
  head_hash: string;
  at: string;
  key_id: string;
  algorithm: 'Ed25519';
  signature: string;
}

export interface AuditSigningKey {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  readonly keyId: string;
  readonly publicKeyPem: string;
}

/** Public keys by key id. */
export type Keyring = ReadonlyMap<string, KeyObject>;

/** Key id: the first 128 bits of SHA-256 over the SubjectPublicKeyInfo, in hex. */
export function keyIdOf(publicKey: KeyObject): string {
  const der = publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('hex').slice(0, 32);
}

export function keyringOf(...keys: KeyObject[]): Keyring {
  return new Map(keys.map((k) => [keyIdOf(k), k]));
}

export function signingKeyOf(privateKey: KeyObject): AuditSigningKey {
  if (privateKey.asymmetricKeyType !== 'ed25519') {
    throw new Error(`the audit signing key must be Ed25519, not ${privateKey.asymmetricKeyType ?? 'unknown'}`);
  }
  const publicKey = createPublicKey(privateKey);
  return {
    privateKey,
    publicKey,
    keyId: keyIdOf(publicKey),
    publicKeyPem: String(publicKey.export({ type: 'spki', format: 'pem' })),
  };
}

export function generateSigningKey(): AuditSigningKey {
  return signingKeyOf(generateKeyPairSync('ed25519').privateKey);
}

/** Reads an Ed25519 public key (SPKI PEM); a private key file is refused, the verifier needs only the public half. */
export function parsePublicKey(pem: string): KeyObject {
  if (/PRIVATE KEY/.test(pem)) throw new Error('expected a public key, got a private key');
  const key = createPublicKey(pem);
  if (key.asymmetricKeyType !== 'ed25519') throw new Error('the checkpoint public key must be Ed25519');
  return key;
}

export const publicKeyFileOf = (privateKeyFile: string): string => `${privateKeyFile}.pub`;

const isErrno = (err: unknown, code: string) =>
  typeof err === 'object' && err !== null && 'code' in err && (err as { code: unknown }).code === code;

/**
 * Loads the signing key (PKCS#8 PEM), or creates it when `create` is set (dev:
 * first start). Creation publishes with link(), which fails if another
 * process won the race, so concurrent first starts agree on one key. The
 * public key is written beside it (`.pub`) for auditors.
 */
export async function loadOrCreateSigningKey(
  file: string,
  opts: { create: boolean },
): Promise<{ key: AuditSigningKey; created: boolean }> {
  let created = false;
  let pem: string;
  try {
    pem = await readFile(file, 'utf8');
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) throw err;
    if (!opts.create) {
      throw new Error(
        `audit signing key ${file} does not exist; provide it or set COUNTERSIGN_AUDIT_SIGNING_KEY_CREATE=true`,
      );
    }
    await mkdir(dirname(file), { recursive: true, mode: 0o700 });
    const fresh = String(generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const temp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
    const fh = await open(temp, 'wx', 0o600);
    try {
      await fh.writeFile(fresh);
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await link(temp, file);
      created = true;
    } catch (linkErr) {
      if (!isErrno(linkErr, 'EEXIST')) throw linkErr;
    } finally {
      await unlink(temp);
    }
    pem = await readFile(file, 'utf8');
  }
  const key = signingKeyOf(createPrivateKey(pem));
  try {
    await writeFile(publicKeyFileOf(file), key.publicKeyPem, { flag: 'wx', mode: 0o644 });
  } catch (err) {
    if (!isErrno(err, 'EEXIST') && !isErrno(err, 'EACCES') && !isErrno(err, 'EROFS')) throw err;
  }
  return { key, created };
}

/** The bytes that are signed. */
export function checkpointStatement(
  cp: Pick<SignedCheckpoint, 'org_id' | 'seq' | 'head_hash' | 'at' | 'key_id'>,
): Buffer {
  return Buffer.from(
    canonicalJson({
      type: CHECKPOINT_TYPE,
      org_id: cp.org_id,
      seq: cp.seq,
      head_hash: cp.head_hash,
      at: cp.at,
      key_id: cp.key_id,
    }),
    'utf8',
  );
}

export function signCheckpoint(
  key: AuditSigningKey,
  fields: { id: string; org_id: string; seq: string; head_hash: string; at: string },
): SignedCheckpoint {
  const unsigned = { ...fields, key_id: key.keyId };
  return {
    type: CHECKPOINT_TYPE,
    ...unsigned,
    algorithm: 'Ed25519',
    signature: sign(null, checkpointStatement(unsigned), key.privateKey).toString('base64'),
  };
}

export function verifyCheckpoint(cp: SignedCheckpoint, keyring: Keyring): 'valid' | 'invalid' | 'unknown_key' {
  const key = keyring.get(cp.key_id);
  if (key === undefined) return 'unknown_key';
  const signature = Buffer.from(cp.signature, 'base64');
  if (signature.length !== 64 || cp.type !== CHECKPOINT_TYPE || cp.algorithm !== 'Ed25519') return 'invalid';
  return verify(null, checkpointStatement(cp), key, signature) ? 'valid' : 'invalid';
}

const HEX32 = /^[0-9a-f]{64}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Validates the shape of a checkpoint read from a file or a body (not its signature). */
export function asSignedCheckpoint(v: unknown): SignedCheckpoint {
  const o = (typeof v === 'object' && v !== null ? v : {}) as Record<string, unknown>;
  const str = (k: string) => (typeof o[k] === 'string' ? (o[k] as string) : '');
  const problems: string[] = [];
  if (o.type !== CHECKPOINT_TYPE) problems.push(`type must be ${CHECKPOINT_TYPE}`);
  if (!UUID.test(str('id'))) problems.push('id must be a uuid');
  if (!UUID.test(str('org_id'))) problems.push('org_id must be a uuid');
  if (!/^(0|[1-9]\d{0,15})$/.test(str('seq'))) problems.push('seq must be a decimal string');
  if (!HEX32.test(str('head_hash'))) problems.push('head_hash must be 64 hex digits');
  if (Number.isNaN(Date.parse(str('at')))) problems.push('at must be a timestamp');
  if (!/^[0-9a-f]{32}$/.test(str('key_id'))) problems.push('key_id must be 32 hex digits');
  if (o.algorithm !== 'Ed25519') problems.push('algorithm must be Ed25519');
  if (!/^[A-Za-z0-9+/]{86}==$/.test(str('signature'))) problems.push('signature must be 64 bytes of base64');
  if (problems.length) throw new Error(`not a Countersign audit checkpoint: ${problems.join('; ')}`);
  return {
    type: CHECKPOINT_TYPE,
    id: str('id'),
    org_id: str('org_id'),
    seq: str('seq'),
    head_hash: str('head_hash'),
    at: str('at'),
    key_id: str('key_id'),
    algorithm: 'Ed25519',
    signature: str('signature'),
  };
}

/** A checkpoint file is the checkpoint JSON, or an export whose first line is the checkpoint. */
export function parseCheckpointFile(text: string): SignedCheckpoint {
  const trimmed = text.trim();
  let value: unknown;
  try {
    value = JSON.parse(trimmed);
  } catch {
    try {
      value = JSON.parse(trimmed.split('\n', 1)[0] ?? '');
    } catch {
      throw new Error('the checkpoint file is neither a checkpoint JSON nor an export (JSON lines)');
    }
  }
  return asSignedCheckpoint(value);
}

export interface CheckpointRow {
  id: string;
  org_id: string;
  seq: string;
  head_hash: Buffer;
  at: Date;
  key_id: string;
  signature: Buffer;
}

export function checkpointFromRow(r: CheckpointRow): SignedCheckpoint {
  return {
    type: CHECKPOINT_TYPE,
    id: r.id,
    org_id: r.org_id,
    seq: String(r.seq),
    head_hash: r.head_hash.toString('hex'),
    at: r.at.toISOString(),
    key_id: r.key_id,
    algorithm: 'Ed25519',
    signature: r.signature.toString('base64'),
  };
}

const SELECT = `SELECT id, org_id, seq::text AS seq, head_hash, at, key_id, signature FROM audit_checkpoints`;

interface Queryable {
  query<R extends pg.QueryResultRow>(text: string, values?: unknown[]): Promise<pg.QueryResult<R>>;
}

export async function findCheckpoint(q: Queryable, orgId: string, id: string): Promise<SignedCheckpoint | null> {
  const { rows } = await q.query<CheckpointRow>(`${SELECT} WHERE org_id = $1 AND id = $2`, [orgId, id]);
  return rows[0] ? checkpointFromRow(rows[0]) : null;
}

export async function latestCheckpoint(q: Queryable, orgId: string): Promise<SignedCheckpoint | null> {
  const { rows } = await q.query<CheckpointRow>(`${SELECT} WHERE org_id = $1 ORDER BY seq DESC LIMIT 1`, [orgId]);
  return rows[0] ? checkpointFromRow(rows[0]) : null;
}

/** Newest first; `beforeSeq` continues a page. Returns up to limit + 1 rows so the caller knows if more exist. */
export async function listCheckpoints(
  q: Queryable,
  orgId: string,
  opts: { limit: number; beforeSeq?: string },
): Promise<SignedCheckpoint[]> {
  const { rows } = await q.query<CheckpointRow>(
    `${SELECT} WHERE org_id = $1 AND ($2::bigint IS NULL OR seq < $2::bigint) ORDER BY seq DESC LIMIT $3`,
    [orgId, opts.beforeSeq ?? null, opts.limit + 1],
  );
  return rows.map(checkpointFromRow);
}
