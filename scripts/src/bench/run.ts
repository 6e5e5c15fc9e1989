// One bench run: a fresh cluster (controller + 3 brokers from the built dist/, in a temp dir), then each
// scenario on a fresh topic with one idempotent producer, measuring throughput, send latency and each
// process's CPU and peak RSS over the measured phase. The caller owns printing and signal handling;
// runBench hands it the cluster as soon as it exists so an interrupt can close it.
import { execFileSync } from "node:child_process";
import { cpus, loadavg, release, tmpdir, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Runnel, type Acks, type Producer } from "@runnel/client";
import { startCluster, type Cluster, type ProcessId } from "@runnel/cluster-tests";
import type { BenchOptions, ScenarioId } from "./options.js";
import { endSample, startSample, type ProcessUsage } from "./proc.js";
import { ratio, summarizeLatencies, throughput, type LatencySummary, type Throughput } from "./stats.js";
import { makeValues, runProbe, runWorkload } from "./workload.js";

export const brokerCount = 3;
/** Distinct record values cycled through by the workload. */
const distinctValues = 64;
/** Pause between scenarios, so background work of one (flushes, follower catch-up) settles before the next. */
const settleBetweenScenariosMs = 1_000;
/** How long to wait for a new topic's partitions to have a leader and a full ISR. */
const topicReadyTimeoutMs = 30_000;
/** Warm-up never runs longer than this, whatever --warmup says. */
const warmupMaxMs = 30_000;

export interface ScenarioSpec {
  id: ScenarioId;
  label: string;
  replicationFactor: number;
  configs: Record<string, string>;
  acks: Acks;
}

export const scenarioSpecs: Readonly<Record<ScenarioId, ScenarioSpec>> = {
  a: { id: "a", label: "RF3 acks=all fsync", replicationFactor: 3, configs: { "min.insync.replicas": "2", durability: "fsync" }, acks: "all" },
  b: { id: "b", label: "RF3 acks=all memory", replicationFactor: 3, configs: { "min.insync.replicas": "2", durability: "memory" }, acks: "all" },
  c: { id: "c", label: "RF1 acks=leader", replicationFactor: 1, configs: {}, acks: "leader" },
};

export type ProcessName = "controller" | `broker-${number}` | "client";

export interface ScenarioResult {
  id: ScenarioId;
  label: string;
  topic: string;
  partitions: number;
  replicationFactor: number;
  configs: Record<string, string>;
  acks: Acks;
  idempotent: boolean;
  /** Partition -> leader broker id when the measured phase started. */
  leaders: Record<string, number>;
  sent: number;
  acked: number;
  failed: number;
  stoppedBy: "records" | "seconds";
  elapsedMs: number;
  throughput: Throughput;
  latency: LatencySummary;
  /** One record at a time, lingerMs 0, partition 0, after the measured phase. */
  probeLatency: LatencySummary;
  processes: Record<string, ProcessUsage>;
  /** Controller and brokers together, CPU seconds over the measured phase. */
  serverCpuSeconds: number;
  serverCpuMicrosPerRecord: number;
}

export interface BenchReport {
  benchmark: "replicated-produce";
  formatVersion: 1;
  startedAt: string;
  finishedAt: string;
  command: string;
  machine: Record<string, string | number>;
  options: BenchOptions;
  scenarios: ScenarioResult[];
  /** Throughput and latency of (a) and (b) relative to (c). */
  ratios: Record<string, { recordsPerSec: number; p50Ms: number; p99Ms: number } | undefined>;
  notes: string[];
}

export interface BenchHooks {
  log: (line: string) => void;
  /** Called as soon as the cluster exists (to close it on Ctrl-C). */
  onCluster: (cluster: Cluster) => void;
  /** Whether the run should stop (checked between phases). */
  interrupted: () => boolean;
}

export class BenchInterrupted extends Error {
  override name = "BenchInterrupted";
}

