// Command-line options of `npm run bench`, parsed without side effects (errors are thrown as
// BenchUsageError for main.ts to print with the usage text).
import { parseArgs } from "node:util";
import { defaultMaxInFlightPerPartition } from "@runnel/client";
import { allWorkloadIds, type WorkloadId } from "./workloads.js";

/** The client accepts 1..5 (Kafka's limit for idempotent producers). */
const maxInFlightPerPartitionLimit = 5;

export interface BenchOptions {
  /** W1/W4: stop sending after this many seconds of the measured phase ... */
  seconds: number;
  /** ... or after this many records. */
  records: number;
  /** Unacknowledged records allowed at once (the producer's window). */
  windowRecords: number;
  /** Records sent and acknowledged before measuring W1 (JIT, connections, producer id). */
  warmupRecords: number;
  partitions: number;
  valueBytes: number;
  /** W1's second run. */
  smallValueBytes: number;
  w2RatePerSec: number;
  w2Seconds: number;
  w3Records: number;
  /** The measured producer's maxInFlightPerPartition; undefined keeps the client's default. */
  maxInFlightPerPartition: number | undefined;
  workloads: WorkloadId[];
  /** Also run NATS JetStream and RabbitMQ (started, and installed when missing, by the bench). */
  peers: boolean;
  /** Where the JSON results go (relative to the repository root unless absolute). */
  outDir: string;
  /** When set, every Runnel cluster process runs with the V8 profiler into this directory. */
  profileDir: string | undefined;
  quick: boolean;
  /** Keep the clusters' temp dirs (logs, data) instead of removing them, and print their paths. */
  keepDir: boolean;
  /** Run the ceiling step (raw lmdb-js and grpc-js with W1's bytes) for the W1 value sizes chosen. */
  ceiling: boolean;
  /** Each ceiling step stops after this many seconds (or --records records). */
  ceilingSeconds: number;
  /** W5: jobs preloaded, then accepted by the workers. */
  w5Jobs: number;
  /** W5: workers (Runnel: a client and a share consumer each; RabbitMQ: a connection and consumer each). */
  w5Workers: number;
  /** W5: unacknowledged jobs per worker (RabbitMQ prefetch, Runnel share consumer maxInFlightRecords). */
  w5Prefetch: number;
  /** W5 on Runnel: "share" (runnel.shareConsumer, accept per record) or "tasks" (runnel.tasks.worker, no-op handler). */
  w5Api: W5Api;
}

export type W5Api = "share" | "tasks";
export const w5Apis: readonly W5Api[] = ["share", "tasks"];

export const defaultBenchOptions: Readonly<BenchOptions> = Object.freeze({
  seconds: 15,
  records: 1_000_000,
  windowRecords: 8192,
  warmupRecords: 5_000,
  partitions: 3,
  valueBytes: 1024,
  smallValueBytes: 100,
  w2RatePerSec: 2_000,
  w2Seconds: 15,
  w3Records: 1_000_000,
  maxInFlightPerPartition: undefined,
  workloads: [...allWorkloadIds],
  peers: false,
  outDir: "bench-results",
  profileDir: undefined,
  quick: false,
  keepDir: false,
  ceiling: true,
  ceilingSeconds: 5,
  w5Jobs: 100_000,
  w5Workers: 4,
  w5Prefetch: 100,
  w5Api: "share",
});

/** --quick: a run of a few seconds that exercises every step (for a smoke test), not a measurement. */
export const quickBenchOptions: Readonly<Partial<BenchOptions>> = Object.freeze({
  seconds: 2,
  records: 2_000,
  windowRecords: 512,
  warmupRecords: 100,
  w2RatePerSec: 500,
  w2Seconds: 2,
  w3Records: 2_000,
  ceilingSeconds: 1,
  w5Jobs: 500,
});

/** The largest --records: per-record latencies are kept in memory (8 bytes each). */
export const maxRecordsLimit = 20_000_000;
export const maxSecondsLimit = 3600;
export const maxPartitionsLimit = 64;
export const maxValueBytesLimit = 512 * 1024;
export const maxRatePerSecLimit = 1_000_000;
export const maxW5WorkersLimit = 64;
export const maxW5PrefetchLimit = 10_000;

