import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
  return out;
}

/** Every COUNTERSIGN_ variable some service or package actually reads (config loader and direct reads). */
function knownVariables(): Set<string> {
  const names = new Set<string>();
  const config = read('packages/config/src/index.ts');
  for (const m of config.matchAll(/\(\s*env,\s*'([A-Z0-9_]+)'/g)) names.add(`COUNTERSIGN_${m[1]}`);
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
    expect([...k.resources].sort()).toEqual(files.filter((f) => f !== 'migrate-job.yaml').sort());
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
        if (ref.secretRef) expect(find('Secret', ref.secretRef.name), ref.secretRef.name).toBeDefined();
      }
      const volumes = new Map((pod.volumes as Doc[]).map((v) => [v.name, v]));
      for (const m of c.volumeMounts as Doc[]) {
        const v = volumes.get(m.name);
        expect(v, `volume ${m.name}`).toBeDefined();
        if (v?.secret) expect(find('Secret', v.secret.secretName), v.secret.secretName).toBeDefined();
      }
      // Files the container is told to read must be mounted.
      for (const e of (c.env ?? []) as Doc[]) {
        if (!String(e.name).endsWith('_FILE')) continue;
        expect(
          (c.volumeMounts as Doc[]).some((m) => String(e.value).startsWith(`${m.mountPath}/`)),
          `${e.name}=${e.value} is mounted`,
        ).toBe(true);
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
    expect(Object.keys(ca?.stringData ?? {}).sort()).toEqual(['chain.crt', 'tls.crt', 'tls.key']);
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
    ];
    for (const k of keys) expect(known.has(k), `${k} is read by Countersign`).toBe(true);
    for (const k of Object.keys(config?.data ?? {})) expect(k).not.toMatch(/DATABASE_URL|REDIS_URL|SMTP_URL|PASSWORD/);
    const secrets = find('Secret', 'countersign-secrets');
    expect(Object.keys(secrets?.stringData ?? {})).toEqual(
      expect.arrayContaining(['COUNTERSIGN_DATABASE_URL', 'COUNTERSIGN_REDIS_URL']),
    );
  });

  it('the migration Job runs `countersign db migrate` as the owner role', () => {
    const job = find('Job', 'countersign-migrate');
    const c = job?.spec.template.spec.containers[0] as Doc;
    expect(c.args).toEqual(['countersign', 'db', 'migrate']);
    expect(job?.spec.template.spec.restartPolicy).toBe('Never');
    const secretName = (c.envFrom as Doc[]).find((e) => e.secretRef)?.secretRef.name;
    expect(Object.keys(find('Secret', secretName)?.stringData ?? {})).toContain('COUNTERSIGN_MIGRATION_DATABASE_URL');
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
        expect(Object.keys(find('Secret', ref.name)?.stringData ?? {})).toContain(ref.key);
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

describe('docker compose (docker-compose.yml)', () => {
  const compose = parse(read('docker-compose.yml'), { merge: true }) as Doc;
  const services = compose.services as Record<string, Doc>;
  const dockerfile = read('infra/docker/Dockerfile');
  const imagePort = Number(/COUNTERSIGN_METRICS_PORT=(\d+)/.exec(dockerfile)?.[1]);

  it('runs the data stores, mail, monitoring, the migration and the five services', () => {
    expect(Object.keys(services).sort()).toEqual(
      ['postgres', 'redis', 'mailpit', 'migrate', 'prometheus', 'grafana', ...SERVICES].sort(),
    );
    expect(services.redis?.command.join(' ')).toMatch(/--maxmemory-policy noeviction/);
    expect(services.redis?.command.join(' ')).toMatch(/--appendonly yes/);
    expect(services.postgres?.command).toEqual(['postgres', '-c', 'shared_buffers=512MB']);
  });

  it('every long-running service has a healthcheck, the Countersign ones on their readiness endpoint', () => {
    for (const [name, s] of Object.entries(services)) {
      if (name === 'migrate') continue;
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
        expect(String(p), `${name} binds a range-free host port`).toMatch(/^\d+:\d+$/);
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
