/**
 * Persisting the local CA in a directory, safely under concurrent start-up.
 *
 * Several replicas (or a test runner's workers) may start at once against an
 * empty directory; they must all end up with one and the same CA. Two
 * mechanisms cooperate:
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
import { createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import { chmod, link, mkdir, open, readdir, readFile, stat, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CaMaterial, LocalCa } from './local-ca.ts';
import { createCaMaterial, loadLocalCaFromFiles } from './local-ca.ts';

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
