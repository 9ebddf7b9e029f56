/**
 * A strict parser of the Prometheus text exposition format (version 0.0.4),
 * for asserting what the services really serve on /metrics. Strict means a
 * malformed page fails the test instead of being half read: every sample
 * must follow its family's `# TYPE`, names and label sets must be well formed
 * (escapes `\\`, `\"`, `\n`), values must be floats (`+Inf`, `-Inf`, `NaN`
 * in any case, as Prometheus reads them), a series may appear once, and a histogram must have cumulative
 * buckets ending in `+Inf` equal to its `_count`.
 *
 * (The npm package parse-prometheus-text-format was tried first: it drops the
 * labels, `_sum` and `_count` of histograms whose `le` label comes first, as
 * prom-client writes them, so it cannot check SPEC §7.)
 */
export interface Sample {
  readonly labels: Record<string, string>;
  readonly value: number;
}

export interface HistogramSample {
  readonly labels: Record<string, string>;
  /** Upper bound (as written, e.g. "60", "+Inf") to cumulative count, in exposition order. */
  readonly buckets: Record<string, number>;
  readonly count: number;
  readonly sum: number;
}

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

export interface Family {
  readonly name: string;
  readonly help: string;
  readonly type: MetricType;
  /** Counter, gauge and untyped samples (summary quantiles too). */
  readonly samples: Sample[];
  readonly histograms: HistogramSample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES: readonly MetricType[] = ['counter', 'gauge', 'histogram', 'summary', 'untyped'];

class ParseError extends Error {
  constructor(service: string, line: number, text: string, why: string) {
    super(`${service} /metrics line ${line}: ${why}: ${text}`);
  }
}

/** Floats as Prometheus reads them (Go's ParseFloat: Inf and NaN in any case; prom-client writes "Nan"). */
function parseValue(v: string): number | null {
  const lower = v.toLowerCase();
  if (lower === '+inf' || lower === 'inf') return Number.POSITIVE_INFINITY;
  if (lower === '-inf') return Number.NEGATIVE_INFINITY;
  if (lower === 'nan') return Number.NaN;
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(v)) return null;
  return Number(v);
}

/** Parses `name{a="x",b="y"} value [timestamp]`; returns null when the line is malformed. */
function parseSample(line: string): { name: string; labels: Record<string, string>; value: number } | null {
  const brace = line.indexOf('{');
  const space = line.indexOf(' ');
  let name: string;
  let rest: string;
  const labels: Record<string, string> = {};
  if (brace !== -1 && (space === -1 || brace < space)) {
    name = line.slice(0, brace);
    let i = brace + 1;
    for (;;) {
      if (line[i] === '}') break;
      const eq = line.indexOf('=', i);
      if (eq === -1) return null;
      const label = line.slice(i, eq);
      if (!LABEL.test(label) || label in labels || line[eq + 1] !== '"') return null;
      let value = '';
      let j = eq + 2;
      for (; j < line.length && line[j] !== '"'; j++) {
        if (line[j] === '\\') {
          const next = line[++j];
          if (next === 'n') value += '\n';
          else if (next === '\\' || next === '"') value += next;
          else return null;
        } else value += line[j];
      }
      if (j >= line.length) return null;
      labels[label] = value;
      i = j + 1;
      if (line[i] === ',') i++;
      else if (line[i] !== '}') return null;
    }
    rest = line.slice(i + 1);
  } else {
    if (space === -1) return null;
    name = line.slice(0, space);
    rest = line.slice(space);
  }
  if (!NAME.test(name)) return null;
  const parts = rest.trim().split(/\s+/);
  if (parts.length < 1 || parts.length > 2 || !parts[0]) return null;
  if (parts[1] !== undefined && !/^-?\d+$/.test(parts[1])) return null;
  const value = parseValue(parts[0]);
  return value === null ? null : { name, labels, value };
}

const withoutLe = (labels: Record<string, string>) =>
  Object.fromEntries(Object.entries(labels).filter(([k]) => k !== 'le'));
const seriesKey = (labels: Record<string, string>) =>
  JSON.stringify(Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)));

