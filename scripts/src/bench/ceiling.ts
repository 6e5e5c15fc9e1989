// The ceiling step (issue 9): what this machine allows for W1's bytes, measured in the same run with
// no broker in the way. Three steps per record size, each with three processes (ceiling-node.ts), as
// Runnel has three brokers: (1) raw lmdb-js: three LMDB environments, each appending W1's batches
// with an fsync per write (group commit), in parallel; (2) raw grpc-js: a leader streaming every
// batch to two followers over bidi streams on loopback, followers acknowledging on receipt; (3) both:
// the leader stores and streams, followers store and acknowledge once flushed, a batch counts when
// all three have it on disk (acks=all with fsync, minus everything else a broker does).
import { fork, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { defaultBatchMaxBytes } from "@runnel/client";
import { buildBatch, RecordBatch } from "@runnel/proto";
import type { CeilingNodeInit, CeilingNodeMessage, CeilingNodeReply, CeilingRole } from "./ceiling-node.js";
import { endSample, startSample, type ProcessUsage } from "./proc.js";
import { throughput } from "./stats.js";
import { makeValues } from "./workload.js";

export type CeilingStep = "lmdb" | "grpc" | "combined";
export const ceilingSteps: readonly CeilingStep[] = ["lmdb", "grpc", "combined"];

export const ceilingStepLabels: Readonly<Record<CeilingStep, string>> = {
  lmdb: "raw lmdb-js ×3 (fsync)",
  grpc: "raw grpc-js 1→2",
  combined: "lmdb + grpc (acks=all)",
};

/** The producer's accounting (client/src/producer): a batch is sealed at 256 KiB counting these overheads. */
const producerRecordOverheadBytes = 24;
const producerBatchOverheadBytes = 64;
/** How long a step may take past its duration (draining the window, start-up) before it is killed. */
const stepGraceMs = 120_000;
/** Processes get this long to start and answer `ready`. */
const readyTimeoutMs = 30_000;
const replicaCount = 3;
/** Distinct record values inside the batch (incompressible-looking bytes, as W1's). */
const distinctValues = 64;

export interface CeilingSettings {
  valueBytes: number;
  windowRecords: number;
  maxRecords: number;
  durationMs: number;
}

export interface CeilingResult {
  step: CeilingStep;
  valueBytes: number;
  recordsPerBatch: number;
  batchBytes: number;
  /** Records every replica has (lmdb: the slowest of the three environments). */
  records: number;
  elapsedMs: number;
  recordsPerSec: number;
  mibPerSec: number;
  processes: Record<string, ProcessUsage>;
}

/** As many records as W1's producer puts in one batch of this value size. */
export function recordsPerBatchFor(valueBytes: number): number {
  return Math.max(1, Math.floor((defaultBatchMaxBytes - producerBatchOverheadBytes) / (valueBytes + producerRecordOverheadBytes)));
}

/** One encoded RecordBatch as the producer would send it (no key, random values). */
export function ceilingBatch(valueBytes: number): { bytes: Uint8Array; recordsPerBatch: number } {
  const recordsPerBatch = recordsPerBatchFor(valueBytes);
  const values = makeValues(distinctValues, valueBytes, Math.random);
  const batch = buildBatch(Array.from({ length: recordsPerBatch }, (_, i) => ({ value: values[i % values.length]! })), { producerId: 1n, producerEpoch: 0, baseSequence: 0 });
  return { bytes: RecordBatch.encode(batch).finish(), recordsPerBatch };
}

const nodeScript = join(dirname(fileURLToPath(import.meta.url)), "ceiling-node.js");

class Node {
  readonly child: ChildProcess;
  private readonly replies: CeilingNodeReply[] = [];
  private waiter: (() => void) | undefined;
  private exited = false;

  constructor(readonly name: string) {
    this.child = fork(nodeScript, [], { stdio: ["ignore", "inherit", "inherit", "ipc"], serialization: "advanced" });
    this.child.on("message", (m: CeilingNodeReply) => {
      this.replies.push(m);
      this.waiter?.();
    });
    this.child.once("exit", () => {
      this.exited = true;
      this.waiter?.();
    });
  }

  send(msg: CeilingNodeMessage): void {
    this.child.send(msg);
  }

  async next<T extends CeilingNodeReply["type"]>(type: T, timeoutMs: number): Promise<Extract<CeilingNodeReply, { type: T }>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = this.replies.shift();
      if (r !== undefined) {
        if (r.type === "error") throw new Error(`ceiling ${this.name}: ${r.message}`);
        if (r.type === type) return r as Extract<CeilingNodeReply, { type: T }>;
        continue;
      }
      if (this.exited) throw new Error(`ceiling ${this.name} exited before answering ${type}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`ceiling ${this.name}: no ${type} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => { clearTimeout(t); resolve(); };
      });
      this.waiter = undefined;
    }
  }

  async stop(): Promise<void> {
    if (this.exited || this.child.exitCode !== null) return;
    const exit = new Promise<void>((r) => this.child.once("exit", () => r()));
    this.child.kill("SIGKILL");
    await exit;
  }
}

