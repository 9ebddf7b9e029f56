import { generateKeyAndCsr } from '@countersign/ca/csr-generate';
import { NOTIFICATION_KINDS, QUEUE_NAMES } from '@countersign/queues';
import type { Stack } from '@countersign/stack';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiCall, startE2eStack } from './e2e-stack.ts';
import { type Scrape, scrape } from './prometheus-text.ts';

/**
 * SPEC §7 on the running system: the five services as processes, a real
 * request-approve-issue cycle, a rejection, a void, a bypassed request and a
 * real expiry (COUNTERSIGN_APPROVAL_TIMEOUT=3s, reaper expiring every second),
 * then every service's /metrics is scraped and parsed as Prometheus text.
 * Each metric must be on the service that owns the event, with the right
 * labels and values, and absent from every other service, so no number is
 * ever counted twice.
 */
const SERVICES = ['api', 'approval', 'issuer', 'notifier', 'reaper'] as const;
type ServiceName = (typeof SERVICES)[number];

/** Which service exports each metric family (the decision counter is split by outcome below). */
const OWNERS: Record<string, ServiceName[]> = {
  countersign_approval_decisions_total: ['api', 'approval', 'reaper'],
  countersign_approval_pending_age_seconds: ['api', 'reaper', 'approval'],
  countersign_approvals_pending: ['reaper'],
  countersign_certificates_issued_total: ['issuer'],
  countersign_issuance_seconds: ['issuer'],
  countersign_notifications_total: ['notifier'],
  countersign_queue_jobs: ['reaper'],
  countersign_outbox_lag_seconds: ['approval'],
  countersign_outbox_relay_batches_total: ['approval'],
  countersign_outbox_dead_letters_total: ['approval'],
  countersign_http_request_duration_seconds: ['api'],
  countersign_org_two_person_ready: ['reaper'],
};
const OUTCOME_OWNER: Record<string, ServiceName> = {
  approved: 'api',
  rejected: 'api',
  voided: 'api',
  expired: 'reaper',
  bypassed: 'approval',
};
const PENDING_AGE_BUCKETS = ['60', '300', '1800', '3600', '21600', '86400', '+Inf'];

let stack: Stack & { dataDir: string; cleanup(): Promise<void> };

beforeAll(async () => {
  stack = await startE2eStack({
    env: {
      COUNTERSIGN_APPROVAL_TIMEOUT: '3s',
      COUNTERSIGN_REAPER_EXPIRE_INTERVAL: '1s',
      COUNTERSIGN_REAPER_GAUGE_INTERVAL: '1s',
      COUNTERSIGN_APPROVAL_BYPASS: 'true',
    },
  });
});
afterAll(async () => stack?.cleanup());

const api = (key: string, method: string, path: string, body?: unknown) =>
  apiCall(stack.apiUrl, key, method, path, body);

