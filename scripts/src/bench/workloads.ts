// The issue 9 and 10 workloads, each run the same way against any BenchTarget: W1 replicated produce
// (as fast as a bounded window allows), W2 end-to-end latency at a fixed rate, W3 catch-up read of a
// preloaded stream, W4 fan-out to three readers, W5 a task queue drained by competing workers. Each measures its phase's CPU seconds and peak RSS per process
// (server processes and this client process) through /proc.
import { performance } from "node:perf_hooks";
import { endSample, startSample, type ProcessUsage } from "./proc.js";
import { summarizeLatencies, throughput, type LatencySummary } from "./stats.js";
import type { BenchTarget, ConsumeHandle, StreamSpec } from "./target.js";
import { DeliveryCounter, makeValues, runPaced, runWorkload } from "./workload.js";

export type WorkloadId = "W1" | "W1-small" | "W2" | "W3" | "W4" | "W5";
export const allWorkloadIds: readonly WorkloadId[] = ["W1", "W1-small", "W2", "W3", "W4", "W5"];

export interface WorkloadSettings {
  /** W1/W4: the measured produce phase ends after this many seconds ... */
  seconds: number;
  /** ... or this many records. */
  records: number;
  windowRecords: number;
  warmupRecords: number;
  valueBytes: number;
  smallValueBytes: number;
  w2RatePerSec: number;
  w2Seconds: number;
  w3Records: number;
  w5Jobs: number;
  w5Workers: number;
  w5Prefetch: number;
}

export interface MeasuredResult {
  workload: WorkloadId;
  target: string;
  valueBytes: number;
  /** Records acknowledged to the producer in the measured phase (W3: records preloaded). */
  produced: number;
  /** Deliveries counted by the readers (all of them together) in the measured phase. */
  deliveries: number;
  elapsedMs: number;
  /** The headline rate: W1 acknowledged records/s, W2 acknowledged records/s, W3 records read/s, W4 deliveries/s, W5 accepted jobs/s. */
  recordsPerSec: number;
  mibPerSec: number;
  /** W1: send() to acknowledgement (includes time queued in the window); W2: record timestamp to delivery. */
  latency: LatencySummary | undefined;
  processes: Record<string, ProcessUsage>;
  serverCpuSeconds: number;
  serverCpuMicrosPerRecord: number;
  serverPeakRssMiB: number | undefined;
}

/** Distinct record values cycled through by the throughput workloads. */
const distinctValues = 64;
/** Warm-up never runs longer than this. */
const warmupMaxMs = 30_000;
/** Readers must catch up with the producer within this long after it stops (W2, W4). */
const drainTimeoutMs = 60_000;
/** W3's read may take at least this long before it is declared stuck ... */
const catchUpMinTimeoutMs = 120_000;
/** ... or this long per record, whichever is longer. */
const catchUpTimeoutMsPerRecord = 0.5;
/** W4's readers. */
export const fanOutGroups = 3;
/** Bytes at the front of a W2 value: the send time, float64 ms since the epoch (sub-ms precision). */
const timestampBytes = 8;

const now = () => performance.now();
/** Wall-clock ms with sub-ms precision: producer and readers are this one process, so one clock. */
const epochMs = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function readTimestampMs(value: Uint8Array): number {
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength).readDoubleLE(0);
}

interface Measurement {
  pids: Map<string, number>;
  starts: Map<string, ReturnType<typeof startSample>>;
}

function startMeasure(target: BenchTarget): Measurement {
  const pids = new Map(target.pids());
  pids.set("client", process.pid);
  return { pids, starts: new Map([...pids].map(([n, pid]) => [n, startSample(pid)] as const)) };
}

function endMeasure(m: Measurement): Record<string, ProcessUsage> {
  const out: Record<string, ProcessUsage> = {};
  for (const [name, pid] of m.pids) out[name] = endSample(pid, m.starts.get(name)!);
  return out;
}

