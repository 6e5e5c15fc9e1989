// The printed form of a bench report: a throughput/latency table, a per-process resource table and
// the ratios to scenario (c). Pure: takes the report, returns text (Markdown tables, pasteable into
// BENCHMARKS.md).
import { defaultBatchMaxBytes, defaultLingerMs } from "@runnel/client";
import type { BenchReport, ScenarioResult } from "./run.js";
import { fmt, markdownTable } from "./stats.js";

export function throughputTable(scenarios: readonly ScenarioResult[]): string {
  return markdownTable(
    ["scenario", "records", "seconds", "msgs/s", "MiB/s", "p50 ms", "p99 ms", "max ms", "unloaded p50 ms", "server CPU µs/msg"],
    scenarios.map((s) => [
      `(${s.id}) ${s.label}`,
      fmt(s.acked),
      fmt(s.elapsedMs / 1000, 2),
      fmt(s.throughput.recordsPerSec),
      fmt(s.throughput.mibPerSec, 1),
      fmt(s.latency.p50Ms, 1),
      fmt(s.latency.p99Ms, 1),
      fmt(s.latency.maxMs, 1),
      fmt(s.probeLatency.p50Ms, 2),
      fmt(s.serverCpuMicrosPerRecord, 1),
    ]),
  );
}

/** CPU seconds (and share of one core) and peak RSS of each process over the measured phase. */
export function resourceTable(scenarios: readonly ScenarioResult[]): string {
  const names = [...new Set(scenarios.flatMap((s) => Object.keys(s.processes)))];
  return markdownTable(
    ["scenario", ...names.map((n) => `${n} CPU s (core %) / peak RSS MiB`)],
    scenarios.map((s) => [
      `(${s.id})`,
      ...names.map((n) => {
        const u = s.processes[n];
        if (u === undefined) return "-";
        const share = s.elapsedMs > 0 ? (u.cpuSeconds / (s.elapsedMs / 1000)) * 100 : Number.NaN;
        return `${fmt(u.cpuSeconds, 2)} (${fmt(share)}%) / ${fmt(u.peakRssMiB)}`;
      }),
    ]),
  );
}

export function ratioLines(report: BenchReport): string[] {
  return Object.entries(report.ratios).flatMap(([name, r]) =>
    r === undefined ? [] : [`(${name.replace("/", ")/(")}): msgs/s ${fmt(r.recordsPerSec, 2)}×, p50 latency ${fmt(r.p50Ms, 2)}×, p99 latency ${fmt(r.p99Ms, 2)}×`],
  );
}

export function formatReport(report: BenchReport): string {
  const o = report.options;
  const m = report.machine;
  return [
    `Replicated produce: ${o.partitions} partition(s) per topic, ${o.valueBytes}-byte values, one idempotent producer ` +
      `(window ${o.windowRecords} records, lingerMs ${defaultLingerMs}, batches up to ${defaultBatchMaxBytes / 1024} KiB, ` +
      `${o.maxInFlightPerPartition === undefined ? "default" : o.maxInFlightPerPartition} batches in flight per partition), ` +
      `up to ${o.records} records or ${o.seconds} s per scenario after ${o.warmupRecords} warm-up records.`,
    `Machine: ${m["cpuCount"]} × ${m["cpuModel"]}, ${m["memoryGiB"]} GiB, Node ${m["node"]}, temp dir on ${m["tmpdirFilesystem"]}, load average ${m["loadAverageAtStart1m"]} → ${m["loadAverage1m"]}, commit ${m["gitCommit"]}${m["gitDirty"] === "yes" ? " (dirty)" : ""}.`,
    "",
    throughputTable(report.scenarios),
    "",
    resourceTable(report.scenarios),
    "",
    ...ratioLines(report),
    ...report.notes.map((n) => `Note: ${n}`),
  ].join("\n");
}
