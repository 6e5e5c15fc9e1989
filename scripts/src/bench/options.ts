// Command-line options of `npm run bench`, parsed without side effects (errors are thrown as
// BenchUsageError for main.ts to print with the usage text).
import { parseArgs } from "node:util";
import { defaultMaxInFlightPerPartition } from "@runnel/client";

/** The client accepts 1..5 (Kafka's limit for idempotent producers). */
const maxInFlightPerPartitionLimit = 5;

export type ScenarioId = "a" | "b" | "c";
export const allScenarioIds: readonly ScenarioId[] = ["a", "b", "c"];

export interface BenchOptions {
  /** Stop sending after this many seconds of the measured phase. */
  seconds: number;
  /** Stop sending after this many records of the measured phase. */
  records: number;
  /** Unacknowledged records allowed at once (the producer's window). */
  windowRecords: number;
  /** Records sent and acknowledged before measuring (JIT, connections, producer id). */
  warmupRecords: number;
  /** Records sent one at a time after the measured phase, for unloaded latency. */
  probeRecords: number;
  partitions: number;
  valueBytes: number;
  /** The measured producer's maxInFlightPerPartition; undefined keeps the client's default. */
  maxInFlightPerPartition: number | undefined;
  scenarios: ScenarioId[];
  /** Where the JSON results go (relative to the repository root unless absolute). */
  outDir: string;
  /** When set, every cluster process runs with --cpu-prof into this directory and is stopped gracefully. */
  profileDir: string | undefined;
  quick: boolean;
  /** Keep the cluster's temp dir (logs, data) instead of removing it, and print its path. */
  keepDir: boolean;
}

export const defaultBenchOptions: Readonly<BenchOptions> = Object.freeze({
  seconds: 15,
  records: 200_000,
  windowRecords: 8192,
  warmupRecords: 5_000,
  probeRecords: 200,
  partitions: 3,
  valueBytes: 1024,
  maxInFlightPerPartition: undefined,
  scenarios: [...allScenarioIds],
  outDir: "bench-results",
  profileDir: undefined,
  quick: false,
  keepDir: false,
});

/** --quick: a run of a few seconds that exercises every step (for a smoke test), not a measurement. */
export const quickBenchOptions: Readonly<Partial<BenchOptions>> = Object.freeze({
  seconds: 2,
  records: 2_000,
  windowRecords: 512,
  warmupRecords: 100,
  probeRecords: 10,
});

/** The largest --records: per-record latencies are kept in memory (8 bytes each). */
export const maxRecordsLimit = 20_000_000;
export const maxSecondsLimit = 3600;
export const maxPartitionsLimit = 64;
export const maxValueBytesLimit = 512 * 1024;

export const benchUsage = `Usage: npm run bench -- [options]
Starts a fresh local cluster (controller + 3 brokers) in a temp dir and measures produce throughput of
1 KiB records for (a) RF 3, min.insync.replicas 2, acks all, durability fsync; (b) the same with
durability memory; (c) RF 1, acks leader. Prints tables and writes JSON to bench-results/.
  --seconds S       measured phase ends after S seconds (default ${defaultBenchOptions.seconds})
  --records N       ... or after N records, whichever comes first (default ${defaultBenchOptions.records})
  --window N        unacknowledged records allowed at once (default ${defaultBenchOptions.windowRecords})
  --warmup N        records sent before measuring (default ${defaultBenchOptions.warmupRecords})
  --probe N         records sent one at a time afterwards, unloaded latency (default ${defaultBenchOptions.probeRecords})
  --partitions N    partitions per topic (default ${defaultBenchOptions.partitions})
  --value-bytes N   record value size (default ${defaultBenchOptions.valueBytes})
  --max-in-flight N producer batches in flight per partition, 1..${maxInFlightPerPartitionLimit} (default: the client's, ${defaultMaxInFlightPerPartition})
  --scenarios LIST  comma-separated subset of a,b,c (default a,b,c)
  --out DIR         JSON output directory (default ${defaultBenchOptions.outDir})
  --profile DIR     V8 CPU profile of every cluster process, written to DIR
  --keep            keep the cluster's temp dir (logs and data) and print where it is
  --quick           tiny run for a smoke test (${quickBenchOptions.seconds} s / ${quickBenchOptions.records} records)`;

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
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        seconds: { type: "string" },
        records: { type: "string" },
        window: { type: "string" },
        warmup: { type: "string" },
        probe: { type: "string" },
        partitions: { type: "string" },
        "value-bytes": { type: "string" },
        "max-in-flight": { type: "string" },
        scenarios: { type: "string" },
        out: { type: "string" },
        profile: { type: "string" },
        quick: { type: "boolean" },
        keep: { type: "boolean" },
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
  const base: BenchOptions = { ...defaultBenchOptions, scenarios: [...defaultBenchOptions.scenarios], ...(quick ? quickBenchOptions : {}), quick };
  let scenarios = base.scenarios;
  const scenarioText = str("scenarios");
  if (scenarioText !== undefined) {
    const ids = scenarioText.split(",").map((s) => s.trim()).filter((s) => s !== "");
    const bad = ids.filter((s) => !(allScenarioIds as readonly string[]).includes(s));
    if (ids.length === 0 || bad.length > 0) throw new BenchUsageError(`--scenarios takes a comma-separated subset of a,b,c, not "${scenarioText}"`);
    scenarios = allScenarioIds.filter((id) => ids.includes(id));
  }
  return {
    ...base,
    seconds: positiveInt("--seconds", str("seconds"), 1, maxSecondsLimit) ?? base.seconds,
    records: positiveInt("--records", str("records"), 1, maxRecordsLimit) ?? base.records,
    windowRecords: positiveInt("--window", str("window"), 1, maxRecordsLimit) ?? base.windowRecords,
    warmupRecords: positiveInt("--warmup", str("warmup"), 0, maxRecordsLimit) ?? base.warmupRecords,
    probeRecords: positiveInt("--probe", str("probe"), 0, 100_000) ?? base.probeRecords,
    partitions: positiveInt("--partitions", str("partitions"), 1, maxPartitionsLimit) ?? base.partitions,
    valueBytes: positiveInt("--value-bytes", str("value-bytes"), 1, maxValueBytesLimit) ?? base.valueBytes,
    maxInFlightPerPartition: positiveInt("--max-in-flight", str("max-in-flight"), 1, maxInFlightPerPartitionLimit) ?? base.maxInFlightPerPartition,
    scenarios,
    outDir: str("out") ?? base.outDir,
    profileDir: str("profile") ?? base.profileDir,
    keepDir: values["keep"] === true,
  };
}
