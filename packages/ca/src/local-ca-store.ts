/**
 * Keeping the local CA on disk.
 *
 * Two layouts, on purpose:
 *
 * - The offline step (`countersign ca init`, `countersign ca rotate-intermediate`:
 *   initOfflineCa, rotateIntermediate) makes a root whose private key is written
 *   only to the offline directory, and an intermediate for the issuer in a
 *   separate directory. The issuer service loads only that intermediate
 *   (loadIssuingCa) and refuses to start when a root private key sits beside it:
 *   a compromised issuer can then mint leaves until its intermediate is revoked,
 *   never a new CA.
 * - loadOrCreateLocalCa keeps root and intermediate in one directory and creates
 *   them on first use: for tests and tools running in one process, never for a
 *   service.
 *
 * loadOrCreateLocalCa is safe under concurrent start-up. Several processes
 * (a test runner's workers) may start at once against an empty directory; they
 * must all end up with one and the same CA. Two mechanisms cooperate:
 *
 * 1. An exclusive lock file (O_CREAT|O_EXCL) so normally only one process
 *    generates, and the others just wait and load.
 * 2. Each file is written to a private temp file, fsynced, then published
 *    with link(), which, unlike rename(), fails if the target exists. The first
 *    published file is the commit point: whoever loses it discards its
 *    material. So even if a stale lock is broken while its owner is still
 *    alive, two creators can never interleave their files.
 *
 * Existing key material is never overwritten. A directory left half-written by
 * a crash is reported, not repaired, because guessing could discard a key that
 * certificates were already issued under.
 */