function machineInfo(): Record<string, string | number> {
  const run = (cmd: string, args: string[]): string => {
    try {
      return execFileSync(cmd, args, { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    } catch {
      return "unknown";
    }
  };
  return {
    cpuModel: cpus()[0]?.model ?? "unknown",
    cpuCount: cpus().length,
    memoryGiB: Math.round((totalmem() / 1024 ** 3) * 10) / 10,
    node: process.version,
    /** Other work on the machine skews every figure: the 1-minute load average when the run ended. */
    loadAverage1m: Math.round(loadavg()[0]! * 100) / 100,
    kernel: release(),
    tmpdir: tmpdir(),
    tmpdirFilesystem: run("stat", ["-f", "-c", "%T", tmpdir()]),
    gitCommit: run("git", ["rev-parse", "--short", "HEAD"]),
    gitDirty: run("git", ["status", "--porcelain", "--untracked-files=no"]) === "" ? "no" : "yes",
  };
}

export async function runBench(options: BenchOptions, hooks: BenchHooks): Promise<BenchReport> {
  const startedAt = new Date().toISOString();
  const loadAverageAtStart1m = Math.round(loadavg()[0]! * 100) / 100;
  const notes: string[] = [];
  const savedNodeOptions = process.env["NODE_OPTIONS"];
  if (options.profileDir !== undefined) {
    // The harness starts processes with this process's environment, so this reaches the cluster only
    // (this process has already started). Node 20 refuses --cpu-prof in NODE_OPTIONS, hence a preload.
    const preload = pathToFileURL(join(dirname(fileURLToPath(import.meta.url)), "cpu-profile-preload.js")).href;
    process.env["NODE_OPTIONS"] = `${savedNodeOptions ?? ""} --import ${preload}`.trim();
    process.env["RUNNEL_BENCH_PROFILE_DIR"] = options.profileDir;
  }
  hooks.log(`starting controller + ${brokerCount} brokers ...`);
  let cluster: Cluster;
  try {
    cluster = await startCluster({ brokers: brokerCount, logLevel: "info" });
  } finally {
    if (savedNodeOptions === undefined) delete process.env["NODE_OPTIONS"];
    else process.env["NODE_OPTIONS"] = savedNodeOptions;
  }
  hooks.onCluster(cluster);
  hooks.log(`cluster up in ${cluster.dir}`);
  const runnel = new Runnel({ bootstrap: cluster.bootstrap, clientId: "runnel-bench" });
  const results: ScenarioResult[] = [];
  try {
    await runnel.connect();
    const values = makeValues(distinctValues, options.valueBytes, Math.random);
    for (const [i, id] of options.scenarios.entries()) {
      if (hooks.interrupted()) throw new BenchInterrupted("interrupted");
      if (i > 0) await new Promise((r) => setTimeout(r, settleBetweenScenariosMs));
      results.push(await runScenario(cluster, runnel, scenarioSpecs[id], options, values, hooks));
    }
    if (options.profileDir !== undefined) {
      // --cpu-prof writes on a normal exit only: stop gracefully before close() SIGKILLs.
      for (const id of cluster.brokerIds) await cluster.stop(id);
      await cluster.stop("controller");
      notes.push(`CPU profiles in ${options.profileDir}`);
    }
  } finally {
    await runnel.close().catch(() => undefined);
  }
  const c = results.find((r) => r.id === "c");
  const ratios: BenchReport["ratios"] = {};
  for (const r of results) {
    if (r.id === "c" || c === undefined) continue;
    ratios[`${r.id}/c`] = {
      recordsPerSec: ratio(r.throughput.recordsPerSec, c.throughput.recordsPerSec),
      p50Ms: ratio(r.latency.p50Ms, c.latency.p50Ms),
      p99Ms: ratio(r.latency.p99Ms, c.latency.p99Ms),
    };
  }
  if (results.some((r) => Object.values(r.processes).some((p) => !p.peakRssResetOk))) {
    notes.push("peak RSS could not be reset for some process: its figure is the lifetime peak");
  }
  return {
    benchmark: "replicated-produce",
    formatVersion: 1,
    startedAt,
    finishedAt: new Date().toISOString(),
    command: `node ${process.argv.slice(1).join(" ")}`,
    machine: { ...machineInfo(), loadAverageAtStart1m },
    options,
    scenarios: results,
    ratios,
    notes,
  };
}

async function runScenario(
  cluster: Cluster,
  runnel: Runnel,
  spec: ScenarioSpec,
  options: BenchOptions,
  values: readonly Uint8Array[],
  hooks: BenchHooks,
): Promise<ScenarioResult> {
  const topic = `bench-${spec.id}`;
  hooks.log(`(${spec.id}) ${spec.label}: topic ${topic}, ${options.partitions} partitions`);
  await runnel.admin().createTopic({ name: topic, partitions: options.partitions, replicationFactor: spec.replicationFactor, configs: spec.configs });
  const leaders: Record<string, number> = {};
  for (let p = 0; p < options.partitions; p++) {
    const meta = await cluster.waitForLeader(topic, p, (m) => m.isr.length === spec.replicationFactor, { timeoutMs: topicReadyTimeoutMs });
    leaders[String(p)] = meta.leaderId;
  }
  await runnel.metadata.refresh([topic]);

  const producer = runnel.producer({
    acks: spec.acks,
    ...(options.maxInFlightPerPartition === undefined ? {} : { maxInFlightPerPartition: options.maxInFlightPerPartition }),
  });
  const send = (value: Uint8Array) => producer.send({ topic, value });
  const now = () => performance.now();
  try {
    if (options.warmupRecords > 0) {
      const warm = await runWorkload(send, { maxRecords: options.warmupRecords, durationMs: warmupMaxMs, windowRecords: options.windowRecords, values }, now);
      if (warm.failed > 0) throw new Error(`(${spec.id}) warm-up: ${warm.failed} records failed; first: ${String(warm.firstError)}`);
    }
    if (hooks.interrupted()) throw new BenchInterrupted("interrupted");

    const pids = processPids(cluster);
    const starts = new Map([...pids].map(([name, pid]) => [name, startSample(pid)] as const));
    const result = await runWorkload(send, { maxRecords: options.records, durationMs: options.seconds * 1000, windowRecords: options.windowRecords, values }, now);
    const processes: Record<string, ProcessUsage> = {};
    for (const [name, pid] of pids) processes[name] = endSample(pid, starts.get(name)!);
    if (result.failed > 0) {
      throw new Error(`(${spec.id}) ${result.failed} of ${result.sent} records failed; first: ${String(result.firstError)}; logs were in ${cluster.dir}`);
    }

    let probe: Float64Array = new Float64Array(0);
    if (options.probeRecords > 0 && !hooks.interrupted()) {
      const prober = runnel.producer({ acks: spec.acks, lingerMs: 0 });
      try {
        probe = await runProbe((value) => prober.send({ topic, value, partition: 0 }), options.probeRecords, values[0]!, now);
      } finally {
        await prober.close();
      }
    }

    const serverCpuSeconds = Object.entries(processes)
      .filter(([name]) => name !== "client")
      .reduce((sum, [, u]) => sum + u.cpuSeconds, 0);
    const out: ScenarioResult = {
      id: spec.id,
      label: spec.label,
      topic,
      partitions: options.partitions,
      replicationFactor: spec.replicationFactor,
      configs: spec.configs,
      acks: spec.acks,
      idempotent: producer.idempotent,
      leaders,
      sent: result.sent,
      acked: result.acked,
      failed: result.failed,
      stoppedBy: result.sent >= options.records ? "records" : "seconds",
      elapsedMs: result.elapsedMs,
      throughput: throughput(result.acked, options.valueBytes, result.elapsedMs),
      latency: summarizeLatencies(result.latenciesMs),
      probeLatency: summarizeLatencies(probe),
      processes,
      serverCpuSeconds,
      serverCpuMicrosPerRecord: result.acked > 0 ? (serverCpuSeconds * 1e6) / result.acked : Number.NaN,
    };
    hooks.log(
      `(${spec.id}) ${out.acked} records in ${(out.elapsedMs / 1000).toFixed(2)} s: ${Math.round(out.throughput.recordsPerSec)} msgs/s, ` +
        `p50 ${out.latency.p50Ms.toFixed(1)} ms, p99 ${out.latency.p99Ms.toFixed(1)} ms`,
    );
    return out;
  } finally {
    await producer.close().catch(() => undefined);
  }
}

/** Pids of the cluster's processes and of this (client) process, by name. */
function processPids(cluster: Cluster): Map<ProcessName, number> {
  const pids = new Map<ProcessName, number>();
  const ids: ProcessId[] = ["controller", ...cluster.brokerIds];
  for (const id of ids) {
    const pid = cluster.pid(id);
    if (pid === undefined) throw new Error(`${id === "controller" ? "controller" : `broker ${id}`} is not running; logs in ${cluster.dir}`);
    pids.set(id === "controller" ? "controller" : `broker-${id}`, pid);
  }
  pids.set("client", process.pid);
  return pids;
}
