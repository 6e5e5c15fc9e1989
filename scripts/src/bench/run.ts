// One bench run: Runnel's cluster first, then the ceiling step (ceiling.ts: raw lmdb-js and grpc-js
// with W1's bytes, no broker), then (with --peers) NATS JetStream and RabbitMQ, one system
// at a time so they never compete for the machine; each runs the chosen workloads on fresh streams.
// A peer that cannot be installed or started is recorded as unavailable and the run goes on. The
// caller owns printing and signal handling; runBench hands it every cluster as soon as it exists so
// an interrupt can close it.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg, release, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import type { Cluster } from "@runnel/cluster-tests";
import { runCeiling, type CeilingResult } from "./ceiling.js";
import type { BenchOptions } from "./options.js";
import { startNats } from "./peers/nats.js";
import { startRabbitMq } from "./peers/rabbitmq.js";
import { startRunnelTargets } from "./runnel-target.js";
import { ratio } from "./stats.js";
import { PeerUnavailableError, type BenchTarget, type TargetCluster } from "./target.js";
import { runW1, runW2, runW3, runW4, runW5, type MeasuredResult, type WorkloadId, type WorkloadSettings } from "./workloads.js";

/** Pause between workloads, so background work of one (flushes, follower catch-up) settles before the next. */
const settleBetweenWorkloadsMs = 1_000;

/**
 * Which Runnel durability runs each workload. W2 only with fsync (the latency goal is for the safe
 * default). W3 preloads through the memory topic because preloading 1 GiB with fsync takes minutes
 * and the read path does not depend on durability.
 */
export const runnelDurabilities: Readonly<Record<WorkloadId, readonly string[]>> = {
  W1: ["fsync", "memory"],
  "W1-small": ["fsync", "memory"],
  W2: ["fsync"],
  W3: ["memory"],
  W4: ["fsync", "memory"],
  W5: ["fsync"],
};

/** The ratio table's figure for each workload's headline. */
function headlineFigure(workload: WorkloadId, higherIsBetter: boolean): string {
  if (workload === "W5") return "jobs/s (goal: 4× RabbitMQ quorum)";
  return higherIsBetter ? "msgs/s (higher is better)" : "p99 ms (lower is better)";
}

/** The headline figure of a workload and whether more is better. */
export function headline(r: MeasuredResult): { value: number; higherIsBetter: boolean } {
  if (r.workload === "W2") return { value: r.latency?.p99Ms ?? Number.NaN, higherIsBetter: false };
  return { value: r.recordsPerSec, higherIsBetter: true };
}

export interface UnavailablePeer {
  system: string;
  reason: string;
}

export interface BenchReport {
  benchmark: "runnel-vs-peers";
  /** 3: W5 results and the ceiling step. */
  formatVersion: 3;
  startedAt: string;
  finishedAt: string;
  command: string;
  machine: Record<string, string | number>;
  options: BenchOptions;
  targets: Array<{ name: string; settings: string }>;
  results: MeasuredResult[];
  /** Runnel ÷ peer of each workload's headline figure (W2: p99 latency, lower is better), per Runnel target. */
  ratios: Array<{ workload: WorkloadId; runnel: string; peer: string; ratio: number; figure: string }>;
  unavailable: UnavailablePeer[];
  /** What the machine allows for W1's bytes without a broker (empty with --no-ceiling). */
  ceiling: CeilingResult[];
  notes: string[];
}