export const benchUsage = `Usage: npm run bench -- [options]
Starts a fresh local Runnel cluster (controller + 3 brokers) in a temp dir and runs the issue 9 and 10 workloads:
  W1        replicated produce, ${defaultBenchOptions.valueBytes}-byte records, one producer, bounded window, as fast as it goes
  W1-small  the same with ${defaultBenchOptions.smallValueBytes}-byte records
  W2        ${defaultBenchOptions.w2RatePerSec} records/s for ${defaultBenchOptions.w2Seconds} s, one reader; latency record timestamp -> delivery
  W3        catch-up read of ${defaultBenchOptions.w3Records} preloaded records from the beginning
  W4        fan-out: one producer, three consumer groups each receiving everything
  W5        task queue: ${defaultBenchOptions.w5Jobs} preloaded ${defaultBenchOptions.valueBytes}-byte jobs on 1 partition, ${defaultBenchOptions.w5Workers} workers, one accept/ack per job; accepted jobs/s
            (goal: 4x RabbitMQ quorum; Runnel fsync and RabbitMQ quorum only)
  ceiling   what the machine allows for W1's bytes, no broker: raw lmdb-js (3 environments, fsynced
            group commits), raw grpc-js (leader streaming to 2 followers), and both (3 processes each)
Runnel topics: replication factor 3, min.insync.replicas 2, acks all (durability fsync, and memory for W1/W3/W4).
With --peers, the same workloads run against a 3-node NATS JetStream cluster and a 3-node RabbitMQ
cluster (quorum queue and stream), and Runnel's ratio to each is printed. Prints tables and writes JSON
and Markdown to bench-results/.
  --peers              also run NATS JetStream and RabbitMQ (apt-get installs them when missing)
  --workloads LIST     comma-separated subset of ${allWorkloadIds.join(",")} (default all)
  --seconds S          W1/W4 measured phase ends after S seconds (default ${defaultBenchOptions.seconds})
  --records N          ... or after N records, whichever comes first (default ${defaultBenchOptions.records})
  --window N           unacknowledged records allowed at once (default ${defaultBenchOptions.windowRecords})
  --warmup N           W1 records sent before measuring (default ${defaultBenchOptions.warmupRecords})
  --partitions N       Runnel partitions per topic (default ${defaultBenchOptions.partitions})
  --value-bytes N      record size (default ${defaultBenchOptions.valueBytes})
  --small-value-bytes N  W1-small record size (default ${defaultBenchOptions.smallValueBytes})
  --w2-rate N          W2 records per second (default ${defaultBenchOptions.w2RatePerSec})
  --w2-seconds S       W2 duration (default ${defaultBenchOptions.w2Seconds})
  --w3-records N       W3 records preloaded and read back (default ${defaultBenchOptions.w3Records})
  --w5-jobs N          W5 jobs preloaded and accepted (default ${defaultBenchOptions.w5Jobs})
  --w5-workers N       W5 workers (default ${defaultBenchOptions.w5Workers})
  --w5-prefetch N      W5 unacknowledged jobs per worker: RabbitMQ prefetch, Runnel maxInFlightRecords (default ${defaultBenchOptions.w5Prefetch})
  --w5-api API         W5 on Runnel: share (shareConsumer, accept per job) or tasks (tasks.worker, no-op handler) (default ${defaultBenchOptions.w5Api})
  --no-ceiling         skip the ceiling step
  --ceiling-seconds S  each ceiling step runs S seconds or --records records (default ${defaultBenchOptions.ceilingSeconds})
  --max-in-flight N    Runnel producer batches in flight per partition, 1..${maxInFlightPerPartitionLimit} (default: the client's, ${defaultMaxInFlightPerPartition})
  --out DIR            output directory (default ${defaultBenchOptions.outDir})
  --profile DIR        V8 CPU profile of every Runnel cluster process, written to DIR
  --keep               keep the clusters' temp dirs (logs and data) and print where they are
  --quick              tiny run for a smoke test (${quickBenchOptions.seconds} s / ${quickBenchOptions.records} records per workload)`;

export class BenchUsageError extends Error {
  override name = "BenchUsageError";
}

function positiveInt(flag: string, text: string | undefined, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) throw new BenchUsageError(`${flag} must be an integer in ${min}..${max}, not "${text}"`);
  return n;
}