function result(
  workload: WorkloadId, target: BenchTarget, valueBytes: number, produced: number, deliveries: number, rateCount: number,
  elapsedMs: number, latency: LatencySummary | undefined, processes: Record<string, ProcessUsage>,
): MeasuredResult {
  const servers = Object.entries(processes).filter(([n]) => n !== "client").map(([, u]) => u);
  const serverCpuSeconds = servers.reduce((s, u) => s + u.cpuSeconds, 0);
  const rss = servers.map((u) => u.peakRssMiB).filter((v): v is number => v !== undefined);
  const t = throughput(rateCount, valueBytes, elapsedMs);
  return {
    workload, target: target.name, valueBytes, produced, deliveries, elapsedMs,
    recordsPerSec: t.recordsPerSec, mibPerSec: t.mibPerSec, latency, processes, serverCpuSeconds,
    serverCpuMicrosPerRecord: rateCount > 0 ? (serverCpuSeconds * 1e6) / rateCount : Number.NaN,
    serverPeakRssMiB: rss.length === 0 ? undefined : Math.max(...rss),
  };
}

async function closeAll(handles: readonly ConsumeHandle[]): Promise<void> {
  await Promise.allSettled(handles.map((h) => h.close()));
}

function failIf(what: string, failed: number, sent: number, firstError: unknown): void {
  if (failed > 0) throw new Error(`${what}: ${failed} of ${sent} records failed; first: ${String(firstError)}`);
}

/** W1: one producer, bounded window, as fast as it goes. */
export async function runW1(target: BenchTarget, s: WorkloadSettings, id: "W1" | "W1-small", label: string): Promise<MeasuredResult> {
  const valueBytes = id === "W1" ? s.valueBytes : s.smallValueBytes;
  const spec: StreamSpec = { label, groups: 1 };
  await target.createStream(spec);
  const producer = await target.producer(spec);
  const values = makeValues(distinctValues, valueBytes, Math.random);
  const send = (v: Uint8Array) => producer.send(v);
  try {
    if (s.warmupRecords > 0) {
      const warm = await runWorkload(send, { maxRecords: s.warmupRecords, durationMs: warmupMaxMs, windowRecords: s.windowRecords, values }, now);
      failIf(`${target.name} ${id} warm-up`, warm.failed, warm.sent, warm.firstError);
    }
    const m = startMeasure(target);
    const r = await runWorkload(send, { maxRecords: s.records, durationMs: s.seconds * 1000, windowRecords: s.windowRecords, values }, now);
    const processes = endMeasure(m);
    failIf(`${target.name} ${id}`, r.failed, r.sent, r.firstError);
    return result(id, target, valueBytes, r.acked, 0, r.acked, r.elapsedMs, summarizeLatencies(r.latenciesMs), processes);
  } finally {
    await producer.close().catch(() => undefined);
  }
}

/** W2: a fixed rate for a fixed time, one reader; latency from the timestamp in the record to its delivery. */
export async function runW2(target: BenchTarget, s: WorkloadSettings, label: string): Promise<MeasuredResult> {
  const spec: StreamSpec = { label, groups: 1 };
  await target.createStream(spec);
  const expected = Math.floor((s.w2RatePerSec * s.w2Seconds * 1000) / 1000);
  const latenciesMs = new Float64Array(expected);
  const counter = new DeliveryCounter();
  const handle = await target.consume(spec, 0, (value) => {
    const at = epochMs();
    if (counter.count < expected) latenciesMs[counter.count] = at - readTimestampMs(value);
    counter.deliver(now());
  });
  const producer = await target.producer(spec);
  const filler = makeValues(1, Math.max(s.valueBytes, timestampBytes), Math.random)[0]!;
  try {
    const m = startMeasure(target);
    const r = await runPaced((v) => producer.send(v), {
      ratePerSec: s.w2RatePerSec, durationMs: s.w2Seconds * 1000, windowRecords: s.windowRecords,
      makeValue: () => {
        // A fresh value per record: the producer may hold it until encoded, and the stamp differs.
        const v = Buffer.from(filler);
        v.writeDoubleLE(epochMs(), 0);
        return v;
      },
    }, now, sleep);
    const drained = await counter.waitFor(r.acked, drainTimeoutMs);
    const processes = endMeasure(m);
    failIf(`${target.name} W2`, r.failed, r.sent, r.firstError);
    if (!drained) throw new Error(`${target.name} W2: the reader got ${counter.count} of ${r.acked} records within ${drainTimeoutMs} ms of the end`);
    const n = Math.min(counter.count, expected);
    return result("W2", target, s.valueBytes, r.acked, counter.count, r.acked, r.elapsedMs, summarizeLatencies(latenciesMs.subarray(0, n)), processes);
  } finally {
    await producer.close().catch(() => undefined);
    await closeAll([handle]);
  }
}

