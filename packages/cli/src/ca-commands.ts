import { X509Certificate } from 'node:crypto';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { CA_FILES, initOfflineCa, type OfflineCaResult, rotateIntermediate } from '@countersign/ca';

/**
 * The offline CA step. The root's private key is made here, written to one
 * directory that stays on an offline machine (or in an HSM backup), and never
 * given to a service; the issuer gets only an intermediate, so a compromised
 * issuer can sign leaves until the intermediate is replaced, never make a CA.
 */
// Not admin-commands' class: importing that module would load the database packages for nothing.
class UsageError extends Error {
  override name = 'UsageError';
}

const INIT_HELP = `countersign ca init --out DIR [--issuer-out DIR] [--name PREFIX (default Countersign)] [--json]

Makes a root CA (10 years) and an intermediate (5 years) signed by it.
  DIR/${CA_FILES.rootKey}   the root's private key: the only copy; keep DIR offline
  DIR/${CA_FILES.rootCert}   the root certificate: the trust anchor for relying parties
  --issuer-out (default DIR/issuer): ${CA_FILES.intermediateCert}, ${CA_FILES.intermediateKey}
                and ${CA_FILES.rootCert} (the chain): copy these, and only these, to the issuer.
Refuses a directory that already holds a root or an intermediate.
`;

const ROTATE_HELP = `countersign ca rotate-intermediate --root-dir DIR --out NEW_DIR [--name PREFIX] [--json]

Makes a new intermediate signed by the root in DIR (from 'countersign ca init') and writes
${CA_FILES.intermediateCert}, ${CA_FILES.intermediateKey} and ${CA_FILES.rootCert} to NEW_DIR, which
must be empty: swap it in for the issuer's CA, then restart the issuers. Certificates already
issued keep verifying under the same root.
`;

export async function caInit(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      help: { type: 'boolean', short: 'h' },
      out: { type: 'string' },
      'issuer-out': { type: 'string' },
      name: { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  if (values.help) {
    process.stdout.write(INIT_HELP);
    return 0;
  }
  if (!values.out) throw new UsageError(`--out DIR is required\n\n${INIT_HELP}`);
  const r = await initOfflineCa({
    rootDir: values.out,
    issuerDir: values['issuer-out'],
    commonNamePrefix: values.name ?? 'Countersign',
  });
  report(r, values.json === true, true);
  return 0;
}

export async function caRotateIntermediate(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      help: { type: 'boolean', short: 'h' },
      'root-dir': { type: 'string' },
      out: { type: 'string' },
      name: { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  if (values.help) {
    process.stdout.write(ROTATE_HELP);
    return 0;
  }
  if (!values['root-dir'] || !values.out)
    throw new UsageError(`--root-dir DIR and --out NEW_DIR are required\n\n${ROTATE_HELP}`);
  const r = await rotateIntermediate({
    rootDir: values['root-dir'],
    issuerDir: values.out,
    commonNamePrefix: values.name,
  });
  report(r, values.json === true, false);
  return 0;
}

function report(r: OfflineCaResult, json: boolean, created: boolean): void {
  const root = new X509Certificate(r.rootCertPem);
  const intermediate = new X509Certificate(r.intermediateCertPem);
  const files = {
    root_key: join(r.rootDir, CA_FILES.rootKey),
    root_cert: join(r.rootDir, CA_FILES.rootCert),
    intermediate_cert: join(r.issuerDir, CA_FILES.intermediateCert),
    intermediate_key: join(r.issuerDir, CA_FILES.intermediateKey),
    chain: join(r.issuerDir, CA_FILES.rootCert),
  };
  if (json) {
    process.stdout.write(
      `${JSON.stringify({
        root: {
          subject: root.subject,
          not_after: new Date(root.validTo).toISOString(),
          fingerprint256: root.fingerprint256,
        },
        intermediate: {
          subject: intermediate.subject,
          not_after: new Date(intermediate.validTo).toISOString(),
          fingerprint256: intermediate.fingerprint256,
        },
        root_dir: r.rootDir,
        issuer_dir: r.issuerDir,
        files,
      })}\n`,
    );
    return;
  }
  const rel = (p: string) => relative(process.cwd(), p) || '.';
  process.stdout.write(
    `${created ? `root CA          ${root.subject} (until ${root.validTo})\n` : ''}intermediate CA  ${intermediate.subject} (until ${intermediate.validTo})

Keep offline (never copy to a server, a container image, a volume or a Secret the services see):
  ${rel(files.root_key)}

Give to the issuer, and only to the issuer (the directory ${rel(r.issuerDir)}):
  processes / compose:  COUNTERSIGN_CA_DIR=<a copy of ${rel(r.issuerDir)}>
                        or COUNTERSIGN_CA_CERT_FILE=${CA_FILES.intermediateCert}, COUNTERSIGN_CA_KEY_FILE=${CA_FILES.intermediateKey},
                           COUNTERSIGN_CA_CHAIN_FILE=${CA_FILES.rootCert}
  Kubernetes:           the three files into infra/k8s/secrets/issuer-ca/, then kubectl apply -k infra/k8s/secrets
                        (Secret countersign-ca: tls.crt, tls.key, chain.crt; mounted by the issuer only)
  then restart the issuers. Where this machine is not the issuer, delete ${rel(files.intermediate_key)}
  here once it is installed.

Publish to relying parties (their trust store):
  ${rel(files.root_cert)}
`,
  );
}
