import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRegistry, metricFactories } from '@countersign/observability';
import { QUEUE_NAMES } from '@countersign/queues';
import { BACKGROUND_SERVICES } from '@countersign/stack';
import { ScaledObject, TriggerAuthentication } from '@kubernetes-models/keda/keda.sh/v1alpha1';
import { PodMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { QueueKeys } from 'bullmq';
import { Deployment } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { Job } from 'kubernetes-models/batch/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ConfigMap, Namespace, Secret, Service, ServiceAccount } from 'kubernetes-models/v1';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';

/**
 * The deployment artefacts are code too: every Kubernetes manifest is checked
 * against the Kubernetes (and KEDA, Prometheus Operator) JSON schemas and
 * cross-checked (selectors, probes on the ops port, config keys the services
 * really read, the BullMQ key KEDA watches); compose must scale without edits;
 * alert rules and the dashboard may only use metrics the services export;
 * promtool checks and unit-tests the rules where it is installed.
 */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SERVICES = ['api', 'approval', 'issuer', 'notifier', 'reaper'] as const;
/** Panels use the dashboard's datasource variable, so the dashboard works with any Prometheus uid. */
const GRAFANA_DATASOURCE_VARIABLE = ['$', '{datasource}'].join('');
const read = (p: string) => readFileSync(join(ROOT, p), 'utf8');

// Parsed YAML is untyped (tests only; every access below is asserted).
type Doc = Record<string, any>;

const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'apps/v1/Deployment': Deployment,
  'v1/Service': Service,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'batch/v1/Job': Job,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'keda.sh/v1alpha1/ScaledObject': ScaledObject,
  'keda.sh/v1alpha1/TriggerAuthentication': TriggerAuthentication,
  'monitoring.coreos.com/v1/PodMonitor': PodMonitor,
};

function loadManifests(): { file: string; doc: Doc }[] {
  const out: { file: string; doc: Doc }[] = [];
  for (const file of readdirSync(join(ROOT, 'infra/k8s')).filter((f) => /\.ya?ml$/.test(f))) {
    if (file === 'kustomization.yaml') continue;
    for (const d of parseAllDocuments(read(`infra/k8s/${file}`))) {
      if (d.errors.length) throw new Error(`${file}: ${d.errors.map((e) => e.message).join('; ')}`);
      const doc = d.toJS() as Doc | null;
      if (doc) out.push({ file, doc });
    }
  }
  for (const doc of generatedSecrets()) out.push({ file: SECRETS_KUSTOMIZATION, doc });
  return out;
}

const SECRETS_KUSTOMIZATION = 'infra/k8s/secrets/kustomization.yaml';

/**
 * The Secrets that infra/k8s/secrets/kustomization.yaml generates from the operator's files (no
 * value is in the repository), as the manifests kustomize would emit, with empty values.
 */
function generatedSecrets(): Doc[] {
  const k = parse(read(SECRETS_KUSTOMIZATION)) as Doc;
  return (k.secretGenerator as Doc[]).map((g) => {
    const fileKeys = ((g.files ?? []) as string[]).map((f) => f.split('=')[0] ?? f);
    const envKeys = ((g.envs ?? []) as string[]).flatMap((env) =>
      read(`infra/k8s/secrets/${env}.example`)
        .split('\n')
        .filter((l) => /^[A-Za-z_][A-Za-z0-9_.-]*=/.test(l))
        .map((l) => l.split('=')[0] ?? ''),
    );
    return {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: g.name, namespace: k.namespace, labels: k.generatorOptions?.labels },
      type: 'Opaque',
      data: Object.fromEntries([...fileKeys, ...envKeys].map((key) => [key, ''])),
    };
  });
}

const secretKeys = (doc: Doc | undefined): string[] => [
  ...Object.keys(doc?.stringData ?? {}),
  ...Object.keys(doc?.data ?? {}),
];