import type { KeyObject } from 'node:crypto';
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto';
import { chmod, link, lstat, mkdir, open, readdir, readFile, stat, unlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { content, floorToSecond, readTopLevel, TAG_OCTET_STRING } from './der.ts';
import type { CaMaterial, LocalCa } from './local-ca.ts';
import { createCaMaterial, loadLocalCaFromFiles } from './local-ca.ts';
import { OID } from './oids.ts';
import { encodePem } from './pem.ts';
import {
  authorityKeyIdentifier,
  basicConstraints,
  buildTbs,
  commonNameOnly,
  KeyUsageBit,
  keyIdentifier,
  keyUsage,
  parseSpki,
  randomSerial,
  readCertificate,
  signCertificate,
  signerFor,
  subjectKeyIdentifier,
} from './x509-der.ts';

export interface LoadOrCreateLocalCaOptions {
  dir: string;
  /** CN prefix for a newly created CA; defaults to "Countersign Local". */
  commonNamePrefix?: string;
  /** Clock for the CA validity period of a newly created CA (tests). */
  now?: Date;
}

export const CA_FILES = {
  rootCert: 'root.crt.pem',
  rootKey: 'root.key.pem',
  intermediateCert: 'intermediate.crt.pem',
  intermediateKey: 'intermediate.key.pem',
} as const;

// Publication order; the first entry is the commit point.
const PUBLISH_ORDER: ReadonlyArray<{ file: string; pick: (m: CaMaterial) => string; secret: boolean }> = [
  { file: CA_FILES.rootKey, pick: (m) => m.rootKeyPem, secret: true },
  { file: CA_FILES.rootCert, pick: (m) => m.rootCertPem, secret: false },
  { file: CA_FILES.intermediateKey, pick: (m) => m.intermediateKeyPem, secret: true },
  { file: CA_FILES.intermediateCert, pick: (m) => m.intermediateCertPem, secret: false },
];

const LOCK_FILE = '.create.lock';
const TEMP_PREFIX = '.tmp-';
const POLL_MS = 20;
// Creation takes milliseconds; a lock this old belongs to a crashed process.
const STALE_LOCK_MS = 30_000;
const WAIT_TIMEOUT_MS = 60_000;
// How long a lock holder waits for a half-published directory to complete
// (only possible after a stale lock was broken) before calling it corrupt.
const PARTIAL_GRACE_MS = 2_000;

export async function loadOrCreateLocalCa(opts: LoadOrCreateLocalCaOptions): Promise<LocalCa> {
  const dir = resolve(opts.dir);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const deadline = Date.now() + WAIT_TIMEOUT_MS;
  for (;;) {
    if ((await presentFiles(dir)).length === PUBLISH_ORDER.length) return loadFromDir(dir);
    const lock = await tryLock(dir);
    if (lock !== null) {
      try {
        const ca = await createUnderLock(dir, opts);
        if (ca !== null) return ca;
      } finally {
        await lock.release();
      }
      // Lost the publish race to a creator that broke our stale-looking lock:
      // fall through and wait for its files.
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out waiting for the local CA in ${dir} to be created; if no other process is starting, remove ${join(dir, LOCK_FILE)}`,
      );
    }
    await sleep(POLL_MS);
  }
}

async function presentFiles(dir: string): Promise<string[]> {
  const present: string[] = [];
  for (const { file } of PUBLISH_ORDER) {
    try {
      await stat(join(dir, file));
      present.push(file);
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
    }
  }
  return present;
}

async function loadFromDir(dir: string): Promise<LocalCa> {
  const read = (f: string) => readFile(join(dir, f), 'utf8');
  const [rootCertPem, rootKeyPem, certPem, keyPem] = await Promise.all([
    read(CA_FILES.rootCert),
    read(CA_FILES.rootKey),
    read(CA_FILES.intermediateCert),
    read(CA_FILES.intermediateKey),
  ]);
  // The root key is not needed to issue, but a mismatch means the directory
  // was tampered with or mixed up, and that should stop start-up.
  if (!new X509Certificate(rootCertPem).checkPrivateKey(createPrivateKey(rootKeyPem))) {
    throw new Error(`${join(dir, CA_FILES.rootKey)} does not match ${CA_FILES.rootCert}`);
  }
  return loadLocalCaFromFiles({ certPem, keyPem, chainPems: [rootCertPem] });
}

interface Lock {
  release(): Promise<void>;
}

async function tryLock(dir: string): Promise<Lock | null> {
  const path = join(dir, LOCK_FILE);
  const token = `${process.pid} ${randomBytes(8).toString('hex')}\n`;
  try {
    const fh = await open(path, 'wx', 0o600);
    try {
      await fh.writeFile(token);
    } finally {
      await fh.close();
    }
  } catch (err) {
    if (!isErrno(err, 'EEXIST')) throw err;
    await breakIfStale(path);
    return null;
  }
  return {
    release: async () => {
      // Only remove the lock if it is still ours (it may have been broken as stale).
      try {
        if ((await readFile(path, 'utf8')) === token) await unlink(path);
      } catch (err) {
        if (!isErrno(err, 'ENOENT')) throw err;
      }
    },
  };
}

async function breakIfStale(path: string): Promise<void> {
  try {
    const s = await stat(path);
    if (Date.now() - s.mtimeMs > STALE_LOCK_MS) await unlink(path);
  } catch (err) {
    if (!isErrno(err, 'ENOENT')) throw err;
  }
}

async function createUnderLock(dir: string, opts: LoadOrCreateLocalCaOptions): Promise<LocalCa | null> {
  // Re-check under the lock: another process may have finished between our
  // first look and acquiring it.
  const graceEnd = Date.now() + PARTIAL_GRACE_MS;
  for (;;) {
    const present = await presentFiles(dir);
    if (present.length === PUBLISH_ORDER.length) return loadFromDir(dir);
    if (present.length === 0) break;
    if (Date.now() > graceEnd) {
      throw new Error(
        `local CA directory ${dir} is incomplete (has ${present.join(', ')}); refusing to overwrite key material — restore the missing files or empty the directory`,
      );
    }
    await sleep(POLL_MS);
  }

  // The directory may pre-date us (e.g. a mounted volume); tighten it before
  // keys land in it. Best effort: the key files are 0600 regardless, and a
  // volume we do not own should not stop the CA from starting.
  await chmod(dir, 0o700).catch(() => undefined);
  await removeStaleTemps(dir);
  const material = createCaMaterial({ commonNamePrefix: opts.commonNamePrefix, now: opts.now });
  const tag = `${TEMP_PREFIX}${process.pid}-${randomBytes(6).toString('hex')}-`;
  const temps: string[] = [];
  try {
    for (const { file, pick, secret } of PUBLISH_ORDER) {
      const tmp = join(dir, tag + file);
      temps.push(tmp);
      await writeDurably(tmp, pick(material), secret ? 0o600 : 0o644);
    }
    for (const [i, { file }] of PUBLISH_ORDER.entries()) {
      const tmp = temps[i];
      if (tmp === undefined) continue;
      try {
        await link(tmp, join(dir, file));
      } catch (err) {
        if (isErrno(err, 'EEXIST') && i === 0) return null; // someone else committed first
        throw err;
      }
    }
  } finally {
    await Promise.all(temps.map((t) => unlink(t).catch(() => undefined)));
  }
  await syncDir(dir);
  return loadFromDir(dir);
}

async function writeDurably(path: string, data: string, mode: number): Promise<void> {
  const fh = await open(path, 'wx', mode);
  try {
    await fh.writeFile(data);
    // open()'s mode is filtered by the umask; make the key permissions explicit.
    await fh.chmod(mode);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function syncDir(dir: string): Promise<void> {
  // Make the new directory entries durable; not supported everywhere, and
  // only a durability nicety, so failures are ignored.
  try {
    const fh = await open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch {
    // ignore
  }
}

async function removeStaleTemps(dir: string): Promise<void> {
  // Temp files from a crashed creator may hold private keys; clear old ones.
  for (const name of await readdir(dir)) {
    if (!name.startsWith(TEMP_PREFIX)) continue;
    const path = join(dir, name);
    try {
      if (Date.now() - (await stat(path)).mtimeMs > STALE_LOCK_MS) await unlink(path);
    } catch (err) {
      if (!isErrno(err, 'ENOENT')) throw err;
    }
  }
}

function isErrno(err: unknown, code: string): boolean {
  return typeof err === 'object' && err !== null && (err as NodeJS.ErrnoException).code === code;
}

// ---------------------------------------------------------------------------
// The offline root and the issuer's intermediate
// ---------------------------------------------------------------------------

/** The issuer's variables (packages/config); every refusal below names one of them. */
export const CA_VARIABLES = {
  dir: 'COUNTERSIGN_CA_DIR',
  certFile: 'COUNTERSIGN_CA_CERT_FILE',
  keyFile: 'COUNTERSIGN_CA_KEY_FILE',
  chainFile: 'COUNTERSIGN_CA_CHAIN_FILE',
} as const;

/** What the offline step writes for the issuer: the intermediate, and the root's certificate (public) as its chain. */
export const ISSUER_CA_FILES = [CA_FILES.intermediateCert, CA_FILES.intermediateKey, CA_FILES.rootCert] as const;

/** The issuer's CA is missing or unsafe; `variable` is the setting to fix. The issuer must not start. */
export class IssuingCaError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(`${variable} ${message}`);
    this.name = 'IssuingCaError';
  }
}

export interface IssuingCaSource {
  /** COUNTERSIGN_CA_DIR, holding ISSUER_CA_FILES; used when none of the files below is set. */
  dir: string;
  certFile?: string | null | undefined;
  keyFile?: string | null | undefined;
  chainFile?: string | null | undefined;
}

interface SourceFile {
  path: string;
  variable: string;
}

const OFFLINE_HINT = 'docs/operator-guide.md#the-issuing-ca';
const CERTIFICATE_PEM = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;
// Unencrypted keys only: an encrypted key cannot be compared, and cannot be used without its passphrase either.
const PRIVATE_KEY_PEM = /-----BEGIN (RSA |EC )?PRIVATE KEY-----[\s\S]+?-----END \1?PRIVATE KEY-----/g;
// Key and certificate files are a few kilobytes; anything larger beside them is not one.
const MAX_SCANNED_FILE_BYTES = 1 << 20;

/**
 * The issuer's CA: an intermediate (certificate, key, and the chain up to the
 * root), from COUNTERSIGN_CA_CERT_FILE/_KEY_FILE/_CHAIN_FILE or from the
 * directory COUNTERSIGN_CA_DIR. Never creates anything and never reads a root
 * key: it refuses a self-signed issuing certificate, a directory without an
 * intermediate, and any directory it reads from that holds the private key of
 * a CA above the intermediate (or a file named root.key.pem), because a host
 * that can be made to sign leaves must not also be able to make new CAs.
 */
export async function loadIssuingCa(src: IssuingCaSource): Promise<LocalCa> {
  const files = src.certFile || src.keyFile || src.chainFile ? namedFiles(src) : await dirFiles(src.dir);
  const dirs = uniqueDirs([files.cert, files.key, files.chain]);
  const byName = await findRootKeyByName(dirs);
  if (byName) throw rootKeyError(byName, `a root CA private key (${CA_FILES.rootKey})`);

  const [certPem, keyPem, chainText] = await Promise.all([
    readSource(files.cert),
    readSource(files.key),
    readSource(files.chain),
  ]);
  let issuing: X509Certificate;
  try {
    issuing = new X509Certificate(certPem);
  } catch {
    throw new IssuingCaError(files.cert.variable, `(${files.cert.path}) is not a PEM certificate`);
  }
  if (issuing.checkIssued(issuing) && issuing.verify(issuing.publicKey)) {
    throw new IssuingCaError(
      files.cert.variable,
      `(${files.cert.path}) is a self-signed root CA ("${issuing.subject}"); the issuer holds only an intermediate signed by a root kept offline: run "countersign ca init" on an offline machine (${OFFLINE_HINT})`,
    );
  }
  const chainPems = chainText.match(CERTIFICATE_PEM) ?? [];
  if (chainPems.length === 0) {
    throw new IssuingCaError(
      files.chain.variable,
      `(${files.chain.path}) holds no certificate: it must hold the certificates above the intermediate, ending with the root`,
    );
  }
  let above: X509Certificate[];
  try {
    above = chainPems.map((pem) => new X509Certificate(pem));
  } catch (err) {
    throw new IssuingCaError(files.chain.variable, `(${files.chain.path}) is not valid PEM: ${(err as Error).message}`);
  }
  const byKey = await findCaPrivateKey(dirs, above);
  if (byKey) throw rootKeyError(byKey, `the private key of "${byKey.subject}", a CA above the issuing intermediate`);
  try {
    return loadLocalCaFromFiles({ certPem, keyPem, chainPems });
  } catch (err) {
    throw new IssuingCaError(files.cert.variable, `(${files.cert.path}): ${(err as Error).message}`);
  }
}

function namedFiles(src: IssuingCaSource): { cert: SourceFile; key: SourceFile; chain: SourceFile } {
  const set = [
    ['certFile', src.certFile],
    ['keyFile', src.keyFile],
    ['chainFile', src.chainFile],
  ] as const;
  const given = set.find(([, v]) => v)?.[0] ?? 'certFile';
  const pick = (which: 'certFile' | 'keyFile' | 'chainFile'): SourceFile => {
    const path = src[which];
    if (!path) {
      throw new IssuingCaError(
        CA_VARIABLES[which],
        `is required when ${CA_VARIABLES[given]} is set (the intermediate's certificate, its key, and the chain up to the root)`,
      );
    }
    return { path: resolve(path), variable: CA_VARIABLES[which] };
  };
  return { cert: pick('certFile'), key: pick('keyFile'), chain: pick('chainFile') };
}

async function dirFiles(dir: string): Promise<{ cert: SourceFile; key: SourceFile; chain: SourceFile }> {
  const abs = resolve(dir);
  const at = (file: string): SourceFile => ({ path: join(abs, file), variable: CA_VARIABLES.dir });
  // The root key check comes first: a directory in the old all-in-one layout must be refused for that reason.
  const byName = await findRootKeyByName([{ dir: abs, variable: CA_VARIABLES.dir }]);
  if (byName) throw rootKeyError(byName, `a root CA private key (${CA_FILES.rootKey})`);
  const missing: string[] = [];
  for (const f of ISSUER_CA_FILES) if (!(await isFile(join(abs, f)))) missing.push(f);
  if (missing.length > 0) {
    throw new IssuingCaError(
      CA_VARIABLES.dir,
      `(${abs}) holds no intermediate CA (missing ${missing.join(', ')}); the issuer never creates one: run "countersign ca init" on an offline machine and copy its issuer/ directory here, or set ${CA_VARIABLES.certFile}, ${CA_VARIABLES.keyFile} and ${CA_VARIABLES.chainFile} (${OFFLINE_HINT})`,
    );
  }
  return { cert: at(CA_FILES.intermediateCert), key: at(CA_FILES.intermediateKey), chain: at(CA_FILES.rootCert) };
}

function uniqueDirs(files: SourceFile[]): { dir: string; variable: string }[] {
  const seen = new Map<string, string>();
  for (const f of files) if (!seen.has(dirname(f.path))) seen.set(dirname(f.path), f.variable);
  return [...seen].map(([dir, variable]) => ({ dir, variable }));
}

async function readSource(f: SourceFile): Promise<string> {
  try {
    return await readFile(f.path, 'utf8');
  } catch (err) {
    throw new IssuingCaError(f.variable, `names ${f.path}, which cannot be read (${errnoCode(err)})`);
  }
}

interface FoundKey {
  path: string;
  variable: string;
  subject: string;
}

function rootKeyError(found: FoundKey, what: string): IssuingCaError {
  return new IssuingCaError(
    found.variable,
    `points at a directory holding ${what}: ${found.path}. The root key is made and kept offline and is never given to a service; move it off this host (${OFFLINE_HINT})`,
  );
}

async function findRootKeyByName(dirs: { dir: string; variable: string }[]): Promise<FoundKey | null> {
  for (const { dir, variable } of dirs) {
    const path = join(dir, CA_FILES.rootKey);
    if (await exists(path)) return { path, variable, subject: '' };
  }
  return null;
}

/** Any unencrypted private key in these directories whose public key is that of one of `cas`. */
async function findCaPrivateKey(
  dirs: { dir: string; variable: string }[],
  cas: X509Certificate[],
): Promise<FoundKey | null> {
  const spkiOf = (k: KeyObject) => k.export({ type: 'spki', format: 'der' });
  const caKeys = cas.map((c) => ({ subject: c.subject, spki: spkiOf(c.publicKey) }));
  for (const { dir, variable } of dirs) {
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      continue;
    }
    for (const name of names) {
      const path = join(dir, name);
      let text: string;
      try {
        const s = await stat(path);
        if (!s.isFile() || s.size > MAX_SCANNED_FILE_BYTES) continue;
        text = await readFile(path, 'utf8');
      } catch {
        // What this process cannot read, it cannot sign with either.
        continue;
      }
      for (const [block] of text.matchAll(PRIVATE_KEY_PEM)) {
        let spki: Buffer;
        try {
          spki = spkiOf(createPublicKey(createPrivateKey(block)));
        } catch {
          continue;
        }
        const hit = caKeys.find((c) => c.spki.equals(spki));
        if (hit) return { path, variable, subject: hit.subject };
      }
    }
  }
  return null;
}

