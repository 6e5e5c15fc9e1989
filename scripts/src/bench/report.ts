// The printed form of a bench report: one comparison table (a row per workload figure, a column per
// system), Runnel's ratio to each peer, a per-run resource table, each system's settings, and the
// peers that could not run. Pure: takes the report, returns Markdown (pasteable into BENCHMARKS.md).
import { defaultBatchMaxBytes, defaultLingerMs } from "@runnel/client";
import { ceilingStepLabels, ceilingSteps, type CeilingResult } from "./ceiling.js";
import type { BenchReport } from "./run.js";
import { fmt, markdownTable } from "./stats.js";
import type { MeasuredResult, WorkloadId } from "./workloads.js";

interface Row {
  label: string;
  workload: WorkloadId;
  value: (r: MeasuredResult) => string;
}

const rows: readonly Row[] = [
  { label: "W1 1 KiB msgs/s", workload: "W1", value: (r) => fmt(r.recordsPerSec) },
  { label: "W1 1 KiB MiB/s", workload: "W1", value: (r) => fmt(r.mibPerSec, 1) },
  { label: "W1 small msgs/s", workload: "W1-small", value: (r) => fmt(r.recordsPerSec) },
  { label: "W1 small MiB/s", workload: "W1-small", value: (r) => fmt(r.mibPerSec, 1) },
  { label: "W2 p50 ms", workload: "W2", value: (r) => fmt(r.latency?.p50Ms, 1) },
  { label: "W2 p99 ms", workload: "W2", value: (r) => fmt(r.latency?.p99Ms, 1) },
  { label: "W2 p99.9 ms", workload: "W2", value: (r) => fmt(r.latency?.p999Ms, 1) },
  { label: "W2 max ms", workload: "W2", value: (r) => fmt(r.latency?.maxMs, 1) },
  { label: "W2 server CPU µs/msg", workload: "W2", value: (r) => fmt(r.serverCpuMicrosPerRecord) },
  { label: "W3 reads/s", workload: "W3", value: (r) => fmt(r.recordsPerSec) },
  { label: "W3 MiB/s", workload: "W3", value: (r) => fmt(r.mibPerSec, 1) },
  { label: "W4 deliveries/s", workload: "W4", value: (r) => fmt(r.recordsPerSec) },
  { label: "W5 accepted jobs/s", workload: "W5", value: (r) => fmt(r.recordsPerSec) },
];

export function comparisonTable(report: BenchReport): string {
  const names = report.targets.map((t) => t.name).filter((n) => report.results.some((r) => r.target === n));
  const body = rows
    .filter((row) => report.results.some((r) => r.workload === row.workload))
    .map((row) => [
      row.label,
      ...names.map((n) => {
        const r = report.results.find((x) => x.workload === row.workload && x.target === n);
        return r === undefined ? "" : row.value(r);
      }),
    ]);
  return markdownTable(["figure", ...names], body);
}

/** Runnel ÷ peer of each workload's headline figure: > 1 means Runnel is better for rates, < 1 for latency. */
export function ratioTable(report: BenchReport): string {
  const peers = [...new Set(report.ratios.map((r) => r.peer))];
  const keys = [...new Set(report.ratios.map((r) => `${r.workload}\u0000${r.runnel}`))];
  if (peers.length === 0) return "";
  return markdownTable(
    ["Runnel ÷ peer", "figure", ...peers],
    keys.map((k) => {
      const [workload, runnel] = k.split("\u0000") as [WorkloadId, string];
      const of = report.ratios.filter((r) => r.workload === workload && r.runnel === runnel);
      return [`${workload} ${runnel}`, of[0]!.figure, ...peers.map((p) => {
        const r = of.find((x) => x.peer === p);
        return r === undefined ? "" : `${fmt(r.ratio, 2)}×`;
      })];
    }),
  );
}

/**
 * What the machine allows: per W1 value size, the ceiling steps' records/s beside W1's, and W1 ÷ each
 * ceiling (fsync against the steps that fsync, memory against the network alone).
 */
export function ceilingTable(report: BenchReport): string {
  const sizes = [...new Set(report.ceiling.map((c) => c.valueBytes))];
  const w1 = (valueBytes: number, target: string) =>
    report.results.find((r) => (r.workload === "W1" || r.workload === "W1-small") && r.valueBytes === valueBytes && r.target === target);
  const step = (valueBytes: number, s: CeilingResult["step"]) => report.ceiling.find((c) => c.valueBytes === valueBytes && c.step === s);
  const div = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined || !(b > 0) ? "-" : `${fmt(a / b, 2)}×`);
  return markdownTable(
    ["records/s", ...ceilingSteps.map((s) => ceilingStepLabels[s]), "W1 Runnel fsync", "W1 Runnel memory", "fsync ÷ lmdb+grpc", "fsync ÷ lmdb", "memory ÷ grpc"],
    sizes.map((v) => {
      const fsync = w1(v, "Runnel fsync")?.recordsPerSec;
      const memory = w1(v, "Runnel memory")?.recordsPerSec;
      return [
        `${v} B (${step(v, "lmdb")?.recordsPerBatch ?? "-"} per batch)`,
        ...ceilingSteps.map((s) => fmt(step(v, s)?.recordsPerSec)),
        fmt(fsync),
        fmt(memory),
        div(fsync, step(v, "combined")?.recordsPerSec),
        div(fsync, step(v, "lmdb")?.recordsPerSec),
        div(memory, step(v, "grpc")?.recordsPerSec),
      ];
    }),
  );
}

