// Pure arithmetic and formatting for the bench: percentiles, per-scenario summaries, ratios and the
// printed tables. No clocks or /proc here, so it can be checked with fixed numbers.

/** Bytes in a MiB: throughput is reported in MiB/s of record values (keys and framing not counted). */
export const bytesPerMiB = 1024 * 1024;

/**
 * The q-quantile (0..1) of `sorted` (ascending) by the nearest-rank method: the smallest value with at
 * least q of the samples at or below it. NaN for no samples.
 */
export function quantileSorted(sorted: ArrayLike<number>, q: number): number {
  if (!(q >= 0 && q <= 1)) throw new RangeError(`quantile must be in 0..1, got ${q}`);
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  const rank = Math.max(1, Math.ceil(q * n));
  return sorted[rank - 1]!;
}

export interface LatencySummary {
  count: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  minMs: number;
  meanMs: number;
}

/** Summarizes latencies in milliseconds; sorts a copy (the input is left as it is). */
export function summarizeLatencies(latenciesMs: ArrayLike<number>): LatencySummary {
  const sorted = Float64Array.from(latenciesMs).sort();
  let sum = 0;
  for (const v of sorted) sum += v;
  const n = sorted.length;
  return {
    count: n,
    p50Ms: quantileSorted(sorted, 0.5),
    p99Ms: quantileSorted(sorted, 0.99),
    p999Ms: quantileSorted(sorted, 0.999),
    maxMs: n === 0 ? Number.NaN : sorted[n - 1]!,
    minMs: n === 0 ? Number.NaN : sorted[0]!,
    meanMs: n === 0 ? Number.NaN : sum / n,
  };
}

export interface Throughput {
  recordsPerSec: number;
  mibPerSec: number;
}

export function throughput(records: number, valueBytes: number, elapsedMs: number): Throughput {
  if (!(elapsedMs > 0)) return { recordsPerSec: Number.NaN, mibPerSec: Number.NaN };
  const seconds = elapsedMs / 1000;
  return { recordsPerSec: records / seconds, mibPerSec: (records * valueBytes) / bytesPerMiB / seconds };
}

/** a / b, or NaN when b is not a positive number. */
export function ratio(a: number, b: number): number {
  return b > 0 && Number.isFinite(a) ? a / b : Number.NaN;
}

/** Fixed-precision number for tables; "-" for NaN or undefined. */
export function fmt(value: number | undefined, digits = 0): string {
  if (value === undefined || !Number.isFinite(value)) return "-";
  return value.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** A Markdown table (also readable in a terminal): numbers right-aligned, the first column left. */
export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]) =>
    `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(" | ")} |`;
  const rule = `|${widths.map((w, i) => (i === 0 ? `${"-".repeat(w + 1)}-` : `${"-".repeat(w + 1)}:`)).join("|")}|`;
  return [line(header), rule, ...rows.map(line)].join("\n");
}