export interface InitOfflineCaOptions {
  /** The offline directory: receives root.key.pem (the only copy of the root key) and root.crt.pem. */
  rootDir: string;
  /** Where the issuer's material goes (ISSUER_CA_FILES); default `<rootDir>/issuer`. */
  issuerDir?: string | undefined;
  /** CN prefix; default "Countersign Local". */
  commonNamePrefix?: string | undefined;
  now?: Date | undefined;
}

export interface OfflineCaResult {
  rootDir: string;
  issuerDir: string;
  rootCertPem: string;
  intermediateCertPem: string;
}

/**
 * The offline step: a root (10 years) whose key is written only to `rootDir`,
 * and an intermediate (5 years, pathLen 0) for the issuer in `issuerDir`.
 * Refuses to touch a directory that already holds a root or an intermediate.
 */
export async function initOfflineCa(opts: InitOfflineCaOptions): Promise<OfflineCaResult> {
  const rootDir = resolve(opts.rootDir);
  const issuerDir = resolve(opts.issuerDir ?? join(rootDir, 'issuer'));
  if (issuerDir === rootDir) {
    throw new Error('the issuer directory must not be the offline root directory: the root key would go to the issuer');
  }
  await prepareDir(rootDir);
  if (await exists(join(rootDir, CA_FILES.rootKey))) {
    throw new Error(
      `${rootDir} already holds a root CA (${CA_FILES.rootKey}); to give the issuer a new intermediate, run "countersign ca rotate-intermediate"`,
    );
  }
  await prepareIssuerDir(issuerDir);
  const m = createCaMaterial({ commonNamePrefix: opts.commonNamePrefix, now: opts.now });
  // The root key first: an exclusive create, so two concurrent runs cannot both make a root here.
  await writeDurably(join(rootDir, CA_FILES.rootKey), m.rootKeyPem, 0o600);
  await writeDurably(join(rootDir, CA_FILES.rootCert), m.rootCertPem, 0o644);
  await writeIssuerFiles(issuerDir, m.intermediateCertPem, m.intermediateKeyPem, m.rootCertPem);
  return { rootDir, issuerDir, rootCertPem: m.rootCertPem, intermediateCertPem: m.intermediateCertPem };
}