/** Runs one step with three processes; the temp dir holds their LMDB environments. */
async function runStep(step: CeilingStep, s: CeilingSettings, batch: { bytes: Uint8Array; recordsPerBatch: number }, dir: string): Promise<CeilingResult> {
  const base: Omit<CeilingNodeInit, "role" | "dir"> = {
    type: "init", recordsPerBatch: batch.recordsPerBatch, windowRecords: s.windowRecords, maxRecords: s.maxRecords, durationMs: s.durationMs,
  };
  const stores = step !== "grpc";
  const dirOf = (i: number) => (stores ? join(dir, `${step}-${s.valueBytes}-replica-${i}`) : undefined);
  const nodes: Node[] = [];
  try {
    let drivers: Node[];
    if (step === "lmdb") {
      for (let i = 1; i <= replicaCount; i++) nodes.push(new Node(`replica-${i}`));
      nodes.forEach((n, i) => n.send({ ...base, role: "solo" satisfies CeilingRole, dir: dirOf(i + 1), batch: batch.bytes }));
      for (const n of nodes) await n.next("ready", readyTimeoutMs);
      drivers = nodes;
    } else {
      const leader = new Node("leader");
      nodes.push(leader);
      leader.send({ ...base, role: "leader", dir: dirOf(1), followers: replicaCount - 1, batch: batch.bytes });
      const { port } = await leader.next("ready", readyTimeoutMs);
      for (let i = 2; i <= replicaCount; i++) {
        const f = new Node(`follower-${i}`);
        nodes.push(f);
        f.send({ ...base, role: "follower", dir: dirOf(i), leaderAddress: `127.0.0.1:${port}` });
        await f.next("ready", readyTimeoutMs);
      }
      drivers = [leader];
    }
    const samples = nodes.map((n) => startSample(n.child.pid!));
    for (const n of drivers) n.send({ type: "start" });
    const done = await Promise.all(drivers.map((n) => n.next("done", s.durationMs + stepGraceMs)));
    const processes: Record<string, ProcessUsage> = {};
    nodes.forEach((n, i) => (processes[n.name] = endSample(n.child.pid!, samples[i]!)));
    // Every replica must have a record before it counts: the slowest environment sets the rate.
    const records = Math.min(...done.map((d) => d.records));
    const elapsedMs = Math.max(...done.map((d) => d.elapsedMs));
    const t = throughput(records, s.valueBytes, elapsedMs);
    return { step, valueBytes: s.valueBytes, recordsPerBatch: batch.recordsPerBatch, batchBytes: batch.bytes.byteLength, records, elapsedMs, recordsPerSec: t.recordsPerSec, mibPerSec: t.mibPerSec, processes };
  } finally {
    await Promise.allSettled(nodes.map((n) => n.stop()));
  }
}

export interface CeilingHooks {
  log: (line: string) => void;
  /** Called with the temp dir and a close function while the step runs (for Ctrl-C), undefined after. */
  onDir: (d: { dir: string; close: () => Promise<void> } | undefined) => void;
  interrupted: () => boolean;
}

/** Every step for every value size, one after another. */
export async function runCeiling(valueSizes: readonly number[], s: Omit<CeilingSettings, "valueBytes">, hooks: CeilingHooks): Promise<CeilingResult[]> {
  const out: CeilingResult[] = [];
  for (const valueBytes of valueSizes) {
    const batch = ceilingBatch(valueBytes);
    for (const step of ceilingSteps) {
      if (hooks.interrupted()) return out;
      const dir = mkdtempSync(join(tmpdir(), "runnel-bench-ceiling-"));
      hooks.onDir({ dir, close: async () => rmSync(dir, { recursive: true, force: true }) });
      try {
        hooks.log(`ceiling: ${ceilingStepLabels[step]}, ${valueBytes} B records, ${batch.recordsPerBatch} per batch, ceiling dir ${dir} ...`);
        const r = await runStep(step, { ...s, valueBytes }, batch, dir);
        hooks.log(`ceiling: ${ceilingStepLabels[step]}, ${valueBytes} B: ${Math.round(r.recordsPerSec)} records/s (${r.mibPerSec.toFixed(1)} MiB/s)`);
        out.push(r);
      } finally {
        hooks.onDir(undefined);
        rmSync(dir, { recursive: true, force: true });
      }
    }
  }
  return out;
}
