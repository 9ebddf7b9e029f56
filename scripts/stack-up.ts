import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startStack } from '@countersign/stack';

/**
 * `scripts/up.sh`: the local stack for trying Countersign. Data lives in
 * .data/ (kept between runs); the demo org's keys are written to
 * .data/demo-keys.json. Prints a walkthrough and stops cleanly on Ctrl-C.
 */
const { values } = parseArgs({
  options: {
    port: { type: 'string', default: '8080' },
    'data-dir': { type: 'string', default: '.data' },
    bypass: { type: 'boolean', default: false },
    verbose: { type: 'boolean', default: false },
  },
});
const dataDir = values['data-dir'] ?? '.data';
const say = (s = '') => process.stdout.write(`${s}\n`);

say('countersign: starting PostgreSQL, Redis, the SMTP sink and the five services ...');
const stack = await startStack({
  dataDir,
  smtp: 'sink',
  seedDemo: true,
  demoSecondAdmin: true,
  apiPort: Number(values.port),
  echo: values.verbose,
  env: values.bypass ? { COUNTERSIGN_APPROVAL_BYPASS: 'true' } : {},
  log: values.verbose ? (l) => say(`  ${l}`) : undefined,
});
const demo = stack.demo;
if (!demo) throw new Error('demo org missing');
const p = demo.principals;
const api = stack.apiUrl;
const board = stack.queueDashboard;

say(`
Countersign is running.

  API            ${api}            (OpenAPI: ${api}/openapi.json, docs: ${api}/docs)
  Web console    ${api}/ui/
  Metrics        ${stack.services.map((s) => `${s.id} ${stack.metricsUrl(s)}/metrics`).join('\n                 ')}
  Mail (sink)    ${stack.smtpUrl}  -> mails are saved in ${join(dataDir, 'mail')}/ (index.jsonl lists them)
  Logs           ${join(dataDir, 'logs')}/
  Demo keys      ${stack.demoKeysFile}
  Queue dashboard ${board ? `${board.url}  (read-only; the operator token opens it, no org key does)` : 'not mounted'}
  Dashboard token ${board ? `${board.token}  (kept in ${board.tokenFile}; the api has only its SHA-256)` : '-'}
  CA             root (offline: its key is given to no service) ${stack.caOfflineDir}/
                 issuer's intermediate ${join(dataDir, 'ca')}/; trust anchor ${join(stack.caOfflineDir, 'root.crt.pem')}

Demo org "demo" (profiles: production-web needs one approval from alice or bob; development-web needs none).
It is two-person ready: two admins, neither created by the other, so a change that could weaken the gate
needs both. Each key below is its principal's own key, minted with the enrollment key it was given
(an enrollment key can request but never approve: see 'countersign enroll').
  admin  (admin)      ${p.admin.key}
  erin   (admin)      ${p.erin?.key ?? '-'}
  alice  (operator)   ${p.alice.key}
  bob    (operator)   ${p.bob.key}
  carol  (requester)  ${p.carol.key}
  dave   (auditor)    ${p.dave.key}

Walkthrough (copy and paste into another terminal):

  export API=${api}
  export CAROL=${p.carol.key} ALICE=${p.alice.key}

  # 1. carol makes a key and CSR, and requests a certificate on the gated profile
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout web.key -out web.csr \\
    -subj /CN=web.${demo.domain} -addext subjectAltName=DNS:web.${demo.domain}
  CSR=$(awk '{printf "%s\\\\n", $0}' web.csr)
  curl -s -X POST $API/api/v1/certificates -H "Authorization: Bearer $CAROL" -H 'content-type: application/json' \\
    -d "{\\"profile_id\\":\\"${demo.profiles.production}\\",\\"common_name\\":\\"web.${demo.domain}\\",\\"csr\\":\\"$CSR\\",\\"justification\\":\\"new web frontend\\"}" | tee request.json

  # 2. carol cannot approve her own request (403 two_person_integrity); alice approves it
  APPROVAL=$(node -p 'require("./request.json").approval.id'); CERT=$(node -p 'require("./request.json").certificate.id')
  curl -s -X POST $API/api/v1/approvals/$APPROVAL/approve -H "Authorization: Bearer $CAROL" -H 'content-type: application/json' -d '{}'
  curl -s -X POST $API/api/v1/approvals/$APPROVAL/approve -H "Authorization: Bearer $ALICE" -H 'content-type: application/json' -d '{"note":"checked"}'

  # 3. fetch the signed chain and check it
  until curl -sf $API/api/v1/certificates/$CERT/pem -H "Authorization: Bearer $CAROL" -o web.pem; do sleep 0.2; done
  openssl x509 -in web.pem -noout -subject -issuer -enddate

  # 4. one admin alone cannot weaken the gate: admin asks to ungate production-web (202, nothing changes yet),
  #    and erin, the other admin, decides (reject here; approve would apply it)
  export ADMIN=${p.admin.key} ERIN=${p.erin?.key ?? ''}
  curl -s -X PUT $API/api/v1/profiles/${demo.profiles.production} -H "Authorization: Bearer $ADMIN" -H 'content-type: application/json' \\
    -d '{"name":"production-web","environment":"production","requires_approval":false,"allowed_domains":["${demo.domain}","*.${demo.domain}"],"approvers":["${p.alice.id}","${p.bob.id}"],"justification":"try the gate"}' | tee change.json
  CHANGE=$(node -p 'require("./change.json").configuration_request.id')
  curl -s -X POST $API/api/v1/configuration-requests/$CHANGE/reject -H "Authorization: Bearer $ERIN" -H 'content-type: application/json' -d '{"note":"not in production"}'

  # The same with the CLI:
  COUNTERSIGN_URL=$API COUNTERSIGN_API_KEY=$ALICE pnpm countersign approvals list

Press Ctrl-C to stop everything.`);

let stopping = false;
const stop = async (signal: string) => {
  if (stopping) return;
  stopping = true;
  say(`\ncountersign: ${signal} received, stopping services, Redis and PostgreSQL ...`);
  await stack.stop();
  say('countersign: stopped.');
  process.exit(0);
};
process.on('SIGINT', () => void stop('SIGINT'));
process.on('SIGTERM', () => void stop('SIGTERM'));
for (const s of stack.services) {
  void s.exited().then((code) => {
    if (!stopping) say(`countersign: ${s.id} exited with code ${code}; see ${s.logFile}`);
  });
}