/**
 * CPU seconds and peak RSS over each measured phase, servers together and the client (this process);
 * each server's peak RSS also split into anonymous + file pages (sampled peaks, see proc.ts).
 */
export function resourceTable(report: BenchReport): string {
  return markdownTable(
    ["workload / system", "seconds", "produced", "delivered", "server CPU s", "server CPU µs/record", "client CPU s", "peak RSS per server MiB", "peak anon / file RSS per server MiB", "client peak RSS MiB"],
    report.results.map((r) => {
      const client = r.processes["client"];
      const servers = Object.entries(r.processes).filter(([n]) => n !== "client");
      return [
        `${r.workload} ${r.target}`,
        fmt(r.elapsedMs / 1000, 1),
        fmt(r.produced),
        fmt(r.deliveries),
        fmt(r.serverCpuSeconds, 1),
        fmt(r.serverCpuMicrosPerRecord, 1),
        fmt(client?.cpuSeconds, 1),
        servers.map(([, u]) => fmt(u.peakRssMiB)).join(" / "),
        servers.map(([, u]) => `${fmt(u.peakRssAnonMiB)}+${fmt(u.peakRssFileMiB)}`).join(" / "),
        fmt(client?.peakRssMiB),
      ];
    }),
  );
}

export function formatReport(report: BenchReport): string {
  const o = report.options;
  const m = report.machine;
  return [
    `Workloads: W1 one producer, window ${o.windowRecords} records, ${o.valueBytes} B and ${o.smallValueBytes} B values, up to ${o.records} records or ` +
      `${o.seconds} s after ${o.warmupRecords} warm-up records; W2 ${o.w2RatePerSec} records/s of ${o.valueBytes} B for ${o.w2Seconds} s, one reader; ` +
      `W3 ${o.w3Records} records of ${o.valueBytes} B read from the beginning; W4 one producer as in W1, three readers each receiving everything` +
      (o.workloads.includes("W5")
        ? `; W5 ${o.w5Jobs} preloaded jobs of ${o.valueBytes} B on one queue, ${o.w5Workers} workers, prefetch ${o.w5Prefetch}, one acknowledgement per job ` +
          `(Runnel: ${o.w5Api === "share" ? "shareConsumer" : "tasks.worker"}). `
        : ". ") +
      `Runnel: ${o.partitions} partitions, producer lingerMs ${defaultLingerMs}, batches up to ${defaultBatchMaxBytes / 1024} KiB, ` +
      `${o.maxInFlightPerPartition === undefined ? "default" : o.maxInFlightPerPartition} batches in flight per partition.`,
    `Machine: ${m["cpuCount"]} × ${m["cpuModel"]}, ${m["memoryGiB"]} GiB, Node ${m["node"]}, temp dir on ${m["tmpdirFilesystem"]}, ` +
      `load average ${m["loadAverageAtStart1m"]} → ${m["loadAverage1m"]}, commit ${m["gitCommit"]}${m["gitDirty"] === "yes" ? " (dirty)" : ""}.`,
    "",
    comparisonTable(report),
    "",
    ...(report.ratios.length > 0 ? [ratioTable(report), ""] : []),
    ...(report.ceiling.length > 0
      ? [
        `What the machine allows (ceiling step, no broker, 3 processes each, ${o.ceilingSeconds} s or ${o.records} records per step, window ${o.windowRecords} records, ` +
          "W1's batch size): raw lmdb-js = 3 LMDB environments appending with an fsync per write (group commit); raw grpc-js = a leader " +
          "streaming each batch to 2 followers (bidi streams, acked on receipt); lmdb + grpc = both, a batch counts when all 3 have it fsynced.",
        "",
        ceilingTable(report),
        "",
      ]
      : []),
    resourceTable(report),
    "",
    ...report.targets.map((t) => `- ${t.name}: ${t.settings}`),
    ...report.unavailable.map((u) => `- ${u.system} COULD NOT RUN: ${u.reason}`),
    ...report.notes.map((n) => `Note: ${n}`),
  ].join("\n");
}