export interface RotateIntermediateOptions {
  /** The offline directory of initOfflineCa (root.key.pem and root.crt.pem). */
  rootDir: string;
  /** An empty (or new) directory for the new intermediate. */
  issuerDir: string;
  /** CN prefix; default: taken from the root's CN. */
  commonNamePrefix?: string | undefined;
  now?: Date | undefined;
}

/**
 * A new intermediate signed by the offline root, written to an empty directory
 * (never over the one in service: the operator swaps it in, then restarts the
 * issuers). Valid 5 years, never past the root.
 */
export async function rotateIntermediate(opts: RotateIntermediateOptions): Promise<OfflineCaResult> {
  const rootDir = resolve(opts.rootDir);
  const issuerDir = resolve(opts.issuerDir);
  if (issuerDir === rootDir) {
    throw new Error('the issuer directory must not be the offline root directory: the root key would go to the issuer');
  }
  const rootKeyFile = join(rootDir, CA_FILES.rootKey);
  const rootCertFile = join(rootDir, CA_FILES.rootCert);
  let rootCertPem: string;
  let rootKey: KeyObject;
  try {
    rootCertPem = await readFile(rootCertFile, 'utf8');
    rootKey = createPrivateKey(await readFile(rootKeyFile, 'utf8'));
  } catch (err) {
    throw new Error(
      `${rootDir} holds no usable root CA (${CA_FILES.rootKey}, ${CA_FILES.rootCert}): ${(err as Error).message}`,
    );
  }
  const root = new X509Certificate(rootCertPem);
  if (!root.ca || !root.checkIssued(root)) throw new Error(`${rootCertFile} is not a self-signed CA certificate`);
  if (!root.checkPrivateKey(rootKey)) throw new Error(`${rootKeyFile} does not match ${rootCertFile}`);
  await prepareIssuerDir(issuerDir);

  const rootFields = readCertificate(root.raw);
  const ski = rootFields.extensions.get(OID.subjectKeyIdentifier);
  const rootKeyId =
    ski !== undefined
      ? content(ski.value, readTopLevel(ski.value, TAG_OCTET_STRING))
      : keyIdentifier(parseSpki(rootFields.spki));
  const prefix = opts.commonNamePrefix ?? /CN=(.*) Root CA [0-9a-f]{8}$/.exec(root.subject)?.[1] ?? 'Countersign Local';
  const notBefore = floorToSecond(new Date((opts.now ?? new Date()).getTime() - 3_600_000));
  const fiveYears = new Date(notBefore);
  fiveYears.setUTCFullYear(fiveYears.getUTCFullYear() + 5);
  const notAfter = new Date(Math.min(fiveYears.getTime(), rootFields.notAfter.getTime()));
  if (notAfter.getTime() <= Date.now()) throw new Error(`the root CA in ${rootCertFile} has expired`);

  const intermediate = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const spki = intermediate.publicKey.export({ type: 'spki', format: 'der' });
  const signer = signerFor(rootKey);
  const der = signCertificate(
    buildTbs({
      serial: randomSerial(),
      signatureAlgorithm: signer.algorithmIdentifier,
      issuer: rootFields.subject,
      notBefore,
      notAfter,
      subject: commonNameOnly(`${prefix} Intermediate CA ${randomBytes(4).toString('hex')}`),
      spki,
      extensions: [
        basicConstraints(true, 0),
        keyUsage([KeyUsageBit.keyCertSign, KeyUsageBit.cRLSign]),
        subjectKeyIdentifier(keyIdentifier(parseSpki(spki))),
        authorityKeyIdentifier(rootKeyId),
      ],
    }),
    signer,
  );
  const intermediateCertPem = encodePem('CERTIFICATE', der);
  const intermediateKeyPem = intermediate.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  // Same checks the issuer makes at start-up, before anything is written.
  loadLocalCaFromFiles({ certPem: intermediateCertPem, keyPem: intermediateKeyPem, chainPems: [rootCertPem] });
  await writeIssuerFiles(issuerDir, intermediateCertPem, intermediateKeyPem, rootCertPem);
  return { rootDir, issuerDir, rootCertPem, intermediateCertPem };
}

