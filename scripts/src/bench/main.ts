// `npm run bench`: the issue 9 and 10 workloads (W1 replicated produce, W2 end-to-end latency, W3
// catch-up read, W4 fan-out, W5 task queue) on a fresh local 3-broker cluster, the machine's ceiling
// for W1's bytes, and, with --peers, the same on NATS JetStream and RabbitMQ clusters. This folder
// owns the bench: options.ts (flags), target.ts (what a system under test provides), runnel-target.ts
// and peers/ (Runnel, NATS, RabbitMQ: start, stop, produce, consume, task queues), workload.ts
// (produce loops, delivery counting), workloads.ts (W1–W5), ceiling.ts and ceiling-node.ts (raw
// lmdb-js and grpc-js in three processes), proc.ts (/proc CPU and peak RSS), stats.ts and report.ts
// (figures and tables), run.ts (systems and workloads in order), cpu-profile-preload.ts (--profile). This file is the process shell: it prints, writes
// bench-results/<timestamp>.json and .md, and makes sure every cluster is killed and its temp dir
// removed at the end, on error, and on Ctrl-C or SIGTERM.
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ClusterStartError, type Cluster } from "@runnel/cluster-tests";
import { benchUsage, BenchUsageError, parseBenchArgs, type BenchOptions } from "./options.js";
import { formatReport } from "./report.js";
import { BenchInterrupted, runBench } from "./run.js";

/** <repo>/scripts/dist/bench/main.js -> <repo>. */
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
/** Exit code after SIGINT, as a shell reports it (128 + 2). */
const interruptedExitCode = 130;

let cluster: Cluster | undefined;
let peers: { dir: string; close: () => Promise<void> } | undefined;
let interrupted = false;
let closing: Promise<void> | undefined;
let keepDir = false;

function log(line: string): void {
  process.stderr.write(`bench: ${line}\n`);
}

/** Kills every cluster process and removes the temp dir (idempotent). */
function closeCluster(): Promise<void> {
  if (cluster === undefined) return Promise.resolve();
  const c = cluster;
  // close({ failed: true }) is how the harness is told to keep the dir.
  closing ??= c.close({ failed: keepDir }).then(() => {
    if (keepDir) log(`kept the cluster's logs and data in ${c.dir}`);
    else rmSync(c.dir, { recursive: true, force: true });
  });
  return closing;
}

function onSignal(signal: NodeJS.Signals): void {
  if (interrupted) return;
  interrupted = true;
  log(`${signal}: stopping the cluster`);
  // Before the cluster exists, runBench sees `interrupted` once startCluster returns and stops there.
  const p = peers;
  if (cluster !== undefined || p !== undefined) {
    const closePeers = p === undefined ? Promise.resolve() : p.close().catch(() => undefined).then(() => {
      if (!keepDir) rmSync(p.dir, { recursive: true, force: true });
    });
    void Promise.allSettled([closeCluster(), closePeers]).finally(() => process.exit(interruptedExitCode));
  }
}

async function main(): Promise<number> {
  let options: BenchOptions;
  try {
    const parsed = parseBenchArgs(process.argv.slice(2));
    if (parsed === "help") {
      process.stdout.write(`${benchUsage}\n`);
      return 0;
    }
    options = parsed;
  } catch (err) {
    if (err instanceof BenchUsageError) {
      process.stderr.write(`bench: ${err.message}\n${benchUsage}\n`);
      return 2;
    }
    throw err;
  }
  if (options.profileDir !== undefined) {
    options.profileDir = isAbsolute(options.profileDir) ? options.profileDir : resolve(process.cwd(), options.profileDir);
    mkdirSync(options.profileDir, { recursive: true });
  }
  keepDir = options.keepDir;
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  try {
    const report = await runBench(options, {
      log,
      onCluster: (c) => {
        cluster = c;
        if (interrupted) throw new BenchInterrupted("interrupted during start-up");
      },
      onPeers: (p) => {
        peers = p;
      },
      interrupted: () => interrupted,
    });
    await closeCluster();
    const text = formatReport(report);
    process.stdout.write(`${text}\n`);
    const outDir = isAbsolute(options.outDir) ? options.outDir : join(repoRoot, options.outDir);
    mkdirSync(outDir, { recursive: true });
    const file = join(outDir, `${report.startedAt.replace(/[:.]/g, "-")}.json`);
    writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
    const markdown = file.replace(/\.json$/, ".md");
    writeFileSync(markdown, `${text}\n`);
    process.stdout.write(`\nresults written to ${file} (tables in ${markdown})\n`);
    return 0;
  } catch (err) {
    if (err instanceof ClusterStartError) {
      // startCluster keeps the dir of a failed start; the bench promises to leave nothing behind.
      log(`cluster did not start: ${err.message}`);
      rmSync(err.dir, { recursive: true, force: true });
      return 1;
    }
    if (err instanceof BenchInterrupted || interrupted) {
      log("interrupted");
      return interruptedExitCode;
    }
    log(`failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    return 1;
  } finally {
    await closeCluster();
  }
}

process.exitCode = await main();
