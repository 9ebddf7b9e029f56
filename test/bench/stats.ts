/** Latency samples and the percentiles the report prints. */
export class Samples {
  readonly values: number[] = [];
  add(ms: number): void {
    this.values.push(ms);
  }
  get count(): number {
    return this.values.length;
  }
  percentile(p: number): number {
    if (this.values.length === 0) return Number.NaN;
    const sorted = [...this.values].sort((a, b) => a - b);
    const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
    return sorted[idx] ?? Number.NaN;
  }
  get max(): number {
    return this.values.reduce((m, v) => Math.max(m, v), Number.NEGATIVE_INFINITY);
  }
  summary() {
    return { count: this.count, p50: this.percentile(50), p99: this.percentile(99), max: this.max };
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Runs `task` at a fixed rate (open loop: the schedule does not wait for slow
 * answers, so queueing delay shows up in the latencies) for `seconds`.
 */
export async function openLoop(
  ratePerSecond: number,
  seconds: number,
  task: () => Promise<void>,
): Promise<{ errors: number; started: number }> {
  const interval = 1000 / ratePerSecond;
  const start = performance.now();
  const total = Math.round(ratePerSecond * seconds);
  let errors = 0;
  const inflight: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const due = start + i * interval;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    inflight.push(
      task().catch((err: unknown) => {
        errors++;
        if (errors <= 3) process.stderr.write(`  error: ${err instanceof Error ? err.message : String(err)}\n`);
      }),
    );
  }
  await Promise.all(inflight);
  return { errors, started: total };
}

/** Runs `concurrency` workers doing `task` back to back until `seconds` pass (closed loop). */
export async function closedLoop(concurrency: number, seconds: number, task: () => Promise<void>) {
  const end = performance.now() + seconds * 1000;
  let done = 0;
  let errors = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        try {
          await task();
          done++;
        } catch (err) {
          errors++;
          if (errors <= 3) process.stderr.write(`  error: ${err instanceof Error ? err.message : String(err)}\n`);
        }
      }
    }),
  );
  return { done, errors, seconds };
}