export interface DevCaDirs {
  /** Given to no service: the root key lives here. */
  offlineDir: string;
  /** The issuer's COUNTERSIGN_CA_DIR. */
  issuerDir: string;
}

/**
 * The local stack's CA: the offline step run on this machine, into a directory
 * no service is given. A data directory from before the split (root key
 * beside the intermediate) is moved over once, so its certificates keep
 * verifying under the same root.
 */
export async function ensureDevCa(dirs: DevCaDirs): Promise<OfflineCaResult> {
  const offlineDir = resolve(dirs.offlineDir);
  const issuerDir = resolve(dirs.issuerDir);
  const oldRootKey = join(issuerDir, CA_FILES.rootKey);
  if (await exists(oldRootKey)) {
    await prepareDir(offlineDir);
    if (await exists(join(offlineDir, CA_FILES.rootKey))) {
      throw new Error(
        `both ${oldRootKey} and ${join(offlineDir, CA_FILES.rootKey)} exist; keep the one that matches ${join(issuerDir, CA_FILES.rootCert)}`,
      );
    }
    await writeDurably(
      join(offlineDir, CA_FILES.rootCert),
      await readFile(join(issuerDir, CA_FILES.rootCert), 'utf8'),
      0o644,
    );
    await link(oldRootKey, join(offlineDir, CA_FILES.rootKey));
    await unlink(oldRootKey);
    await syncDir(issuerDir);
  }
  if (await isFile(join(issuerDir, CA_FILES.intermediateKey))) {
    return {
      rootDir: offlineDir,
      issuerDir,
      rootCertPem: await readFile(join(issuerDir, CA_FILES.rootCert), 'utf8'),
      intermediateCertPem: await readFile(join(issuerDir, CA_FILES.intermediateCert), 'utf8'),
    };
  }
  if (await exists(join(offlineDir, CA_FILES.rootKey))) return rotateIntermediate({ rootDir: offlineDir, issuerDir });
  return initOfflineCa({ rootDir: offlineDir, issuerDir });
}

