import { createRegistry, metricFactories } from '@countersign/observability';
import { describe, expect, it } from 'vitest';
import { parsePrometheusText, Scrape } from '../e2e/prometheus-text.ts';

/** The strict text-format parser the metrics e2e test relies on: it reads prom-client's real output and refuses bad pages. */
describe('Prometheus text parser', () => {
  it('reads what prom-client writes: counters, gauges and histograms with their labels', async () => {
    const registry = createRegistry('api');
    metricFactories.decisions(registry).inc({ outcome: 'approved', profile_id: 'p"1\\x' }, 2);
    const age = metricFactories.pendingAge(registry);
    age.observe({ profile_id: 'p1' }, 30);
    age.observe({ profile_id: 'p1' }, 4000);
    metricFactories.outboxLag(registry).set(1.5);
    const s = new Scrape('api', await registry.metrics());
    expect(s.value('countersign_approval_decisions_total', { outcome: 'approved', profile_id: 'p"1\\x' })).toBe(2);
    expect(s.value('countersign_outbox_lag_seconds')).toBe(1.5);
    expect(s.family('countersign_approval_pending_age_seconds').type).toBe('histogram');
    expect(s.histogram('countersign_approval_pending_age_seconds', { profile_id: 'p1', service: 'api' })).toEqual({
      labels: { service: 'api', profile_id: 'p1' },
      buckets: { '60': 1, '300': 1, '1800': 1, '3600': 1, '21600': 2, '86400': 2, '+Inf': 2 },
      count: 2,
      sum: 4030,
    });
    expect(s.has('process_cpu_user_seconds_total')).toBe(true);
  });

  it('refuses malformed pages instead of reading half of them', () => {
    const bad: [string, RegExp][] = [
      ['x_total 1\n', /before any # TYPE/],
      ['# TYPE x counter\nx{a="1" 1\n', /malformed/],
      ['# TYPE x counter\nx{a="1"} one\n', /malformed/],
      ['# TYPE x counter\nx{a="1"} 1\nx{a="1"} 2\n', /duplicate/],
      ['# TYPE x counter\ny 1\n', /outside family/],
      ['# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n', /cumulative/],
      ['# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n', /\+Inf/],
      ['# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3\n', /differs from _count/],
    ];
    for (const [text, why] of bad) expect(() => parsePrometheusText('t', text), text).toThrow(why);
  });
});