export function parsePrometheusText(service: string, text: string): Map<string, Family> {
  const families = new Map<string, Family & { help: string; seen: Set<string> }>();
  const helps = new Map<string, string>();
  const histo = new Map<
    string,
    Map<string, { labels: Record<string, string>; buckets: [string, number][]; count?: number; sum?: number }>
  >();
  let current: (Family & { seen: Set<string> }) | null = null;

  text.split('\n').forEach((line, index) => {
    const n = index + 1;
    if (line === '') return;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+)(?: (.*))?$/.exec(line);
      if (!m) return; // other comments are allowed
      const [, kind, name = '', arg = ''] = m;
      if (!NAME.test(name)) throw new ParseError(service, n, line, 'bad metric name');
      if (kind === 'HELP') {
        helps.set(name, arg);
        return;
      }
      if (!TYPES.includes(arg as MetricType)) throw new ParseError(service, n, line, 'unknown type');
      if (families.has(name)) throw new ParseError(service, n, line, 'family declared twice');
      current = {
        name,
        help: helps.get(name) ?? '',
        type: arg as MetricType,
        samples: [],
        histograms: [],
        seen: new Set(),
      };
      families.set(name, current);
      if (arg === 'histogram') histo.set(name, new Map());
      return;
    }
    const s = parseSample(line);
    if (!s) throw new ParseError(service, n, line, 'malformed sample');
    const fam = current as (Family & { seen: Set<string> }) | null;
    if (!fam) throw new ParseError(service, n, line, 'sample before any # TYPE');
    const suffix = s.name.slice(fam.name.length);
    if (!s.name.startsWith(fam.name)) throw new ParseError(service, n, line, `sample outside family ${fam.name}`);
    const key = `${s.name}${seriesKey(s.labels)}`;
    if (fam.seen.has(key)) throw new ParseError(service, n, line, 'duplicate series');
    fam.seen.add(key);
    if (fam.type === 'histogram') {
      if (!['_bucket', '_sum', '_count'].includes(suffix))
        throw new ParseError(service, n, line, 'histogram sample without _bucket/_sum/_count');
      const base = withoutLe(s.labels);
      const series = histo.get(fam.name) as Map<
        string,
        { labels: Record<string, string>; buckets: [string, number][]; count?: number; sum?: number }
      >;
      const k = seriesKey(base);
      const h = series.get(k) ?? { labels: base, buckets: [] };
      series.set(k, h);
      if (suffix === '_bucket') {
        const le = s.labels.le;
        if (le === undefined || parseValue(le) === null)
          throw new ParseError(service, n, line, 'bucket without a valid le');
        h.buckets.push([le, s.value]);
      } else if (suffix === '_sum') h.sum = s.value;
      else h.count = s.value;
    } else {
      const allowed = fam.type === 'summary' ? ['', '_sum', '_count'] : [''];
      if (!allowed.includes(suffix))
        throw new ParseError(service, n, line, `unexpected sample for ${fam.type} ${fam.name}`);
      fam.samples.push({ labels: s.labels, value: s.value });
    }
  });

  for (const [name, series] of histo) {
    const fam = families.get(name);
    if (!fam) continue;
    for (const h of series.values()) {
      const bounds = h.buckets.map(([le]) => parseValue(le) as number);
      const counts = h.buckets.map(([, c]) => c);
      const where = `${service} /metrics: histogram ${name}${JSON.stringify(h.labels)}`;
      if (h.count === undefined || h.sum === undefined) throw new Error(`${where} lacks _count or _sum`);
      if (h.buckets.at(-1)?.[0] !== '+Inf') throw new Error(`${where} does not end with le="+Inf"`);
      for (let i = 1; i < bounds.length; i++) {
        if ((bounds[i] as number) <= (bounds[i - 1] as number))
          throw new Error(`${where}: bucket bounds not increasing`);
        if ((counts[i] as number) < (counts[i - 1] as number)) throw new Error(`${where}: buckets not cumulative`);
      }
      if (counts.at(-1) !== h.count) throw new Error(`${where}: +Inf bucket differs from _count`);
      fam.histograms.push({ labels: h.labels, buckets: Object.fromEntries(h.buckets), count: h.count, sum: h.sum });
    }
  }
  return new Map(
    [...families].map(([k, f]) => [
      k,
      { name: f.name, help: f.help, type: f.type, samples: f.samples, histograms: f.histograms },
    ]),
  );
}

export class Scrape {
  readonly families: Map<string, Family>;

  constructor(
    readonly service: string,
    readonly text: string,
  ) {
    this.families = parsePrometheusText(service, text);
  }

  has(name: string): boolean {
    return this.families.has(name);
  }

  family(name: string): Family {
    const f = this.families.get(name);
    if (!f) throw new Error(`${this.service}: no metric ${name}`);
    return f;
  }

  /** The one sample whose labels include `labels`; undefined when none matches. */
  value(name: string, labels: Record<string, string> = {}): number | undefined {
    const matches = this.family(name).samples.filter((s) => includes(s.labels, labels));
    if (matches.length > 1)
      throw new Error(`${this.service}: ${name} ${JSON.stringify(labels)} matches ${matches.length} series`);
    return matches[0]?.value;
  }

  histogram(name: string, labels: Record<string, string> = {}): HistogramSample | undefined {
    const matches = this.family(name).histograms.filter((s) => includes(s.labels, labels));
    if (matches.length > 1)
      throw new Error(`${this.service}: ${name} ${JSON.stringify(labels)} matches ${matches.length} series`);
    return matches[0];
  }
}

const includes = (all: Record<string, string>, some: Record<string, string>) =>
  Object.entries(some).every(([k, v]) => all[k] === v);

export async function scrape(service: string, baseUrl: string): Promise<Scrape> {
  const res = await fetch(`${baseUrl}/metrics`);
  if (!res.ok) throw new Error(`${service}: /metrics answered ${res.status}`);
  const type = res.headers.get('content-type') ?? '';
  if (!type.startsWith('text/plain')) throw new Error(`${service}: /metrics content-type ${type}`);
  return new Scrape(service, await res.text());
}