/** Every COUNTERSIGN_ variable some service or package actually reads (config loader and direct reads). */
function knownVariables(): Set<string> {
  const names = new Set<string>();
  const config = read('packages/config/src/index.ts');
  for (const m of config.matchAll(/\(\s*env,\s*'([A-Z0-9_]+)'/g)) names.add(`COUNTERSIGN_${m[1]}`);
  for (const m of config.matchAll(/secretUrl\(\s*env,\s*'([A-Z0-9_]+)'/g)) names.add(`COUNTERSIGN_${m[1]}_FILE`);
  // The CLI's database commands in the image: the entrypoint turns these _FILE variables into values.
  for (const m of read('infra/docker/entrypoint.sh').matchAll(/^\s*file_env ([A-Z0-9_]+)$/gm))
    names.add(`COUNTERSIGN_${m[1]}_FILE`);
  const walk = (dir: string) => {
    for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
      if (e.name === 'node_modules') continue;
      const p = `${dir}/${e.name}`;
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts') && !e.name.includes('.test.'))
        for (const m of read(p).matchAll(/COUNTERSIGN_[A-Z0-9_]+/g)) names.add(m[0]);
    }
  };
  for (const top of ['packages', 'services']) for (const d of readdirSync(join(ROOT, top))) walk(`${top}/${d}`);
  return names;
}

function exportedMetrics(): Map<string, string> {
  const registry = createRegistry('infra-test');
  for (const make of Object.values(metricFactories)) make(registry);
  const names = new Map<string, string>();
  for (const m of registry.getMetricsAsArray()) {
    const { name, type } = m as unknown as { name: string; type: string };
    names.set(name, type);
    if (type === 'histogram') for (const s of ['_bucket', '_count', '_sum']) names.set(name + s, 'histogram');
  }
  return names;
}

const subset = (a: Record<string, string>, b: Record<string, string>) =>
  Object.entries(a).every(([k, v]) => b[k] === v);

describe('Kubernetes manifests (infra/k8s)', () => {
  const manifests = loadManifests();
  const find = (kind: string, name: string) =>
    manifests.find((m) => m.doc.kind === kind && m.doc.metadata?.name === name)?.doc;

  it('parse and validate against the Kubernetes, KEDA and Prometheus Operator schemas', () => {
    expect(manifests.length).toBeGreaterThan(20);
    for (const { file, doc } of manifests) {
      const model = MODELS[`${doc.apiVersion}/${doc.kind}`];
      expect(model, `${file}: no schema for ${doc.apiVersion} ${doc.kind}`).toBeDefined();
      if (!model) continue;
      expect(() => new model(doc as never).validate(), `${file} ${doc.kind}/${doc.metadata?.name}`).not.toThrow();
      if (doc.kind !== 'Namespace') expect(doc.metadata?.namespace, `${file} ${doc.kind}`).toBe('countersign');
    }
  });

  it('the schema check really rejects a broken manifest', () => {
    const broken = structuredClone(find('Deployment', 'countersign-api') ?? {});
    broken.spec.template.spec.containers[0].ports[0].containerPort = 'eighty';
    expect(() => new Deployment(broken as never).validate()).toThrow(/containerPort/);
  });

  it('kustomization lists every manifest that exists, and the migration Job is applied on its own', () => {
    const k = parse(read('infra/k8s/kustomization.yaml')) as Doc;
    const files = readdirSync(join(ROOT, 'infra/k8s')).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
    expect([...k.resources].sort()).toEqual([...files.filter((f) => f !== 'migrate-job.yaml'), 'secrets'].sort());
    // The secret files themselves are never committed, nor copied into the image.
    const ignore = read('infra/k8s/secrets/.gitignore').split('\n');
    expect(ignore).toContain('*');
    expect(read('.dockerignore').split('\n')).toContain('infra/k8s/secrets');
    const tracked = execFileSync('git', ['ls-files', 'infra/k8s/secrets'], { cwd: ROOT, encoding: 'utf8' });
    for (const f of tracked.split('\n').filter(Boolean))
      expect(f, 'only the kustomization, the ignore file and examples are in git').toMatch(
        /secrets\/(kustomization\.yaml|\.gitignore|[^/]+\.example)$/,
      );
  });

  const config = find('ConfigMap', 'countersign-config');
  const metricsPort = Number(config?.data?.COUNTERSIGN_METRICS_PORT);

  for (const svc of SERVICES) {
    it(`${svc}: Deployment, Service and PodDisruptionBudget agree; probes on the ops port; resources set`, () => {
      const name = `countersign-${svc}`;
      const dep = find('Deployment', name);
      const service = find('Service', name);
      const pdb = find('PodDisruptionBudget', name);
      expect(dep && service && pdb, `${name}: Deployment, Service and PDB`).toBeTruthy();
      if (!dep || !service || !pdb) return;
      const podLabels = dep.spec.template.metadata.labels as Record<string, string>;
      expect(subset(dep.spec.selector.matchLabels, podLabels), 'deployment selector').toBe(true);
      expect(subset(service.spec.selector, podLabels), 'service selector').toBe(true);
      expect(subset(pdb.spec.selector.matchLabels, podLabels), 'pdb selector').toBe(true);
      expect(podLabels['app.kubernetes.io/component']).toBe(svc);
      const pod = dep.spec.template.spec;
      expect(pod.securityContext.runAsNonRoot).toBe(true);
      const [c, ...others] = pod.containers as Doc[];
      expect(others).toEqual([]);
      if (!c) return;
      // The image's entrypoint picks the service from its first argument.
      expect(c.args).toEqual([svc]);
      expect(read('infra/docker/entrypoint.sh')).toContain(svc);
      const ports = new Map((c.ports as Doc[]).map((p) => [p.name, p.containerPort]));
      expect(ports.get('metrics')).toBe(metricsPort);
      if (svc === 'api') expect(ports.get('http')).toBe(Number(config?.data?.COUNTERSIGN_HTTP_PORT));
      expect(c.livenessProbe.httpGet).toMatchObject({ path: '/healthz', port: 'metrics' });
      expect(c.readinessProbe.httpGet).toMatchObject({ path: '/readyz', port: 'metrics' });
      expect(c.startupProbe.httpGet).toMatchObject({ path: '/healthz', port: 'metrics' });
      expect(c.resources.requests.cpu).toBeTruthy();
      expect(c.resources.requests.memory).toBeTruthy();
      expect(c.resources.limits.memory).toBeTruthy();
      for (const ref of c.envFrom as Doc[]) {
        if (ref.configMapRef) expect(find('ConfigMap', ref.configMapRef.name), ref.configMapRef.name).toBeDefined();
        // Secrets are mounted as files, never put into the environment.
        expect(ref.secretRef, `${name} takes no Secret as environment`).toBeUndefined();
      }
      const volumes = new Map((pod.volumes as Doc[]).map((v) => [v.name, v]));
      for (const m of c.volumeMounts as Doc[]) {
        const v = volumes.get(m.name);
        expect(v, `volume ${m.name}`).toBeDefined();
        if (v?.secret) {
          expect(find('Secret', v.secret.secretName), v.secret.secretName).toBeDefined();
          expect(m.readOnly, `${m.name} is mounted read-only`).toBe(true);
        }
      }
      // Files the container is told to read must be mounted, and be a key of the Secret mounted there.
      for (const e of (c.env ?? []) as Doc[]) {
        if (!String(e.name).endsWith('_FILE')) continue;
        const m = (c.volumeMounts as Doc[]).find((vm) => String(e.value).startsWith(`${vm.mountPath}/`));
        expect(m, `${e.name}=${e.value} is mounted`).toBeDefined();
        const secret = volumes.get(m?.name)?.secret?.secretName;
        if (secret)
          expect(secretKeys(find('Secret', secret))).toContain(String(e.value).slice(`${m?.mountPath}/`.length));
      }
      const servicePorts = new Map((service.spec.ports as Doc[]).map((p) => [p.name, p.targetPort]));
      expect(servicePorts.get('metrics')).toBe('metrics');
    });
  }

  it('the issuer reads its CA from the mounted Secret (replicas must share one CA, never create their own)', () => {
    const c = find('Deployment', 'countersign-issuer')?.spec.template.spec.containers[0] as Doc;
    const env = new Map((c.env as Doc[]).map((e) => [e.name, e.value]));
    expect(env.get('COUNTERSIGN_CA_CERT_FILE')).toBe('/etc/countersign/ca/tls.crt');
    expect(env.get('COUNTERSIGN_CA_KEY_FILE')).toBe('/etc/countersign/ca/tls.key');
    const ca = find('Secret', 'countersign-ca');
    expect(secretKeys(ca).sort()).toEqual(['chain.crt', 'tls.crt', 'tls.key']);
    // Made from the issuer/ directory of `countersign ca init`: the intermediate, its key and the root certificate.
    const gen = (parse(read(SECRETS_KUSTOMIZATION)) as Doc).secretGenerator.find(
      (g: Doc) => g.name === 'countersign-ca',
    );
    expect(gen.files).toEqual([
      'tls.crt=issuer-ca/intermediate.crt.pem',
      'tls.key=issuer-ca/intermediate.key.pem',
      'chain.crt=issuer-ca/root.crt.pem',
    ]);
  });

  it('configuration only names variables the services read, and secrets stay out of the ConfigMap', () => {
    const known = knownVariables();
    const keys = [
      ...Object.keys(config?.data ?? {}),
      ...manifests
        .filter((m) => m.doc.kind === 'Secret')
        .flatMap((m) => Object.keys(m.doc.stringData ?? {}).filter((k) => k.startsWith('COUNTERSIGN_'))),
      ...manifests
        .filter((m) => m.doc.kind === 'Deployment')
        .flatMap((m) => (m.doc.spec.template.spec.containers[0].env ?? []).map((e: Doc) => e.name)),
      ...manifests
        .filter((m) => m.doc.kind === 'Job')
        .flatMap((m) => (m.doc.spec.template.spec.containers[0].env ?? []).map((e: Doc) => e.name)),
    ];
    for (const k of keys) expect(known.has(k), `${k} is read by Countersign`).toBe(true);
    // The shared ConfigMap holds neither a secret nor the path of one: each workload names its own files.
    for (const k of Object.keys(config?.data ?? {}))
      expect(k).not.toMatch(/DATABASE_URL|REDIS_URL|SMTP_URL|PASSWORD|SECRET|TOKEN|_KEY|_FILE|CA_/);
    expect(secretKeys(find('Secret', 'countersign-app')).sort()).toEqual(['database-url', 'redis-url']);
  });

  it('the migration Job runs `countersign db migrate` as the owner role', () => {
    const job = find('Job', 'countersign-migrate');
    const c = job?.spec.template.spec.containers[0] as Doc;
    expect(c.args).toEqual(['countersign', 'db', 'migrate']);
    expect(job?.spec.template.spec.restartPolicy).toBe('Never');
    const env = new Map((c.env as Doc[]).map((e) => [e.name, e.value]));
    expect(env.get('COUNTERSIGN_MIGRATION_DATABASE_URL_FILE')).toBe('/etc/countersign/migration/migration-url');
    const mount = (c.volumeMounts as Doc[]).find((m) => m.mountPath === '/etc/countersign/migration');
    const volume = (job?.spec.template.spec.volumes as Doc[]).find((v) => v.name === mount?.name);
    expect(volume?.secret.secretName).toBe('countersign-migration');
    expect(secretKeys(find('Secret', 'countersign-migration'))).toEqual(['migration-url']);
    expect(c.envFrom.some((e: Doc) => e.secretRef)).toBe(false);
    expect(read('infra/docker/entrypoint.sh')).toMatch(/countersign\)\s*\n\s*shift/);
  });

  it('KEDA scales issuer and notifier on the real BullMQ wait lists of the queues they consume', () => {
    const prefix = String(config?.data?.COUNTERSIGN_QUEUE_PREFIX);
    const keys = new QueueKeys(prefix);
    const consumes: Record<string, string> = {
      'countersign-issuer': QUEUE_NAMES.issuance,
      'countersign-notifier': QUEUE_NAMES.notifications,
    };
    const scaled = manifests.filter((m) => m.doc.kind === 'ScaledObject').map((m) => m.doc);
    expect(scaled.map((s) => s.spec.scaleTargetRef.name).sort()).toEqual(Object.keys(consumes).sort());
    for (const so of scaled) {
      const target = so.spec.scaleTargetRef.name as string;
      expect(find('Deployment', target), target).toBeDefined();
      const [trigger] = so.spec.triggers as Doc[];
      expect(trigger?.type).toBe('redis');
      expect(trigger?.metadata.listName).toBe(keys.getKeys(consumes[target] ?? '').wait);
      expect(Number(trigger?.metadata.listLength)).toBeGreaterThan(0);
      const auth = find('TriggerAuthentication', trigger?.authenticationRef.name);
      for (const ref of (auth?.spec.secretTargetRef ?? []) as Doc[]) {
        expect(secretKeys(find('Secret', ref.name))).toContain(ref.key);
      }
      expect(so.spec.minReplicaCount).toBeGreaterThanOrEqual(1);
    }
    // One autoscaler per Deployment: KEDA makes its own HPA.
    const hpaTargets = manifests.filter((m) => m.doc.kind === 'HorizontalPodAutoscaler').map((m) => m.doc);
    for (const h of hpaTargets) {
      expect(find('Deployment', h.spec.scaleTargetRef.name)).toBeDefined();
      expect(Object.keys(consumes)).not.toContain(h.spec.scaleTargetRef.name);
    }
  });

  it('the PodMonitor names jobs countersign-<service>, as the alert rules expect', () => {
    const pm = find('PodMonitor', 'countersign');
    expect(pm?.spec.jobLabel).toBe('app.kubernetes.io/name');
    expect(pm?.spec.podMetricsEndpoints[0].port).toBe('metrics');
  });
});