/** Parses argv (without node and the script). Returns "help" for --help. */
export function parseBenchArgs(argv: readonly string[]): BenchOptions | "help" {
  let values: Record<string, string | boolean | undefined>;
  const stringFlags = ["seconds", "records", "window", "warmup", "partitions", "value-bytes", "small-value-bytes", "w2-rate", "w2-seconds", "w3-records", "max-in-flight", "workloads", "out", "profile", "w5-jobs", "w5-workers", "w5-prefetch", "w5-api", "ceiling-seconds"];
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        ...Object.fromEntries(stringFlags.map((f) => [f, { type: "string" as const }])),
        peers: { type: "boolean" },
        quick: { type: "boolean" },
        keep: { type: "boolean" },
        // parseArgs's allowNegative needs Node 22.4: the negative flag is its own option.
        "no-ceiling": { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new BenchUsageError(err instanceof Error ? err.message : String(err));
  }
  if (values["help"] === true) return "help";
  const str = (k: string) => (typeof values[k] === "string" ? (values[k] as string) : undefined);
  const quick = values["quick"] === true;
  const base: BenchOptions = { ...defaultBenchOptions, workloads: [...defaultBenchOptions.workloads], ...(quick ? quickBenchOptions : {}), quick };
  let workloads = base.workloads;
  const workloadText = str("workloads");
  if (workloadText !== undefined) {
    const ids = workloadText.split(",").map((s) => s.trim().toUpperCase().replace("-SMALL", "-small")).filter((s) => s !== "");
    const bad = ids.filter((s) => !(allWorkloadIds as readonly string[]).includes(s));
    if (ids.length === 0 || bad.length > 0) throw new BenchUsageError(`--workloads takes a comma-separated subset of ${allWorkloadIds.join(",")}, not "${workloadText}"`);
    workloads = allWorkloadIds.filter((id) => ids.includes(id));
  }
  const w5ApiText = str("w5-api");
  if (w5ApiText !== undefined && !(w5Apis as readonly string[]).includes(w5ApiText)) throw new BenchUsageError(`--w5-api takes ${w5Apis.join(" or ")}, not "${w5ApiText}"`);
  return {
    ...base,
    seconds: positiveInt("--seconds", str("seconds"), 1, maxSecondsLimit) ?? base.seconds,
    records: positiveInt("--records", str("records"), 1, maxRecordsLimit) ?? base.records,
    windowRecords: positiveInt("--window", str("window"), 1, maxRecordsLimit) ?? base.windowRecords,
    warmupRecords: positiveInt("--warmup", str("warmup"), 0, maxRecordsLimit) ?? base.warmupRecords,
    partitions: positiveInt("--partitions", str("partitions"), 1, maxPartitionsLimit) ?? base.partitions,
    valueBytes: positiveInt("--value-bytes", str("value-bytes"), 8, maxValueBytesLimit) ?? base.valueBytes,
    smallValueBytes: positiveInt("--small-value-bytes", str("small-value-bytes"), 1, maxValueBytesLimit) ?? base.smallValueBytes,
    w2RatePerSec: positiveInt("--w2-rate", str("w2-rate"), 1, maxRatePerSecLimit) ?? base.w2RatePerSec,
    w2Seconds: positiveInt("--w2-seconds", str("w2-seconds"), 1, maxSecondsLimit) ?? base.w2Seconds,
    w3Records: positiveInt("--w3-records", str("w3-records"), 1, maxRecordsLimit) ?? base.w3Records,
    maxInFlightPerPartition: positiveInt("--max-in-flight", str("max-in-flight"), 1, maxInFlightPerPartitionLimit) ?? base.maxInFlightPerPartition,
    workloads,
    peers: values["peers"] === true,
    outDir: str("out") ?? base.outDir,
    profileDir: str("profile") ?? base.profileDir,
    keepDir: values["keep"] === true,
    ceiling: values["no-ceiling"] !== true,
    ceilingSeconds: positiveInt("--ceiling-seconds", str("ceiling-seconds"), 1, maxSecondsLimit) ?? base.ceilingSeconds,
    w5Jobs: positiveInt("--w5-jobs", str("w5-jobs"), 1, maxRecordsLimit) ?? base.w5Jobs,
    w5Workers: positiveInt("--w5-workers", str("w5-workers"), 1, maxW5WorkersLimit) ?? base.w5Workers,
    w5Prefetch: positiveInt("--w5-prefetch", str("w5-prefetch"), 1, maxW5PrefetchLimit) ?? base.w5Prefetch,
    w5Api: (w5ApiText as W5Api | undefined) ?? base.w5Api,
  };
}
