import { DomainError } from '@countersign/domain';
import { APPROVER_HELP, approverCommands } from './approver-commands.ts';
import { configCommands } from './config-commands.ts';
import { IDENTITY_HELP, identityCommands } from './identity-commands.ts';

/** `countersign <command>`: the operator and approver command-line tool. */
const HELP = `countersign <command> [options]

Operator commands (talk to the database):
  db provision     create roles and database (superuser URL)
  db migrate       apply migrations as the owner role
  bootstrap        create an org, its first admins and their enrollment keys
  admin add        add an admin to an org as the installation (two-person readiness)
  dashboard token  make the queue dashboard's operator token (offline); prints the SHA-256 to configure

CA commands (offline: run them on a machine the services never reach):
  ca init                  make the root (its key stays in --out) and the issuer's intermediate
  ca rotate-intermediate   make a new intermediate signed by that root

${IDENTITY_HELP}
${APPROVER_HELP}
Run 'countersign <command> --help' for the options of a command.
`;

type Command = (argv: string[]) => Promise<number>;

// The database-backed commands pull in pg, kysely and the ledger: loaded only
// when one of them runs, so every approver command starts about a second faster.
const admin =
  (name: 'dbProvision' | 'dbMigrate' | 'bootstrap' | 'adminAdd'): Command =>
  async (argv) =>
    (await import('./admin-commands.ts'))[name](argv);
const ca =
  (name: 'caInit' | 'caRotateIntermediate'): Command =>
  async (argv) =>
    (await import('./ca-commands.ts'))[name](argv);
const dashboardToken: Command = async (argv) => (await import('./dashboard-commands.ts')).dashboardToken(argv);
const auditVerify: Command = async (argv) =>
  (await import('./audit-commands.ts')).auditVerifyCommand(approverCommands['audit verify'])(argv);

const COMMANDS: Record<string, Command> = {
  'db provision': admin('dbProvision'),
  'db migrate': admin('dbMigrate'),
  bootstrap: admin('bootstrap'),
  'admin add': admin('adminAdd'),
  'dashboard token': dashboardToken,
  'ca init': ca('caInit'),
  'ca rotate-intermediate': ca('caRotateIntermediate'),
  ...approverCommands,
  ...identityCommands,
  ...configCommands,
  'audit verify': auditVerify,
};

async function main(argv: string[]): Promise<number> {
  for (const words of [2, 1]) {
    const name = argv.slice(0, words).join(' ');
    const cmd = COMMANDS[name];
    if (cmd) return cmd(argv.slice(words));
  }
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    process.stdout.write(HELP);
    return argv.length === 0 ? 2 : 0;
  }
  process.stderr.write(`countersign: unknown command "${argv.join(' ')}"\n\n${HELP}`);
  return 2;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if ((err instanceof Error && err.name === 'UsageError') || err instanceof DomainError) {
      process.stderr.write(`countersign: ${err.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`countersign: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
