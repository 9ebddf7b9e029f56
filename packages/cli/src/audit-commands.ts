import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import {
  type ChainReport,
  createDatabase,
  keyIdOf,
  keyringOf,
  parseCheckpointFile,
  parsePublicKey,
  type SignedCheckpoint,
  verifyAuditChain,
  verifyCheckpoint,
  verifyLedgerLines,
} from '@countersign/db';

/**
 * `countersign audit verify --checkpoint FILE ...`: an auditor's offline
 * check. It trusts nothing but the public key given: the checkpoint's Ed25519
 * signature must verify with it, and then the ledger (an export file, or a
 * live database read directly) must contain every record up to the
 * checkpoint, each hashing and linking correctly, ending in the signed head
 * hash. Without --checkpoint the command is the api-backed `audit verify`.
 */
export const AUDIT_VERIFY_OFFLINE_USAGE = `countersign audit verify --checkpoint FILE (--ledger FILE | --database-url URL) --public-key FILE [--json]

Verifies the audit ledger against a signed checkpoint using only the public key:
  --checkpoint FILE    a checkpoint (GET /api/v1/audit/checkpoints/{id}) or an export (its first line)
  --ledger FILE        an export (GET /api/v1/audit/export): JSON lines, checked offline
  --database-url URL   or read the org's chain from PostgreSQL directly (read-only)
  --public-key FILE    the Ed25519 public key (PEM) you trust, e.g. the .pub next to the signing key
  --json               print the report as JSON

Exit codes: 0 verified; 1 the ledger does not verify (edited, removed, reordered,
forged or truncated records; the first bad record is named); 2 usage or unreadable
input; 3 the checkpoint's signature does not verify with the public key;
4 the database could not be read.
`;

export const AUDIT_EXIT = { ok: 0, broken: 1, usage: 2, badSignature: 3, unavailable: 4 } as const;

type Command = (argv: string[]) => Promise<number>;

export interface AuditIo {
  out(text: string): void;
  err(text: string): void;
}

const processIo: AuditIo = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
};

/** `audit verify` with --checkpoint runs offline; without it, the online command. */
export function auditVerifyCommand(online: Command | undefined, io: AuditIo = processIo): Command {
  return async (argv) => {
    if (argv.some((a) => a === '--checkpoint' || a.startsWith('--checkpoint='))) return auditVerifyOffline(argv, io);
    if (online && !argv.includes('--help') && !argv.includes('-h')) return online(argv);
    if (argv.includes('--help') || argv.includes('-h')) {
      if (online) await online(argv);
      io.out(`\nOffline, against a signed checkpoint:\n${AUDIT_VERIFY_OFFLINE_USAGE}`);
      return AUDIT_EXIT.ok;
    }
    io.err(`countersign: audit verify needs --checkpoint\n\n${AUDIT_VERIFY_OFFLINE_USAGE}`);
    return AUDIT_EXIT.usage;
  };
}

export async function auditVerifyOffline(argv: string[], io: AuditIo = processIo): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        checkpoint: { type: 'string' },
        ledger: { type: 'string' },
        'database-url': { type: 'string' },
        'public-key': { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    io.err(`countersign: ${err instanceof Error ? err.message : String(err)}\n\n${AUDIT_VERIFY_OFFLINE_USAGE}`);
    return AUDIT_EXIT.usage;
  }
  if (values.help) {
    io.out(AUDIT_VERIFY_OFFLINE_USAGE);
    return AUDIT_EXIT.ok;
  }
  const checkpointFile = values.checkpoint as string | undefined;
  const ledgerFile = values.ledger as string | undefined;
  const databaseUrl = values['database-url'] as string | undefined;
  const keyFile = values['public-key'] as string | undefined;
  const usage = (m: string) => {
    io.err(`countersign: ${m}\n\n${AUDIT_VERIFY_OFFLINE_USAGE}`);
    return AUDIT_EXIT.usage;
  };
  if (!checkpointFile) return usage('--checkpoint FILE is required');
  if (!keyFile) return usage('--public-key FILE is required');
  if ((ledgerFile === undefined) === (databaseUrl === undefined)) {
    return usage('give exactly one of --ledger FILE or --database-url URL');
  }

  let checkpoint: SignedCheckpoint;
  let keyring: ReturnType<typeof keyringOf>;
  try {
    const publicKey = parsePublicKey(await readFile(keyFile, 'utf8'));
    keyring = keyringOf(publicKey);
    checkpoint = parseCheckpointFile(await readFile(checkpointFile, 'utf8'));
    const check = verifyCheckpoint(checkpoint, keyring);
    if (check !== 'valid') {
      io.err(
        check === 'unknown_key'
          ? `countersign: the checkpoint was signed by key ${checkpoint.key_id}, not by the public key given (${keyIdOf(publicKey)})\n`
          : 'countersign: the checkpoint signature does NOT verify with the public key: the checkpoint was altered or forged\n',
      );
      return AUDIT_EXIT.badSignature;
    }
  } catch (err) {
    io.err(`countersign: ${err instanceof Error ? err.message : String(err)}\n`);
    return AUDIT_EXIT.usage;
  }
  const trusted = [
    { id: checkpoint.id, seq: Number(checkpoint.seq), headHash: Buffer.from(checkpoint.head_hash, 'hex') },
  ];

  let report: ChainReport;
  if (ledgerFile !== undefined) {
    try {
      const lines = createInterface({
        input: createReadStream(ledgerFile, 'utf8'),
        crlfDelay: Number.POSITIVE_INFINITY,
      });
      report = await verifyLedgerLines(lines, checkpoint.org_id, trusted);
    } catch (err) {
      io.err(
        `countersign: cannot read the ledger ${ledgerFile}: ${err instanceof Error ? err.message : String(err)}\n`,
      );
      return AUDIT_EXIT.usage;
    }
  } else {
    const handle = createDatabase({
      url: databaseUrl as string,
      poolSize: 1,
      applicationName: 'countersign-audit-verify',
    });
    try {
      report = await verifyAuditChain(handle, checkpoint.org_id, { checkpoints: trusted });
    } catch (err) {
      io.err(`countersign: cannot read the database: ${err instanceof Error ? err.message : String(err)}\n`);
      return AUDIT_EXIT.unavailable;
    } finally {
      await handle.close();
    }
  }

  if (values.json) {
    io.out(`${JSON.stringify({ ...report, verified_against: checkpoint }, null, 2)}\n`);
  } else if (report.ok) {
    io.out(
      `Audit ledger OK: ${report.checked} records verified; checkpoint ${checkpoint.id} (seq ${checkpoint.seq}, signed by key ${checkpoint.key_id} at ${checkpoint.at}) matches; head seq ${report.head.seq}.\n`,
    );
  } else {
    io.out(
      `Audit ledger BROKEN at record ${report.first_bad_seq ?? '-'}: ${report.reason} (${report.checked} records verified before it).\n`,
    );
  }
  return report.ok ? AUDIT_EXIT.ok : AUDIT_EXIT.broken;
}