async function until<T>(
  what: string,
  probe: () => Promise<T | undefined | null | false>,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const urlOf = (name: ServiceName) => {
  const p = stack.services.find((s) => s.name === name);
  if (!p) throw new Error(`no ${name} process`);
  return stack.metricsUrl(p);
};
const scrapeAll = async () =>
  Object.fromEntries(await Promise.all(SERVICES.map(async (s) => [s, await scrape(s, urlOf(s))] as const))) as Record<
    ServiceName,
    Scrape
  >;

describe('SPEC §7 metrics, scraped from the five running services', () => {
  let m: Record<ServiceName, Scrape>;
  let production = '';
  let staging = '';
  let pendingSeenWhileWaiting: number | undefined;

  beforeAll(async () => {
    const demo = stack.demo;
    if (!demo) throw new Error('no demo org');
    const { admin, alice, bob, carol } = demo.principals;
    production = demo.profiles.production;
    const request = async (cn: string, profile: string) => {
      const { csrPem } = await generateKeyAndCsr({ commonName: cn, dnsNames: [cn] });
      const r = await api(carol.key, 'POST', '/api/v1/certificates', {
        profile_id: profile,
        common_name: cn,
        csr: csrPem,
        justification: 'metrics e2e',
      });
      expect(r.status, JSON.stringify(r.body)).toBe(202);
      return r.body as { certificate: { id: string }; approval: { id: string } | null };
    };
    const waitForPem = (certId: string) =>
      until(
        `PEM of ${certId}`,
        async () => (await api(carol.key, 'GET', `/api/v1/certificates/${certId}/pem`)).status === 200,
      );

    // 1. Request, approve, issue.
    const a = await request(`approved.${demo.domain}`, production);
    expect((await api(alice.key, 'POST', `/api/v1/approvals/${a.approval?.id}/approve`, { note: 'ok' })).status).toBe(
      200,
    );
    await waitForPem(a.certificate.id);
    // 2. Reject, 3. void.
    const r = await request(`rejected.${demo.domain}`, production);
    expect((await api(bob.key, 'POST', `/api/v1/approvals/${r.approval?.id}/reject`, { note: 'no' })).status).toBe(200);
    const v = await request(`voided.${demo.domain}`, production);
    expect((await api(admin.key, 'POST', `/api/v1/approvals/${v.approval?.id}/void`, { reason: 'test' })).status).toBe(
      200,
    );
    // 4. A gated profile that allows the bypass, under COUNTERSIGN_APPROVAL_BYPASS: auto-approved by the approval
    //    service, then issued.
    staging = demo.profiles.staging;
    const b = await request(`bypassed.${demo.domain}`, staging);
    await waitForPem(b.certificate.id);
    // 5. Nobody decides: the reaper expires it after 3 s. Meanwhile its pending gauge shows it.
    const e = await request(`expired.${demo.domain}`, production);
    pendingSeenWhileWaiting = await until('the pending gauge to count the waiting request', async () => {
      const s = await scrape('reaper', urlOf('reaper'));
      return (
        s.has('countersign_approvals_pending') && s.value('countersign_approvals_pending', { profile_id: production })
      );
    });
    await until('the expiry', async () => {
      const res = await api(alice.key, 'GET', `/api/v1/approvals/${e.approval?.id}`);
      return res.body.state === 'expired';
    });
    // An unauthenticated call, for the HTTP metric's status label.
    expect((await fetch(`${stack.apiUrl}/api/v1/approvals`)).status).toBe(401);

    // Gauges refresh every second and the last mail goes out asynchronously: wait until both settled.
    m = await until('settled metrics', async () => {
      const all = await scrapeAll();
      const pending = all.reaper.has('countersign_approvals_pending')
        ? all.reaper.value('countersign_approvals_pending', { profile_id: production })
        : undefined;
      const issuedDone =
        all.reaper.has('countersign_queue_jobs') &&
        (all.reaper.value('countersign_queue_jobs', { queue: 'issuance', state: 'completed' }) ?? 0) >= 2;
      return pending === 0 && issuedDone && all.notifier.has('countersign_notifications_total') ? all : undefined;
    });
  });

  it('decisions are counted once, by outcome and profile, on the service where they happen', () => {
    const expected: [string, string, number][] = [
      ['approved', production, 1],
      ['rejected', production, 1],
      ['voided', production, 1],
      ['expired', production, 1],
      ['bypassed', staging, 1],
    ];
    for (const [outcome, profile, n] of expected) {
      const owner = OUTCOME_OWNER[outcome] as ServiceName;
      expect(
        m[owner].value('countersign_approval_decisions_total', { outcome, profile_id: profile }),
        `${outcome} on ${owner}`,
      ).toBe(n);
      for (const other of SERVICES.filter((s) => s !== owner)) {
        if (!m[other].has('countersign_approval_decisions_total')) continue;
        expect(
          m[other].value('countersign_approval_decisions_total', { outcome }),
          `${outcome} not on ${other}`,
        ).toBeUndefined();
      }
    }
    // Nothing else: every series is one of the decisions above.
    const all = SERVICES.flatMap((s) =>
      m[s].has('countersign_approval_decisions_total')
        ? m[s].family('countersign_approval_decisions_total').samples
        : [],
    );
    expect(all.reduce((n, s) => n + s.value, 0)).toBe(5);
    expect(m.api.family('countersign_approval_decisions_total').type).toBe('counter');
  });

  it('pending age is a histogram with the SPEC buckets, observed at each decision where it happens', () => {
    const atApi = m.api.histogram('countersign_approval_pending_age_seconds', { profile_id: production });
    expect(Object.keys(atApi?.buckets ?? {})).toEqual(PENDING_AGE_BUCKETS);
    expect(atApi?.count).toBe(3); // approved, rejected, voided
    expect(atApi?.buckets['60']).toBe(3); // each decided within seconds
    const atReaper = m.reaper.histogram('countersign_approval_pending_age_seconds', { profile_id: production });
    expect(Object.keys(atReaper?.buckets ?? {})).toEqual(PENDING_AGE_BUCKETS);
    expect(atReaper?.count).toBe(1); // the expiry
    expect(atReaper?.sum).toBeGreaterThanOrEqual(3); // it waited out the 3 s timeout
    expect(m.api.family('countersign_approval_pending_age_seconds').type).toBe('histogram');
    // The bypassed staging request is observed where the bypass happens, in the approval relay.
    const bypassed = m.approval.family('countersign_approval_pending_age_seconds').histograms;
    expect(bypassed.reduce((n, h) => n + h.count, 0)).toBe(1);
  });

  it('the pending gauge per profile counted the waiting request and dropped to 0 once it expired', () => {
    expect(pendingSeenWhileWaiting).toBe(1);
    expect(m.reaper.value('countersign_approvals_pending', { profile_id: production })).toBe(0);
    expect(m.reaper.family('countersign_approvals_pending').type).toBe('gauge');
  });

  it('issued certificates and issuance time are counted by the issuer', () => {
    expect(m.issuer.value('countersign_certificates_issued_total', { profile_id: production, issuer: 'local' })).toBe(
      1,
    );
    expect(m.issuer.value('countersign_certificates_issued_total', { profile_id: staging, issuer: 'local' })).toBe(1);
    const h = m.issuer.histogram('countersign_issuance_seconds');
    expect(h?.count).toBe(2);
    expect(h?.sum).toBeGreaterThan(0);
    expect(h?.sum).toBeLessThan(30);
  });

  it('queue depth is exported per queue and state', () => {
    const series = m.reaper.family('countersign_queue_jobs').samples;
    expect(new Set(series.map((s) => s.labels.queue))).toEqual(new Set(Object.values(QUEUE_NAMES)));
    for (const s of series) expect(Object.keys(s.labels).sort()).toEqual(['queue', 'service', 'state']);
    expect(m.reaper.value('countersign_queue_jobs', { queue: 'issuance', state: 'completed' })).toBeGreaterThanOrEqual(
      2,
    );
    expect(m.reaper.value('countersign_queue_jobs', { queue: 'issuance', state: 'failed' })).toBe(0);
  });

  it('outbox lag is exported by the approval relay and stays small', () => {
    const lag = m.approval.value('countersign_outbox_lag_seconds');
    expect(lag).toBeGreaterThanOrEqual(0);
    expect(lag).toBeLessThan(10);
  });

  it('notifications are counted by kind and outcome; mail went to the SMTP sink', () => {
    const samples = m.notifier.family('countersign_notifications_total').samples;
    for (const s of samples) {
      expect(NOTIFICATION_KINDS).toContain(s.labels.kind);
      expect(['sent', 'skipped', 'failed', 'retried']).toContain(s.labels.outcome);
    }
    expect(
      m.notifier.value('countersign_notifications_total', { kind: 'approval_submitted', outcome: 'sent' }),
    ).toBeGreaterThanOrEqual(1);
    expect(
      m.notifier.value('countersign_notifications_total', { outcome: 'failed', kind: 'approval_submitted' }) ?? 0,
    ).toBe(0);
  });

  it('the audit chain status is 1 on the api after its start-up verification', () => {
    expect(m.api.value('countersign_audit_chain_ok')).toBe(1);
  });

  it('HTTP request duration by method, route template and status on the api', () => {
    const h = (labels: Record<string, string>) =>
      m.api
        .family('countersign_http_request_duration_seconds')
        .histograms.filter((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v));
    const created = h({ method: 'POST', route: '/api/v1/certificates', status: '202' });
    expect(created.reduce((n, s) => n + s.count, 0)).toBe(5);
    expect(h({ method: 'POST', route: '/api/v1/approvals/:id/approve', status: '200' })[0]?.count).toBe(1);
    expect(h({ method: 'GET', route: '/api/v1/approvals', status: '401' })[0]?.count).toBe(1);
    // Route labels are templates: ids never make new series.
    for (const s of m.api.family('countersign_http_request_duration_seconds').histograms)
      expect(s.labels.route).not.toMatch(/[0-9a-f]{8}-[0-9a-f]{4}/);
  });

  it('says the demo org is not yet two-person ready (it has one admin here)', () => {
    expect(m.reaper.value('countersign_org_two_person_ready', { org_id: stack.demo?.org_id ?? '' })).toBe(0);
  });

  it('each metric lives only on the services that own its events', () => {
    for (const [name, owners] of Object.entries(OWNERS)) {
      for (const s of SERVICES) expect(m[s].has(name), `${name} on ${s}`).toBe(owners.includes(s));
    }
  });

  it('every service exports process metrics, and every sample names its service', () => {
    for (const s of SERVICES) {
      for (const name of [
        'process_cpu_user_seconds_total',
        'process_resident_memory_bytes',
        'nodejs_eventloop_lag_p99_seconds',
      ])
        expect(m[s].has(name), `${name} on ${s}`).toBe(true);
      for (const f of m[s].families.values()) {
        for (const x of [...f.samples, ...f.histograms]) expect(x.labels.service, `${f.name} on ${s}`).toBe(s);
      }
    }
  });
});