/** Compose's one-shot set-up services: they run to completion before the others start. */
const ONE_SHOTS = ['secrets-init', 'ca-init', 'migrate'];

describe('docker compose (docker-compose.yml)', () => {
  const compose = parse(read('docker-compose.yml'), { merge: true }) as Doc;
  const services = compose.services as Record<string, Doc>;
  const dockerfile = read('infra/docker/Dockerfile');
  const imagePort = Number(/COUNTERSIGN_METRICS_PORT=(\d+)/.exec(dockerfile)?.[1]);

  it('runs the data stores, mail, monitoring, the secret and CA set-up, the migration and the five services', () => {
    expect(Object.keys(services).sort()).toEqual(
      [...ONE_SHOTS, 'postgres', 'redis', 'mailpit', 'prometheus', 'grafana', ...SERVICES].sort(),
    );
    expect(services.redis?.command.join(' ')).toMatch(/--maxmemory-policy noeviction/);
    expect(services.redis?.command.join(' ')).toMatch(/--appendonly yes/);
    expect(services.postgres?.command).toEqual(['postgres', '-c', 'shared_buffers=512MB']);
  });

  it('every long-running service has a healthcheck, the Countersign ones on their readiness endpoint', () => {
    for (const [name, s] of Object.entries(services)) {
      if (ONE_SHOTS.includes(name)) continue;
      expect(s.healthcheck?.test, `${name} healthcheck`).toBeDefined();
    }
    for (const svc of SERVICES) {
      expect(services[svc]?.command).toEqual([svc]);
      expect(services[svc]?.healthcheck.test.join(' ')).toContain(`:${imagePort}/readyz`);
      expect(services[svc]?.depends_on.migrate.condition).toBe('service_completed_successfully');
    }
  });

  it('gives the notifier fewer CPU shares than the other services, as the local stack does with nice', () => {
    for (const svc of SERVICES) {
      const shares = services[svc]?.cpu_shares;
      if (BACKGROUND_SERVICES.includes(svc)) expect(shares, svc).toBe(256);
      else expect(shares, svc).toBeUndefined();
    }
  });

  it('`--scale issuer=3 --scale notifier=2` needs no edit: no scaled service pins a host port or a container name', () => {
    for (const svc of SERVICES.filter((s) => s !== 'api')) {
      expect(services[svc]?.ports, `${svc} publishes no host port`).toBeUndefined();
      expect(services[svc]?.container_name, `${svc} has no fixed container name`).toBeUndefined();
      expect(services[svc]?.expose).toEqual([String(imagePort)]);
    }
    for (const [name, s] of Object.entries(services)) {
      for (const p of (s.ports ?? []) as string[]) {
        expect(String(p), `${name} binds a range-free host port`).toMatch(/^(127\.0\.0\.1:)?\d+:\d+$/);
      }
    }
  });

  it('Prometheus scrapes every replica of every service on the port the image serves metrics on', () => {
    const prom = parse(read('infra/prometheus/prometheus.yml')) as Doc;
    for (const svc of SERVICES) {
      const job = (prom.scrape_configs as Doc[]).find((j) => j.job_name === `countersign-${svc}`);
      expect(job, `job countersign-${svc}`).toBeDefined();
      expect(job?.dns_sd_configs[0]).toMatchObject({ names: [svc], type: 'A', port: imagePort });
    }
    expect(prom.rule_files).toEqual(['/etc/prometheus/alerts.yml']);
    const mounts = services.prometheus?.volumes as string[];
    expect(mounts).toContain('./infra/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro');
    expect(mounts).toContain('./infra/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro');
  });

  it('Grafana gets the datasource and the dashboard provisioned from files that exist', () => {
    const mounts = services.grafana?.volumes as string[];
    for (const m of mounts.filter((v) => v.startsWith('./'))) {
      expect(existsSync(join(ROOT, m.split(':')[0] ?? '')), m).toBe(true);
    }
    const provider = parse(read('infra/grafana/provisioning/dashboards/countersign.yml')) as Doc;
    const dashboardsMount = mounts.find((m) => m.startsWith('./infra/grafana/dashboards:'))?.split(':')[1];
    expect(provider.providers[0].options.path).toBe(dashboardsMount);
    const ds = parse(read('infra/grafana/provisioning/datasources/prometheus.yml')) as Doc;
    expect(ds.datasources[0]).toMatchObject({ type: 'prometheus', url: 'http://prometheus:9090', uid: 'prometheus' });
  });
});

