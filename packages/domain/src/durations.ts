/**
 * Parses operator-facing durations such as `168h`, `24h`, `90s`, `15m`, `7d`,
 * `500ms` or a bare number of seconds. Tests configure seconds; operators write hours.
 */
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function parseDuration(input: string): number | null {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(input);
  if (!m) return null;
  const value = Number(m[1]);
  const unit = m[2] ?? 's';
  const ms = value * (UNIT_MS[unit] ?? 1000);
  return Number.isFinite(ms) && ms >= 0 ? Math.round(ms) : null;
}

export function formatDuration(ms: number): string {
  if (ms % 86_400_000 === 0) return `${ms / 86_400_000}d`;
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}