/** W3: preload `w3Records` (not measured), then one reader reads them all from the beginning. */
export async function runW3(target: BenchTarget, s: WorkloadSettings, label: string, log: (line: string) => void): Promise<MeasuredResult> {
  const spec: StreamSpec = { label, groups: 1 };
  await target.createStream(spec);
  const producer = await target.producer(spec);
  const values = makeValues(distinctValues, s.valueBytes, Math.random);
  let preloaded: number;
  try {
    const pre = await runWorkload((v) => producer.send(v), { maxRecords: s.w3Records, durationMs: 3_600_000, windowRecords: s.windowRecords, values }, now);
    failIf(`${target.name} W3 preload`, pre.failed, pre.sent, pre.firstError);
    preloaded = pre.acked;
    log(`${target.name} W3: preloaded ${preloaded} records in ${(pre.elapsedMs / 1000).toFixed(1)} s`);
  } finally {
    await producer.close().catch(() => undefined);
  }
  const counter = new DeliveryCounter();
  const m = startMeasure(target);
  const start = now();
  const handle = await target.consume(spec, 0, () => counter.deliver(now()));
  try {
    const timeoutMs = Math.max(catchUpMinTimeoutMs, preloaded * catchUpTimeoutMsPerRecord);
    const done = await counter.waitFor(preloaded, timeoutMs);
    const processes = endMeasure(m);
    if (!done) throw new Error(`${target.name} W3: read ${counter.count} of ${preloaded} records within ${timeoutMs} ms`);
    return result("W3", target, s.valueBytes, preloaded, counter.count, counter.count, counter.lastAtMs - start, undefined, processes);
  } finally {
    await closeAll([handle]);
  }
}

/** W4: three readers subscribed first, then one producer as in W1; deliveries/s over all readers. */
export async function runW4(target: BenchTarget, s: WorkloadSettings, label: string): Promise<MeasuredResult> {
  const spec: StreamSpec = { label, groups: fanOutGroups };
  await target.createStream(spec);
  const counters = Array.from({ length: fanOutGroups }, () => new DeliveryCounter());
  const handles: ConsumeHandle[] = [];
  try {
    for (let g = 0; g < fanOutGroups; g++) handles.push(await target.consume(spec, g, () => counters[g]!.deliver(now())));
    const producer = await target.producer(spec);
    const values = makeValues(distinctValues, s.valueBytes, Math.random);
    try {
      const m = startMeasure(target);
      const start = now();
      const r = await runWorkload((v) => producer.send(v), { maxRecords: s.records, durationMs: s.seconds * 1000, windowRecords: s.windowRecords, values }, now);
      const drained = await Promise.all(counters.map((c) => c.waitFor(r.acked, drainTimeoutMs)));
      const processes = endMeasure(m);
      failIf(`${target.name} W4`, r.failed, r.sent, r.firstError);
      if (drained.includes(false)) throw new Error(`${target.name} W4: readers got ${counters.map((c) => c.count).join(", ")} of ${r.acked} records each`);
      const deliveries = counters.reduce((sum, c) => sum + c.count, 0);
      const end = Math.max(...counters.map((c) => c.lastAtMs));
      return result("W4", target, s.valueBytes, r.acked, deliveries, deliveries, end - start, undefined, processes);
    } finally {
      await producer.close().catch(() => undefined);
    }
  } finally {
    await closeAll(handles);
  }
}

/** W5's workers must accept every job within this long ... */
const taskDrainMinTimeoutMs = 120_000;
/** ... or this long per job, whichever is longer. */
const taskDrainTimeoutMsPerJob = 5;