/**
 * Text that looks like a credential written into a deployment file: a password in a URL, a
 * password-like setting with a value (rather than a _FILE path or a variable), a default for a
 * password in compose interpolation, a password on a command line, a PEM private key, or one of
 * the demo passwords these files used to ship.
 */
function secretLiterals(text: string): string[] {
  const found: string[] = [];
  // Not a literal: a variable ($x, ${x}), an empty string, or a <placeholder> in a comment.
  const literal = (v: string | undefined) =>
    v !== undefined && v !== '' && !/^["']?\$/.test(v) && !/^["']{2}$/.test(v) && !/^<[^>]+>$/.test(v);
  for (const m of text.matchAll(/\b[a-z][a-z0-9+.-]*:\/\/[^\s/:@'"]*:([^\s@'"/]+)@/gi))
    if (literal(m[1])) found.push(m[0]);
  for (const m of text.matchAll(
    /\b((?:[A-Z0-9]+_)*(?:PASSWORD|SECRET|TOKEN|PASSWD)(?:_[A-Z0-9]+)*)\s*(?::(?!-)|=)\s*([^\s#]+)/g,
  ))
    if (!/_FILE$/.test(m[1] ?? '') && literal(m[2]) && !/^\$\(/.test(m[2] ?? '')) found.push(m[0]);
  for (const m of text.matchAll(/\$\{(?:[A-Z0-9]+_)*(?:PASSWORD|SECRET|TOKEN)(?:_[A-Z0-9]+)*:?-[^}]+\}/g))
    found.push(m[0]);
  for (const m of text.matchAll(
    /--[a-z-]*(?:password|secret|token|requirepass|pass)["']?(?:\s*,\s*|[= ]+)["']?([^\s"',]+)/gi,
  ))
    if (literal(m[1])) found.push(m[0]);
  for (const m of text.matchAll(/-----BEGIN [A-Z ]*PRIVATE KEY-----\s*(?:\\n)?[A-Za-z0-9+/=]{16}/g)) found.push(m[0]);
  for (const m of text.matchAll(/postgres:postgres@|\bowner-secret\b|\bapp-secret\b|CHANGE-ME/g)) found.push(m[0]);
  return found;
}

/** Every file a deployment is made of: compose, its overrides, the image, the manifests, the monitoring config. */
function deploymentFiles(): string[] {
  const out = ['docker-compose.yml'];
  const walk = (dir: string) => {
    for (const e of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
      const p = `${dir}/${e.name}`;
      if (e.isDirectory()) walk(p);
      else out.push(p);
    }
  };
  walk('infra');
  return out;
}

const DB_FILE = 'COUNTERSIGN_DATABASE_URL_FILE';
const REDIS_FILE = 'COUNTERSIGN_REDIS_URL_FILE';
const AUDIT = ['COUNTERSIGN_AUDIT_SIGNING_KEY_FILE', 'COUNTERSIGN_AUDIT_SIGNING_KEY_CREATE'];

describe('deployment secrets and exposure (issue 20: the gate guards itself)', () => {
  const compose = parse(read('docker-compose.yml'), { merge: true }) as Doc;
  const services = compose.services as Record<string, Doc>;
  const manifests = loadManifests();
  const workloads = new Map<string, Doc>(
    manifests
      .filter((m) => m.doc.kind === 'Deployment' || m.doc.kind === 'Job')
      .map((m) => [String(m.doc.metadata.name).replace(/^countersign-/, ''), m.doc]),
  );
  workloads.set('migrate', parse(read('infra/k8s/migrate-job.yaml')) as Doc);
  const namedVolumes = (s: Doc | undefined) =>
    ((s?.volumes ?? []) as string[]).filter((v) => !v.startsWith('.')).map((v) => String(v.split(':')[0]));
  const envKeys = (s: Doc | undefined) => Object.keys(s?.environment ?? {}).sort();

  it('the literal check finds what these files used to ship (so it can fail)', () => {
    for (const old of [
      'POSTGRES_PASSWORD: postgres',
      'COUNTERSIGN_DATABASE_URL: postgres://countersign_app:app-secret@postgres:5432/countersign',
      `GF_SECURITY_ADMIN_PASSWORD: ${['$', '{GRAFANA_ADMIN_PASSWORD:-countersign}'].join('')}`,
      'db provision --owner-password owner-secret --app-password app-secret',
      'COUNTERSIGN_REDIS_URL: redis://:CHANGE-ME@redis.example.internal:6379',
      'signing.key: "-----BEGIN PRIVATE KEY-----\\nMC4CAQAwBQYDK2VwBCIEIBd8dbDvPqbQmmz\\n-----END PRIVATE KEY-----\\n"',
      'command: ["redis-server", "--requirepass", "hunter2"]',
    ])
      expect(secretLiterals(old), old).not.toEqual([]);
    for (const fine of [
      'POSTGRES_PASSWORD_FILE: /run/countersign/postgres/password',
      'GF_SECURITY_ADMIN_PASSWORD__FILE: /run/countersign/grafana/admin-password',
      'put "$OUT/app" 1000 database-url "postgres://countersign_app:$app_password@$PG_HOST/$DATABASE"',
      "redis-cli --user healthcheck --pass '' --no-auth-warning ping",
    ])
      expect(secretLiterals(fine), fine).toEqual([]);
  });

  it('no deployment file holds a password, key or other secret', () => {
    const files = deploymentFiles();
    expect(files).toContain('infra/k8s/secrets/kustomization.yaml');
    expect(files).toContain('infra/docker/compose-secrets-init.sh');
    for (const f of files) expect(secretLiterals(read(f)), f).toEqual([]);
    // Every password-like setting in compose is a file path, under a volume that service mounts.
    for (const [name, s] of Object.entries(services)) {
      for (const [key, value] of Object.entries((s.environment ?? {}) as Record<string, string>)) {
        if (!/PASSWORD|SECRET|TOKEN|URL_FILE|KEY_FILE/.test(key)) continue;
        expect(key, `${name}: ${key} is given as a file`).toMatch(/_FILE$/);
        const mounted = ((s.volumes ?? []) as string[]).some((v) => String(value).startsWith(`${v.split(':')[1]}/`));
        expect(mounted, `${name}: ${key}=${value} lies in a mounted volume`).toBe(true);
      }
    }
  });

  it('compose: every service gets only the variables it reads (the image adds no secret path)', () => {
    const expected: Record<string, string[]> = {
      api: [DB_FILE, REDIS_FILE, 'COUNTERSIGN_PUBLIC_URL', ...AUDIT],
      approval: [DB_FILE, REDIS_FILE],
      issuer: [DB_FILE, REDIS_FILE, 'COUNTERSIGN_CA_DIR'],
      notifier: [DB_FILE, REDIS_FILE, 'COUNTERSIGN_SMTP_URL', 'COUNTERSIGN_MAIL_FROM', 'COUNTERSIGN_PUBLIC_URL'],
      reaper: [DB_FILE, REDIS_FILE, ...AUDIT],
      migrate: [
        'COUNTERSIGN_SUPERUSER_DATABASE_URL_FILE',
        'COUNTERSIGN_OWNER_PASSWORD_FILE',
        'COUNTERSIGN_APP_PASSWORD_FILE',
        'COUNTERSIGN_MIGRATION_DATABASE_URL_FILE',
      ],
      postgres: ['POSTGRES_PASSWORD_FILE'],
      'secrets-init': [],
      'ca-init': [],
      redis: [],
      mailpit: [],
      prometheus: [],
      grafana: [
        'GF_SECURITY_ADMIN_PASSWORD__FILE',
        'GF_AUTH_ANONYMOUS_ENABLED',
        'GF_USERS_ALLOW_SIGN_UP',
        'GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH',
      ],
    };
    expect(Object.keys(services).sort()).toEqual(Object.keys(expected).sort());
    for (const [name, keys] of Object.entries(expected))
      expect(envKeys(services[name]), name).toEqual([...keys].sort());
    const known = knownVariables();
    for (const name of [...SERVICES, 'migrate'])
      for (const k of envKeys(services[name])) expect(known.has(k), `${name}: ${k} is read by Countersign`).toBe(true);
    const imageEnv = read('infra/docker/Dockerfile').match(/COUNTERSIGN_[A-Z0-9_]+/g) ?? [];
    expect([...new Set(imageEnv)].sort()).toEqual([
      'COUNTERSIGN_HTTP_HOST',
      'COUNTERSIGN_METRICS_HOST',
      'COUNTERSIGN_METRICS_PORT',
    ]);
  });

  it('compose: each secret volume is mounted by its consumers only, read-only', () => {
    const expected: Record<string, string[]> = {
      'secrets-init': [
        'secrets',
        'postgres-secrets',
        'redis-secrets',
        'migrate-secrets',
        'app-secrets',
        'audit-secrets',
        'grafana-secrets',
      ],
      'ca-init': ['ca-offline', 'issuer-ca'],
      postgres: ['pgdata', 'postgres-secrets'],
      redis: ['redisdata', 'redis-secrets'],
      migrate: ['migrate-secrets'],
      api: ['app-secrets', 'audit-secrets'],
      approval: ['app-secrets'],
      issuer: ['app-secrets', 'issuer-ca'],
      notifier: ['app-secrets'],
      reaper: ['app-secrets', 'audit-secrets'],
      mailpit: [],
      prometheus: ['promdata'],
      grafana: ['grafanadata', 'grafana-secrets'],
    };
    for (const [name, volumes] of Object.entries(expected))
      expect(namedVolumes(services[name]).sort(), name).toEqual([...volumes].sort());
    for (const [name, s] of Object.entries(services)) {
      if (name === 'secrets-init' || name === 'ca-init') continue;
      for (const v of (s.volumes ?? []) as string[])
        if (/secrets|ca/.test(v.split(':')[0] ?? '')) expect(v, `${name} mounts it read-only`).toMatch(/:ro$/);
    }
    // The set-up services need no network: nothing they hold can leave that way.
    expect(services['secrets-init']?.network_mode).toBe('none');
    expect(services['ca-init']?.network_mode).toBe('none');
    expect(services['secrets-init']?.user).toBe('0:0');
  });

  it('compose: no service but the issuer has CA material, and the root key is mounted nowhere', () => {
    for (const [name, s] of Object.entries(services)) {
      const ca = namedVolumes(s).filter((v) => /ca/.test(v));
      if (name === 'issuer') expect(ca).toEqual(['issuer-ca']);
      else if (name === 'ca-init') expect(ca.sort()).toEqual(['ca-offline', 'issuer-ca']);
      else expect(ca, `${name} mounts no CA volume`).toEqual([]);
      if (name !== 'issuer')
        expect(
          envKeys(s).filter((k) => k.includes('_CA_')),
          `${name} is told of no CA`,
        ).toEqual([]);
    }
    // The offline step runs where the root key stays: its volume, mounted by ca-init alone.
    expect(read('infra/docker/compose-ca-init.sh')).toMatch(
      /countersign ca init --out "\$OFFLINE" --issuer-out "\$ISSUER"/,
    );
    expect(services['ca-init']?.volumes).toContain('ca-offline:/var/lib/countersign/ca-offline');
    expect(services.issuer?.environment.COUNTERSIGN_CA_DIR).toBe('/var/lib/countersign/ca');
    expect(services.issuer?.volumes).toContain('issuer-ca:/var/lib/countersign/ca:ro');
  });

  it('compose: no admin UI without a login on the host: Prometheus unpublished and without its lifecycle API', () => {
    const prom = services.prometheus as Doc;
    expect(prom.ports).toBeUndefined();
    expect(prom.command.join(' ')).not.toMatch(/--web\.enable-(lifecycle|admin-api)/);
    const override = parse(read('infra/compose/prometheus-localhost.yml')) as Doc;
    expect(Object.keys(override.services)).toEqual(['prometheus']);
    for (const p of override.services.prometheus.ports as string[]) expect(p).toMatch(/^127\.0\.0\.1:/);
    const grafana = services.grafana as Doc;
    expect(grafana.environment.GF_SECURITY_ADMIN_PASSWORD).toBeUndefined();
    expect(grafana.environment.GF_SECURITY_ADMIN_PASSWORD__FILE).toBe('/run/countersign/grafana/admin-password');
    expect(grafana.environment.GF_AUTH_ANONYMOUS_ENABLED).toBe('false');
    // Published on loopback only: Grafana and mailpit speak plain HTTP, and mailpit has no login at all.
    for (const name of ['grafana', 'mailpit'])
      for (const p of services[name]?.ports as string[]) expect(p, name).toMatch(/^127\.0\.0\.1:/);
    const published = Object.entries(services).filter(([, s]) =>
      ((s.ports ?? []) as string[]).some((p) => !p.startsWith('127.0.0.1:')),
    );
    expect(published.map(([n]) => n)).toEqual(['api']);
    // The queue dashboard is off unless an operator gives the api its token.
    expect(envKeys(services.api).filter((k) => k.includes('QUEUE_DASHBOARD'))).toEqual([]);
  });

  it('Kubernetes: each workload mounts only the Secrets it uses, and names only the secret files it reads', () => {
    const mountsOf: Record<string, string[]> = {
      'countersign-app': ['api', 'approval', 'issuer', 'notifier', 'reaper'],
      'countersign-smtp': ['notifier'],
      'countersign-audit-signing': ['api', 'reaper'],
      'countersign-ca': ['issuer'],
      'countersign-migration': ['migrate'],
    };
    const env: Record<string, string[]> = {
      api: [DB_FILE, REDIS_FILE, ...AUDIT],
      approval: [DB_FILE, REDIS_FILE],
      issuer: [DB_FILE, REDIS_FILE, 'COUNTERSIGN_CA_CERT_FILE', 'COUNTERSIGN_CA_KEY_FILE', 'COUNTERSIGN_CA_CHAIN_FILE'],
      notifier: [DB_FILE, REDIS_FILE, 'COUNTERSIGN_SMTP_URL_FILE'],
      reaper: [DB_FILE, REDIS_FILE, ...AUDIT],
      migrate: ['COUNTERSIGN_MIGRATION_DATABASE_URL_FILE'],
    };
    expect([...workloads.keys()].sort()).toEqual(Object.keys(env).sort());
    const secretsOf = (w: Doc) =>
      ((w.spec.template.spec.volumes ?? []) as Doc[]).filter((v) => v.secret).map((v) => v.secret.secretName);
    for (const [name, w] of workloads) {
      const c = w.spec.template.spec.containers[0] as Doc;
      expect(((c.env ?? []) as Doc[]).map((e) => e.name).sort(), name).toEqual([...(env[name] ?? [])].sort());
      const expected = Object.entries(mountsOf)
        .filter(([, who]) => who.includes(name))
        .map(([secret]) => secret);
      expect(secretsOf(w).sort(), name).toEqual(expected.sort());
      expect(
        ((c.envFrom ?? []) as Doc[]).filter((e) => e.secretRef),
        name,
      ).toEqual([]);
    }
    // Every generated Secret is used (KEDA's by the TriggerAuthentication).
    const used = new Set([...Object.keys(mountsOf), 'countersign-keda-redis']);
    for (const doc of generatedSecrets()) expect(used.has(doc.metadata.name), doc.metadata.name).toBe(true);
  });

  it('Kubernetes: the root key is in no Secret and on no pod; the issuer gets the intermediate only', () => {
    const k = parse(read(SECRETS_KUSTOMIZATION)) as Doc;
    for (const g of k.secretGenerator as Doc[])
      for (const f of [...(g.files ?? []), ...(g.envs ?? [])] as string[]) expect(f).not.toMatch(/root[._-]?key/i);
    for (const doc of generatedSecrets()) for (const key of secretKeys(doc)) expect(key).not.toMatch(/root/i);
    for (const f of deploymentFiles().filter((p) => p.startsWith('infra/k8s/')))
      expect(read(f).replace(/^\s*#.*$/gm, ''), f).not.toMatch(/root\.key/);
    const c = workloads.get('issuer')?.spec.template.spec.containers[0] as Doc;
    expect(c.env.find((e: Doc) => e.name === 'COUNTERSIGN_CA_DIR')).toBeUndefined();
  });

  const kubectl = (() => {
    try {
      execFileSync('kubectl', ['version', '--client'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();

  it.skipIf(!kubectl)('kubectl kustomize builds the whole install only once every secret file is there', () => {
    const dir = mkdtempSync(join(tmpdir(), 'countersign-k8s-'));
    try {
      execFileSync('cp', ['-r', join(ROOT, 'infra/k8s'), join(dir, 'k8s')]);
      const build = () =>
        execFileSync('kubectl', ['kustomize', join(dir, 'k8s')], {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'pipe'],
        });
      expect(build).toThrow(/database-url/);
      const secrets = join(dir, 'k8s', 'secrets');
      mkdirSync(join(secrets, 'issuer-ca'));
      const k = parse(read(SECRETS_KUSTOMIZATION)) as Doc;
      for (const g of k.secretGenerator as Doc[]) {
        for (const f of (g.files ?? []) as string[]) writeFileSync(join(secrets, f.split('=').pop() ?? f), 'x\n');
        for (const e of (g.envs ?? []) as string[])
          writeFileSync(join(secrets, e), read(`infra/k8s/secrets/${e}.example`));
      }
      const docs = parseAllDocuments(build()).map((d) => d.toJS() as Doc);
      const built = docs.filter((d) => d.kind === 'Secret');
      expect(built.map((d) => d.metadata.name).sort()).toEqual(
        generatedSecrets()
          .map((d) => d.metadata.name)
          .sort(),
      );
      for (const b of built) {
        expect(b.metadata.namespace).toBe('countersign');
        expect(Object.keys(b.data).sort()).toEqual(
          secretKeys(generatedSecrets().find((g) => g.metadata.name === b.metadata.name)).sort(),
        );
      }
      expect(docs.filter((d) => d.kind === 'Deployment')).toHaveLength(SERVICES.length);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('Prometheus alert rules (infra/prometheus/alerts.yml)', () => {
  const rules = (parse(read('infra/prometheus/alerts.yml')) as Doc).groups.flatMap((g: Doc) => g.rules) as Doc[];
  const metrics = exportedMetrics();
  const runbook = existsSync(join(ROOT, 'docs/alerts.md')) ? read('docs/alerts.md') : '';

  it('has the alerts the operators were promised', () => {
    const names = rules.map((r) => r.alert);
    for (const required of [
      'CountersignApprovalPendingAgeP99High',
      'CountersignApprovalsAboutToExpire',
      'CountersignOutboxLag',
      'CountersignIssuanceFailures',
      'CountersignAuditChainBroken',
      'CountersignQueueBacklogGrowing',
      'CountersignServiceDown',
    ])
      expect(names).toContain(required);
  });

  it('every rule has a severity, a summary and a runbook section that exists', () => {
    for (const r of rules) {
      expect(['page', 'ticket', 'info'], r.alert).toContain(r.labels?.severity);
      expect(r.annotations?.summary, r.alert).toBeTruthy();
      const anchor = String(r.annotations?.runbook_url).split('#')[1];
      expect(anchor, r.alert).toBe(String(r.alert).toLowerCase());
      expect(runbook, `docs/alerts.md has a "## ${r.alert}" section`).toContain(`## ${r.alert}\n`);
    }
  });

  it('uses only metrics the services export, with their real types', () => {
    for (const r of rules) {
      for (const [name] of String(r.expr).matchAll(/countersign_[a-z_]+/g)) {
        expect(metrics.has(name), `${r.alert}: ${name}`).toBe(true);
        if (/rate\(|increase\(/.test(r.expr) && String(r.expr).includes(`${name}[`)) {
          expect(['counter', 'histogram'], `${r.alert}: rate() of ${name}`).toContain(metrics.get(name));
        }
      }
    }
  });

  const promtool = (() => {
    try {
      execFileSync('promtool', ['--version'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();

  it.skipIf(!promtool)('promtool: the rules check, their unit tests pass, and the compose config loads', () => {
    execFileSync('promtool', ['check', 'rules', join(ROOT, 'infra/prometheus/alerts.yml')], { stdio: 'pipe' });
    execFileSync('promtool', ['test', 'rules', 'alerts.test.yml'], {
      cwd: join(ROOT, 'infra/prometheus'),
      stdio: 'pipe',
    });
    // The config names the rule file by its path inside the container; check it against the repo's copy.
    const dir = mkdtempSync(join(tmpdir(), 'countersign-prom-'));
    try {
      writeFileSync(join(dir, 'alerts.yml'), read('infra/prometheus/alerts.yml'));
      writeFileSync(
        join(dir, 'prometheus.yml'),
        read('infra/prometheus/prometheus.yml').replace('/etc/prometheus/alerts.yml', join(dir, 'alerts.yml')),
      );
      execFileSync('promtool', ['check', 'config', join(dir, 'prometheus.yml')], { stdio: 'pipe' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('Grafana dashboard (infra/grafana/dashboards/countersign.json)', () => {
  const dash = JSON.parse(read('infra/grafana/dashboards/countersign.json')) as Doc;
  const metrics = exportedMetrics();

  it('covers the approval queue, decisions, issuance latency and queue depths with metrics that exist', () => {
    expect(dash.uid).toBe('countersign-overview');
    const panels = dash.panels as Doc[];
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const exprs = panels.flatMap((p) => ((p.targets ?? []) as Doc[]).map((t) => String(t.expr)));
    for (const e of exprs)
      for (const [name] of e.matchAll(/countersign_[a-z_]+/g)) expect(metrics.has(name), `${e}: ${name}`).toBe(true);
    const all = exprs.join('\n');
    for (const needed of [
      'countersign_approvals_pending',
      'countersign_approval_decisions_total',
      'countersign_issuance_seconds_bucket',
      'countersign_queue_jobs',
      'countersign_approval_pending_age_seconds_bucket',
      'countersign_outbox_lag_seconds',
      'countersign_audit_chain_ok',
    ])
      expect(all).toContain(needed);
    for (const p of panels.filter((x) => x.type !== 'row'))
      expect(p.datasource?.uid, p.title).toBe(GRAFANA_DATASOURCE_VARIABLE);
  });
});