export interface BenchHooks {
  log: (line: string) => void;
  /** Called as soon as the Runnel cluster exists (to close it on Ctrl-C). */
  onCluster: (cluster: Cluster) => void;
  /** Called when a peer starts (to stop it and remove its dir on Ctrl-C), and with undefined once it is closed. */
  onPeers: (peers: { dir: string; close: () => Promise<void> } | undefined) => void;
  /** Whether the run should stop (checked between workloads). */
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

function settings(o: BenchOptions): WorkloadSettings {
  return {
    seconds: o.seconds, records: o.records, windowRecords: o.windowRecords, warmupRecords: o.warmupRecords,
    valueBytes: o.valueBytes, smallValueBytes: o.smallValueBytes, w2RatePerSec: o.w2RatePerSec, w2Seconds: o.w2Seconds, w3Records: o.w3Records,
    w5Jobs: o.w5Jobs, w5Workers: o.w5Workers, w5Prefetch: o.w5Prefetch,
  };
}

async function runWorkloads(
  targets: readonly BenchTarget[], options: BenchOptions, hooks: BenchHooks, include: (w: WorkloadId, t: BenchTarget) => boolean,
): Promise<MeasuredResult[]> {
  const s = settings(options);
  const out: MeasuredResult[] = [];
  for (const w of options.workloads) {
    for (const t of targets) {
      if (!include(w, t)) continue;
      if (w === "W5" && t.taskQueue === undefined) continue;
      if (hooks.interrupted()) throw new BenchInterrupted("interrupted");
      if (out.length > 0) await new Promise((r) => setTimeout(r, settleBetweenWorkloadsMs));
      const label = w.toLowerCase();
      hooks.log(`${t.name}: ${w} ...`);
      const r =
        w === "W1" || w === "W1-small" ? await runW1(t, s, w, label)
        : w === "W2" ? await runW2(t, s, label)
        : w === "W3" ? await runW3(t, s, label, hooks.log)
        : w === "W4" ? await runW4(t, s, label)
        : await runW5(t, s, label, hooks.log);
      hooks.log(
        `${t.name}: ${w} ${Math.round(r.recordsPerSec)} ${w === "W3" ? "reads" : w === "W4" ? "deliveries" : w === "W5" ? "accepted jobs" : "msgs"}/s` +
          (r.latency === undefined ? "" : `, p50 ${r.latency.p50Ms.toFixed(1)} ms, p99 ${r.latency.p99Ms.toFixed(1)} ms`),
      );
      out.push(r);
    }
  }
  return out;
}

export function computeRatios(results: readonly MeasuredResult[]): BenchReport["ratios"] {
  const out: BenchReport["ratios"] = [];
  for (const r of results) {
    if (!r.target.startsWith("Runnel")) continue;
    for (const p of results) {
      if (p.workload !== r.workload || p.target.startsWith("Runnel")) continue;
      const a = headline(r);
      const b = headline(p);
      out.push({ workload: r.workload, runnel: r.target, peer: p.target, ratio: ratio(a.value, b.value), figure: headlineFigure(r.workload, a.higherIsBetter) });
    }
  }
  return out;
}

export async function runBench(options: BenchOptions, hooks: BenchHooks): Promise<BenchReport> {
  const startedAt = new Date().toISOString();
  const loadAverageAtStart1m = Math.round(loadavg()[0]! * 100) / 100;
  const notes: string[] = [];
  const results: MeasuredResult[] = [];
  const targets: BenchReport["targets"] = [];
  const unavailable: UnavailablePeer[] = [];
  const describe = (t: BenchTarget) => ({
    name: t.name,
    settings: t.settings + (options.workloads.includes("W5") && t.taskQueue !== undefined ? `; ${t.taskQueue.describe(options.w5Prefetch)}` : ""),
  });

  const runnel = await startRunnelTargets({
    partitions: options.partitions, w5Api: options.w5Api, maxInFlightPerPartition: options.maxInFlightPerPartition, profileDir: options.profileDir,
    log: hooks.log, onCluster: hooks.onCluster,
  });
  try {
    if (hooks.interrupted()) throw new BenchInterrupted("interrupted during start-up");
    for (const t of runnel.targets) targets.push(describe(t));
    results.push(...(await runWorkloads(runnel.targets, options, hooks, (w, t) => runnelDurabilities[w].some((d) => t.name.endsWith(d)))));
  } finally {
    await runnel.close();
  }
  if (options.profileDir !== undefined) notes.push(`CPU profiles in ${options.profileDir}`);

  const ceiling: CeilingResult[] = [];
  const ceilingSizes = [
    ...(options.workloads.includes("W1") ? [options.valueBytes] : []),
    ...(options.workloads.includes("W1-small") ? [options.smallValueBytes] : []),
  ];
  if (options.ceiling && ceilingSizes.length > 0) {
    if (hooks.interrupted()) throw new BenchInterrupted("interrupted");
    try {
      ceiling.push(...(await runCeiling(ceilingSizes, { windowRecords: options.windowRecords, maxRecords: options.records, durationMs: options.ceilingSeconds * 1000 }, {
        log: hooks.log, onDir: hooks.onPeers, interrupted: hooks.interrupted,
      })));
    } catch (err) {
      // The ceiling is context for W1; Runnel's and the peers' figures stand without it.
      if (hooks.interrupted()) throw new BenchInterrupted("interrupted");
      const reason = err instanceof Error ? err.message : String(err);
      hooks.log(`ceiling step failed: ${reason}`);
      notes.push(`the ceiling step failed: ${reason}`);
    }
  }

  if (options.peers) {
    const peers: Array<{ system: string; start: (dir: string) => Promise<TargetCluster> }> = [
      { system: "NATS JetStream", start: (dir) => startNats(dir, hooks.log) },
      { system: "RabbitMQ", start: (dir) => startRabbitMq(dir, hooks.log) },
    ];
    for (const peer of peers) {
      if (hooks.interrupted()) throw new BenchInterrupted("interrupted");
      const dir = mkdtempSync(join(tmpdir(), `runnel-bench-${peer.system.split(" ")[0]!.toLowerCase()}-`));
      hooks.log(`starting ${peer.system} in ${dir} ...`);
      let cluster: TargetCluster | undefined;
      try {
        hooks.onPeers({ dir, close: async () => cluster?.close() });
        try {
          cluster = await peer.start(dir);
        } catch (err) {
          if (!(err instanceof PeerUnavailableError)) throw err;
          hooks.log(`${peer.system} CANNOT RUN: ${err.message}; going on without it`);
          unavailable.push({ system: peer.system, reason: err.message });
          continue;
        }
        for (const t of cluster.targets) targets.push(describe(t));
        results.push(...(await runWorkloads(cluster.targets, options, hooks, () => true)));
      } catch (err) {
        // A peer failing mid-run is reported like one that cannot start; Runnel's figures stand.
        if (err instanceof BenchInterrupted || hooks.interrupted()) throw err;
        const reason = `failed during the workloads: ${err instanceof Error ? err.message : String(err)}`;
        hooks.log(`${peer.system} ${reason}; going on without the rest of it`);
        unavailable.push({ system: peer.system, reason });
      } finally {
        hooks.onPeers(undefined);
        await cluster?.close();
        if (options.keepDir) hooks.log(`kept ${peer.system}'s logs and data in ${dir}`);
        else rmSync(dir, { recursive: true, force: true });
      }
    }
  }

  if (results.some((r) => Object.values(r.processes).some((p) => !p.peakRssResetOk))) {
    notes.push("peak RSS could not be reset for some process: its figure is the lifetime peak");
  }
  return {
    benchmark: "runnel-vs-peers",
    formatVersion: 3,
    startedAt,
    finishedAt: new Date().toISOString(),
    command: `node ${process.argv.slice(1).join(" ")}`,
    machine: { ...machineInfo(), loadAverageAtStart1m },
    options,
    targets,
    results,
    ratios: computeRatios(results),
    unavailable,
    ceiling,
    notes,
  };
}