/**
 * Jobs accepted before W5's measured phase starts, as a fraction of the preloaded jobs: the workers'
 * start (connections, group join, the first fetch) is warm-up, as W1's first records are, for every
 * system alike.
 */
export const w5WarmupFraction = 0.1;

/**
 * W5: preload `w5Jobs` jobs (not measured), then start `w5Workers` workers at once; accepted jobs/s
 * from the moment w5WarmupFraction of the jobs are accepted until every job is accepted (CPU measured
 * over the same phase). Every acceptance must have reached the server before the run ends.
 */
export async function runW5(target: BenchTarget, s: WorkloadSettings, label: string, log: (line: string) => void): Promise<MeasuredResult> {
  const queue = target.taskQueue;
  if (queue === undefined) throw new Error(`${target.name} has no task queue (W5)`);
  const spec: StreamSpec = { label, groups: 1 };
  await queue.createQueue(spec);
  const producer = await queue.producer(spec);
  const values = makeValues(distinctValues, s.valueBytes, Math.random);
  let preloaded: number;
  try {
    const pre = await runWorkload((v) => producer.send(v), { maxRecords: s.w5Jobs, durationMs: 3_600_000, windowRecords: s.windowRecords, values }, now);
    failIf(`${target.name} W5 preload`, pre.failed, pre.sent, pre.firstError);
    preloaded = pre.acked;
    log(`${target.name} W5: preloaded ${preloaded} jobs in ${(pre.elapsedMs / 1000).toFixed(1)} s`);
  } finally {
    await producer.close().catch(() => undefined);
  }
  const counter = new DeliveryCounter();
  let onWorkerError: (err: unknown) => void = () => undefined;
  const warmupJobs = Math.min(preloaded - 1, Math.ceil(preloaded * w5WarmupFraction));
  // Where the measured phase starts: the acceptance that completed the warm-up (a worker may report
  // several at once, so the count there can pass warmupJobs).
  let warm: { atMs: number; count: number } | undefined;
  const onAccepted = (n: number) => {
    const at = now();
    for (let i = 0; i < n; i++) counter.deliver(at);
    if (warm === undefined && counter.count >= warmupJobs) warm = { atMs: at, count: counter.count };
  };
  let workerError: unknown;
  const failed = new Promise<false>((resolve) => {
    onWorkerError = (err) => {
      workerError ??= err;
      resolve(false);
    };
  });
  const started = await Promise.allSettled(Array.from({ length: s.w5Workers }, (_, i) => queue.worker(spec, i, s.w5Prefetch, onAccepted, (err) => onWorkerError(err))));
  const workers = started.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
  try {
    const notStarted = started.find((r): r is PromiseRejectedResult => r.status === "rejected");
    if (notStarted !== undefined) throw notStarted.reason;
    const timeoutMs = Math.max(taskDrainMinTimeoutMs, preloaded * taskDrainTimeoutMsPerJob);
    const fail = (what: string) => {
      if (workerError !== undefined) throw new Error(`${target.name} W5: a worker failed after ${counter.count} of ${preloaded} jobs: ${workerError instanceof Error ? workerError.message : String(workerError)}`);
      throw new Error(`${target.name} W5: ${counter.count} of ${preloaded} jobs accepted within ${timeoutMs} ms (${what})`);
    };
    if (!(await Promise.race([counter.waitFor(warmupJobs, timeoutMs), failed])) || workerError !== undefined) fail("warm-up");
    const m = startMeasure(target);
    if (!(await Promise.race([counter.waitFor(preloaded, timeoutMs), failed])) || workerError !== undefined) fail("measured phase");
    const processes = endMeasure(m);
    await Promise.all(workers.map((w) => w.settle()));
    const start = warm ?? { atMs: counter.lastAtMs, count: counter.count };
    const measured = counter.count - start.count;
    // NaN (not a figure) when the last jobs came in the same report as the warm-up's end.
    log(`${target.name} W5: ${start.count} jobs accepted as warm-up, ${measured} measured`);
    return result("W5", target, s.valueBytes, preloaded, counter.count, measured, counter.lastAtMs - start.atMs, undefined, processes);
  } finally {
    await Promise.allSettled(workers.map((w) => w.close()));
  }
}