async function prepareDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  // Best effort, as for loadOrCreateLocalCa: a mounted volume may not be ours to chmod.
  await chmod(dir, 0o700).catch(() => undefined);
}

async function prepareIssuerDir(dir: string): Promise<void> {
  await prepareDir(dir);
  const present: string[] = [];
  for (const f of [...ISSUER_CA_FILES, CA_FILES.rootKey]) if (await exists(join(dir, f))) present.push(f);
  if (present.length > 0) {
    throw new Error(
      `${dir} already holds ${present.join(', ')}; write a new intermediate to an empty directory and swap it in (${OFFLINE_HINT})`,
    );
  }
}

async function writeIssuerFiles(dir: string, certPem: string, keyPem: string, chainPem: string): Promise<void> {
  // The certificate last: the issuer's directory is complete once it appears.
  await writeDurably(join(dir, CA_FILES.intermediateKey), keyPem, 0o600);
  await writeDurably(join(dir, CA_FILES.rootCert), chainPem, 0o644);
  await writeDurably(join(dir, CA_FILES.intermediateCert), certPem, 0o644);
  await syncDir(dir);
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) return false;
    throw err;
  }
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch (err) {
    if (isErrno(err, 'ENOENT') || isErrno(err, 'ENOTDIR')) return false;
    throw err;
  }
}

function errnoCode(err: unknown): string {
  return (err as NodeJS.ErrnoException).code ?? (err as Error).message;
}
